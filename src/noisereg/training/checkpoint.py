"""Checkpoints: a crash never leaves a half-written file (atomic writes, :mod:`noisereg.records`); a
checkpoint is data. Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings,
lists and dicts only, never code.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from noisereg.errors import UserError
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
        UserError: the file is not a readable checkpoint (truncated, damaged, or not one): a one-line
            message naming it and what to do (a ``ValueError``).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name and the remedy
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise UserError(f"cannot read checkpoint {path} ({first[:120]}): it is truncated or damaged; delete it and "
                        "run again with --resume, and that run starts over from step 0 (finished runs are kept)") from e
