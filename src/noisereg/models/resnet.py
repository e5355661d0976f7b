"""ResNet-18 for 32x32 images (CIFAR-10), with BatchNorm: the model of Fig. 6.

He et al. (2016), "Deep Residual Learning for Image Recognition", https://arxiv.org/abs/1512.03385,
in the common CIFAR variant (3x3 stem, stride 1, no max-pool): four stages of two BasicBlocks with
64, 128, 256, 512 channels, global average pooling and one linear layer; 11.2 M parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut."""

    piecewise_linear = True  # forward: conv, BN, ReLU and an addition (see noisereg.curvature.is_piecewise_linear)

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: ``ResNet18(num_classes=10, in_channels=3, width=64)``; input (n, C, H, W).

    ``width`` is the first stage's channel count (64 in ResNet-18; smaller for CPU runs).

    Example:
        >>> ResNet18()(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    piecewise_linear = True  # forward: stages, ReLU, average pooling, flatten, linear

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, c_in = [], width
        for c_out, stride in ((width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)):
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
