"""Embeddings, FAISS indexes, retrieval metrics and catalogues for visual search."""
