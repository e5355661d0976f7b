"""What an experiment is: :class:`Experiment`, its runs (:class:`Run`, :class:`Job`), the registry, ``--set`` parsing.

An experiment is a subclass of :class:`Experiment` with a ``name`` (which registers an instance in
:data:`EXPERIMENTS`), a frozen dataclass ``Config`` (checked on construction, see
:mod:`noisereg.constraints`), a dict of ``PRESETS`` (``smoke``: seconds, used by tests; ``cpu``:
minutes on 2 cores with embedded data; ``demo``: the part ``noisereg demo`` runs, where the
experiment takes part; ``paper``: the paper's settings), and methods that list the runs, build the
data and models, draw the figures and judge the paper's claims. Each run carries its parameters as
data (``Run.params``, saved in results.json). :func:`noisereg.sweep.run.run_experiment` runs them.

The registry fills itself when it is first read: it imports the built-in experiments
(``noisereg.experiments``, by name, with :mod:`importlib`) and every entry point of the group
``noisereg.experiments`` (a module or a class of an installed package); ``noisereg run --module
MOD`` imports a module on the path first. Nothing here imports an experiment module directly.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
import warnings
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisereg.data import Split
from noisereg.errors import UserError
from noisereg.training.settings import TrainSpec

ENTRY_POINT_GROUP = "noisereg.experiments"
"""The entry-point group through which installed packages add experiments (see docs/custom_experiment.md)."""


class Registry(MutableMapping):
    """Experiments by name, ordered by ``Experiment.order`` then name; filled on first read.

    Reading (``in``, ``[]``, iteration, ``len``) first imports the built-in experiments and the
    entry points of :data:`ENTRY_POINT_GROUP`, once. A subclass of :class:`Experiment` with a
    ``name`` registers itself when its module is imported, whenever that happens.
    """

    def __init__(self) -> None:
        self._items: dict[str, Experiment] = {}
        self._loaded = False

    def load(self) -> None:
        """Import the built-in experiments and the installed entry points (once)."""
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module("noisereg.experiments")
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()   # a module registers its classes on import; a class registered when it was defined
            except Exception as e:  # noqa: BLE001  a broken plugin must not take the built-in experiments down
                warnings.warn(f"noisereg: entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                              f"failed to load: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)

    def register(self, exp: Experiment) -> None:
        """Add ``exp`` under ``exp.name``; a name taken by another class raises ``TypeError``."""
        other = self._items.get(exp.name)
        if other is not None and type(other).__qualname__ != type(exp).__qualname__:
            raise TypeError(f"experiment name {exp.name!r} is taken by {type(other).__qualname__}")
        self._items[exp.name] = exp

    def _order(self) -> list[str]:
        self.load()
        return sorted(self._items, key=lambda n: (self._items[n].order, n))

    def __getitem__(self, name: str) -> Experiment:
        self.load()
        return self._items[name]

    def __setitem__(self, name: str, exp: Experiment) -> None:
        self._items[name] = exp

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._order())

    def __len__(self) -> int:
        self.load()
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._order())})"


def import_module(name: str) -> None:
    """Import a user's experiment module (``noisereg run --module NAME``): its experiments register.

    Raises:
        UserError: the module cannot be imported (the message says why).
    """
    try:
        importlib.import_module(name)
    except ImportError as e:
        raise UserError(f"--module {name}: cannot import it ({e}); put it on PYTHONPATH or install its package") \
            from None


EXPERIMENTS: Registry = Registry()
"""Every experiment by name (an instance); see :class:`Registry`."""


@dataclass(frozen=True)
class Run:
    """One training run: a unique id, a display label (``variant``, e.g. "width 300"), its spec, and
    the parameters that distinguish it (``params``, e.g. ``{"width": 300}``; saved in results.json)."""

    id: str
    variant: str
    spec: TrainSpec
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """One computation that is not a standard training run (theory experiments).

    ``fn(checkpoint=PATH, resume=BOOL)`` returns the run record: ``{"method", "sigma", "seed",
    "final": {...}, "history": [...]}`` plus any extra JSON-serialisable fields the experiment's
    figures and claims need; a job that runs in one go may ignore both keywords. ``params`` as in
    :class:`Run`.
    """

    id: str
    variant: str
    fn: Any
    params: dict[str, Any] = field(default_factory=dict)
    batch: tuple[str, Any] | None = None
    """``(key, make_setup)``: jobs with the same key may train together as one batched model
    (:func:`noisereg.training.batched_gd.run_noisy_gd_batch`); ``make_setup()`` returns this job's
    :class:`~noisereg.training.batched_gd.Setup`. None: the job always runs alone (``fn``)."""


class Experiment:
    """Base class; see the module docstring. Subclasses set the class attributes and methods.

    A subclass that sets ``name`` registers an instance of itself in :data:`EXPERIMENTS`;
    ``order`` places it in ``noisereg list`` and in the demo (lower first; equal orders by name).
    """

    name: str = ""
    description: str = ""
    order: float = math.inf
    Config: type = object
    PRESETS: dict[str, dict[str, Any]] = {}
    claims_text: str = ""
    metrics: tuple[str, ...] = ()
    """Keys of a run's ``final`` the report's metrics table shows besides the common ``METRICS``."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            EXPERIMENTS.register(cls())

    def config(self, preset: str, overrides: dict[str, Any] | None = None):
        """The checked config of ``preset`` with ``overrides`` on top.

        Raises:
            UserError: unknown preset, or a value that breaks the config's constraints.
        """
        if preset not in self.PRESETS:
            raise UserError(f"unknown preset {preset!r} for {self.name}; valid: {', '.join(self.PRESETS)}")
        return self.Config(**{**self.PRESETS[preset], **(overrides or {})})

    def data(self, cfg, data: str | None, data_dir: str | None) -> Split:
        raise NotImplementedError

    def own_data_only(self, data: str | None, data_dir: str | None) -> None:
        """For experiments with their own synthetic data: refuse ``--data`` / ``--data-dir``."""
        if data or data_dir:
            raise UserError(f"{self.name} uses its own synthetic data; --data/--data-dir do not apply")

    def runs(self, cfg) -> list[Run | Job]:
        raise NotImplementedError

    def model(self, cfg, run: Run, data: Split) -> nn.Module:
        raise NotImplementedError

    def figures(self, cfg_dict: dict) -> list[dict[str, Any]]:
        """Declarative figure specs drawn by :mod:`noisereg.report` (one PNG each), e.g.
        ``{"file": "fig2.png", "kind": "curves", "metrics": ["train_loss"], "panels": "variant"}``;
        kind ``"custom"`` calls :meth:`draw`; the kinds and their keys: :mod:`noisereg.report.figures`."""
        return []

    def draw(self, results: dict, spec: dict[str, Any], out: Path) -> Path:
        """Draw a ``"custom"`` figure spec from ``results`` into ``out / spec["file"]``."""
        raise NotImplementedError(f"{self.name} declares a custom figure but has no draw()")

    def claims(self, results: dict) -> list[dict[str, str]]:
        """Rows ``{"claim", "paper", "ours", "verdict"}`` judging the paper's claims on ``results``; a row may
        add ``"figure"`` (a figure's file) to stand under that figure in REPORT.md (default: the first)."""
        return []

    def selected(self, results: dict) -> dict | None:
        """What was chosen from the runs before judging (e.g. each noisy method's σ, chosen on
        validation data); saved as ``results.json["selected"]`` when not None. In a two-stage sweep
        (:meth:`confirms`) ``results`` holds the selection runs only."""
        return None

    def confirms(self, cfg) -> bool:
        """Whether a sweep at ``cfg`` has a second stage, confirmation runs (:meth:`confirm_runs`;
        :mod:`noisereg.sweep.stages`). Default: no."""
        return False

    def confirm_runs(self, cfg, selected: dict | None) -> list[Run | Job]:
        """The confirmation runs, built from ``cfg`` and ``selected`` (what :meth:`selected` returned on
        the selection runs, JSON-shaped) alone, so that a worker rebuilds them by id. ``selected`` None:
        runs of the same number at a placeholder choice (``noisereg show`` counts them)."""
        return []

    def notes(self, results: dict) -> list[str]:
        """Extra Markdown lines for the report section (after the claims)."""
        return []


# ----------------------------------------------------------------------------- config parsing
def _parse_value(name: str, text: str, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        item = args[0] if args else str
        return tuple(_parse_value(name, t.strip(), item) for t in text.split(",") if t.strip())
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--set {name}: expected a boolean (true/false), got {text!r}")
    try:
        value = hint(text)
    except (TypeError, ValueError):
        raise UserError(f"--set {name}: expected {getattr(hint, '__name__', hint)}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"--set {name}: expected a finite number, got {text!r}")
    return value


def parse_overrides(config_cls: type, items: list[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` against the fields of ``config_cls`` (types checked).

    Raises:
        UserError: malformed item, unknown key (the message lists the valid keys), or a value
            that does not parse as the field's type.
    """
    names = {f.name for f in dataclasses.fields(config_cls)}
    hints = {k: v for k, v in typing.get_type_hints(config_cls).items() if k in names}
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in hints:
            raise UserError(f"unknown --set key {key!r}; valid keys: {', '.join(sorted(hints))}")
        out[key] = _parse_value(key, text.strip(), hints[key])
    return out


def default_device() -> str:
    """``"cuda"`` where a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"

