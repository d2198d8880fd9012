"""Datasets, task definitions, splits and augmentation pipelines."""
