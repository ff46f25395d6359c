"""The standing fuzz suite: one target per input-facing layer (see budget.py)."""
