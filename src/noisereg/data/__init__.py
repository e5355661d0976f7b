"""Data sets: embedded (scikit-learn's digits) for CPU runs."""

from noisereg.data.embedded import Split, load_digits_split

__all__ = ["Split", "load_digits_split"]
