"""Small matplotlib helpers for experiments' custom figures (Agg backend, atomic save)."""

from __future__ import annotations

import os
from pathlib import Path


def figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.8)):
    """A figure and a 2-D array of axes, on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)


def save(fig, path: str | Path, title: str | None = None) -> Path:
    """Save ``fig`` to ``path`` atomically (temporary file + rename) and close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
