"""Dataset readers, one per published format (Fashion-MNIST IDX files, Kaggle Fashion Product
Images, DeepFashion, In-shop, CelebA, image folders, CSV tables), and the small helpers that parse
those formats. Each reader turns its files into arrays or an image table; the shared machinery
(tables, images, caching, the data module) is in the `fashionlab.data` package beside it."""
