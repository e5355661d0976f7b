"""Models of the paper's experiments."""

from noisereg.models.mlp import MLP
from noisereg.models.resnet import ResNet18

__all__ = ["MLP", "ResNet18"]
