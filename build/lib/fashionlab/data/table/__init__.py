"""The steps that turn a reader's table into checked, balanced, split datasets.

`frame` holds the typed table; `read` normalises a reader's DataFrame into it; `check` verifies
paths, labels and files; `balance` handles rare classes, caps and the sampler; `classes` resolves
and encodes the classes; `split` assigns train/val/test; `report` writes what each step did.
"""
