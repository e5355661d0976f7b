"""What training writes and the report reads, below both: the metric names of results.json and atomic writes.

Every file is written to a temporary file in the same directory, flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX), so a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

METRICS = ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc", "reg_loss", "hessian_trace",
           "hessian_trace_se", "ggn_trace", "ggn_trace_se", "reg_loss_se", "risk_bound")
"""The metric names a run records (results.json ``final`` and ``history``), in the report's order."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN/inf written as null)."""
    atomic_write_text(path, json.dumps(_finite(obj), indent=1) + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
