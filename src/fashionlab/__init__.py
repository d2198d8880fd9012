"""fashionlab: multi-task fashion image classifiers, embeddings, visual search and recommendation."""

__version__ = "0.1.0"
