"""Small matplotlib helpers for the figures (Agg backend, atomic save as PNG + SVG) and the one style
per method that every figure uses.

:data:`STYLES` gives each method (arm, see :func:`~noisereg.verdicts.arm`) one colour and one
marker in every figure, from the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design") and
Paul Tol's colour-blind safe palettes; the markers tell the methods apart in grey scale too. An arm
``<method>_eq`` (a method run at equal gradient evaluations) takes its method's colour and marker,
hollow and dashed; an arm missing from the table gets a fixed style picked by a hash of its name, so
it looks the same in every figure.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

STYLES: dict[str, dict[str, str]] = {
    "gd": {"color": "#000000", "marker": "s", "label": "GD"},
    "full": {"color": "#E69F00", "marker": "o", "label": "GD + noise"},
    "layer": {"color": "#0072B2", "marker": "^", "label": "GD + noise (layer)"},
    "sam": {"color": "#D55E00", "marker": "D", "label": "SAM (ρ on the σ axis)"},
    "sam_half": {"color": "#CC79A7", "marker": "d", "label": "SAM, half the steps"},
    "wd": {"color": "#009E73", "marker": "P", "label": "GD + weight decay"},
    "rwp": {"color": "#56B4E9", "marker": "v", "label": "RWP"},
    "mrwp": {"color": "#999933", "marker": "<", "label": "m-RWP"},
    "lpf": {"color": "#882255", "marker": ">", "label": "LPF-SGD"},
    "nso": {"color": "#332288", "marker": "X", "label": "NSO"},
}
"""Method → ``{"color", "marker", "label"}``; its order is the order of the methods in legends."""
_SPARE = [("#44AA99", "h"), ("#DDCC77", "p"), ("#AA4499", "*"), ("#117733", "8"), ("#888888", "H"), ("#661100", "1")]


def style(arm: str) -> dict:
    """Keyword arguments for ``ax.plot`` / ``ax.errorbar`` of ``arm``: color, marker, label, linestyle,
    markerfacecolor (``<method>_eq``: its method's, hollow and dashed, "(equal gradients)").

    Example:
        >>> style("layer")["color"], style("lpf_eq")["linestyle"], style("lpf_eq")["label"]
        ('#0072B2', '--', 'LPF-SGD (equal gradients)')
    """
    if not isinstance(arm, str) or not arm:
        raise TypeError(f"arm must be a non-empty str, got {arm!r}")
    base = arm.removesuffix("_eq") if arm.endswith("_eq") and arm != "_eq" else None
    if base is not None:
        s = style(base)
        return {**s, "label": f"{s['label']} (equal gradients)", "linestyle": "--", "markerfacecolor": "white"}
    if arm in STYLES:
        s = STYLES[arm]
    else:
        color, marker = _SPARE[zlib.crc32(arm.encode()) % len(_SPARE)]
        s = {"color": color, "marker": marker, "label": arm}
    return {**s, "linestyle": "-", "markerfacecolor": s["color"]}


def order(arms) -> list[str]:
    """``arms`` without repeats in legend order: those of :data:`STYLES` (and their ``_eq`` arms) in its
    order, then the others by name."""
    found = set(arms)
    rank = {m: i for i, m in enumerate(STYLES)}
    return sorted(found, key=lambda a: (rank.get(a.removesuffix("_eq"), len(rank)), a.removesuffix("_eq"), a))


def figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.8), height_ratios=None):
    """A figure and a 2-D array of axes, on the non-interactive Agg backend; ``size`` is one panel's
    (width, height), ``height_ratios`` one number per row (the tallest row gets ``size[1]``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = height_ratios or [1] * nrows  # the tallest row is size[1] high
    return plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * sum(heights) / max(heights)),
                        squeeze=False, gridspec_kw={"height_ratios": heights})


def save(fig, path: str | Path, title: str | None = None) -> Path:
    """Save ``fig`` to ``path`` (PNG) and an SVG beside it (same name, ``.svg``), each atomically
    (temporary file + rename), and close it. Both files are byte-identical for identical figures."""
    import matplotlib
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "noisereg", "svg.fonttype": "none"}):
        for target, fmt in ((path, "png"), (path.with_suffix(".svg"), "svg")):
            tmp = target.with_name(f".{target.name}.tmp.{fmt}")
            fig.savefig(tmp, dpi=110, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
            os.replace(tmp, target)
    plt.close(fig)
    return path
