"""Convolutional nets of Fig. 5: a toy CNN and a wider fully-convolutional net (no normalisation)."""

from __future__ import annotations

from torch import nn


class ToyCNN(nn.Sequential):
    """Two 3x3 conv layers (``channels`` each, ReLU, 2x2 max-pool), then an MLP head (Fig. 5, left).

    Args:
        in_channels, image_size: input shape (C, H, H); H divisible by 4.
        channels: conv channels (paper: 5). hidden: width of the head's hidden layer.
        num_classes: outputs.

    Example:
        >>> import torch
        >>> ToyCNN(1, 8)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, channels: int = 5, hidden: int = 256,
                 num_classes: int = 10) -> None:
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        s = image_size // 4
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(channels * s * s, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class WideConvNet(nn.Sequential):
    """Four 3x3 conv layers of ``channels`` (the 2nd and 3rd with stride 2), ReLU, global average
    pooling and one linear layer (Fig. 5, right: 128 channels).

    Example:
        >>> import torch
        >>> WideConvNet(1, channels=16)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, channels: int = 128, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
