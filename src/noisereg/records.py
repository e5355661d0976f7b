"""What training writes and the report reads, below both: the metric names of results.json and atomic writes.

Every file is written to a temporary file in the same directory, flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX), so a reader sees the old file or the new one. The file
gets the mode a plain ``open(path, "w")`` would give it (0666 less the umask: 0644 under umask 022),
not the 0600 of the temporary file, so a shared results folder stays readable.
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


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)   # elsewhere: set and put back at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename), with the umask's mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())   # mkstemp's 0600 would hide the file from the group and others
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
