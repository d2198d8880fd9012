"""The prepared dataset cache (`data.cache.dir`): every image of an image-table dataset decoded
and resized once into a litdata optimised copy (`build`, `prepare`), read back every epoch through
litdata's StreamingDataset / StreamingDataLoader (`streaming`). docs/datasets.md, "The prepared cache"."""
