"""Using a trained checkpoint: loading it, predicting images, extracting embeddings."""
