"""Models of the paper's experiments."""

from noisereg.models.cnn import ToyCNN, WideConvNet
from noisereg.models.factorized import DeepLinearNet, DiagonalNet, PSDFactorization
from noisereg.models.mlp import MLP
from noisereg.models.resnet import ResNet18

__all__ = ["MLP", "DeepLinearNet", "DiagonalNet", "PSDFactorization", "ResNet18", "ToyCNN", "WideConvNet"]
