"""Checkpoints: a crash never leaves a half-written file (atomic writes, :mod:`noisereg.records`); a
checkpoint is data. Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings,
lists and dicts only, never code.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from noisereg.records import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        ValueError: the file is not a readable checkpoint (the message names it).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
