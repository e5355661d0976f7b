"""Data sets: synthetic sparse regression (Fig. 2), embedded digits, and files (npz, Fashion-MNIST
IDX, CIFAR-10 batches, torchvision when installed). Nothing is downloaded."""

from noisereg.data.embedded import Split, load_digits_split
from noisereg.data.files import (
    DATASETS,
    holdout,
    load,
    load_cifar10,
    load_fashion_mnist,
    load_npz,
    load_torchvision,
    read_idx,
    subset,
)
from noisereg.data.synthetic import RegressionSplit, sparse_regression

__all__ = [
    "DATASETS",
    "RegressionSplit",
    "Split",
    "holdout",
    "load",
    "load_cifar10",
    "load_digits_split",
    "load_fashion_mnist",
    "load_npz",
    "load_torchvision",
    "read_idx",
    "sparse_regression",
    "subset",
]
