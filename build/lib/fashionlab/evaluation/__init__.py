"""`evaluate.py`: classification and retrieval evaluation of a trained checkpoint."""
