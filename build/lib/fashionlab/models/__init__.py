"""Backbones (timm), task heads and the multi-task network."""
