"""Data sets: synthetic sparse regression (Fig. 2), embedded real Fashion-MNIST images and digits, and files (npz, Fashion-MNIST
IDX, CIFAR-10 batches, torchvision when installed). Nothing is downloaded."""

from noisereg.data.embedded import Split, fashion_mnist_subset_arrays, load_digits_split, load_fashion_mnist_subset
from noisereg.data.files import (
    DATASETS,
    holdout,
    load,
    load_cifar10,
    fashion_mnist_dirs,
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
    "fashion_mnist_dirs",
    "fashion_mnist_subset_arrays",
    "holdout",
    "load",
    "load_cifar10",
    "load_digits_split",
    "load_fashion_mnist",
    "load_fashion_mnist_subset",
    "load_npz",
    "load_torchvision",
    "read_idx",
    "sparse_regression",
    "subset",
]
