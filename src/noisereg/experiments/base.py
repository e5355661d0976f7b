"""What every experiment shares: the registry, frozen configs with presets, ``--set`` parsing, the runner.

An experiment is one module of this package holding a subclass of :class:`Experiment` with a
``name`` (which registers it in :data:`EXPERIMENTS`), a frozen dataclass ``Config`` (checked on
construction, see :mod:`noisereg.constraints`), a dict of ``PRESETS`` (``smoke``: seconds, used
by tests; ``cpu``: minutes on 2 cores with embedded data; ``demo``: the part ``noisereg demo``
runs, where the experiment takes part; ``paper``: the paper's settings), and methods that list
the runs, build the data and models, draw the figures and judge the paper's claims. Each run
carries its parameters as data (``Run.params``, saved in results.json). :func:`run_experiment`
checks everything, lists the runs, then loads the data and trains every run, writing
``results.json`` after each one (atomically), checkpointing inside runs and resuming.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import subprocess
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisereg.data import Split
from noisereg.errors import UserError
from noisereg.training import atomic_write_json, train
from noisereg.training.settings import TrainSpec

EXPERIMENTS: dict[str, Experiment] = {}
"""Every experiment by name (an instance), filled as the modules define them; see ``noisereg.experiments``."""


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

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            other = EXPERIMENTS.get(cls.name)
            if other is not None and type(other).__qualname__ != cls.__qualname__:
                raise TypeError(f"experiment name {cls.name!r} is taken by {type(other).__qualname__}")
            EXPERIMENTS[cls.name] = cls()

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
        kind ``"custom"`` calls :meth:`draw`."""
        return []

    def draw(self, results: dict, spec: dict[str, Any], out: Path) -> Path:
        """Draw a ``"custom"`` figure spec from ``results`` into ``out / spec["file"]``."""
        raise NotImplementedError(f"{self.name} declares a custom figure but has no draw()")

    def claims(self, results: dict) -> list[dict[str, str]]:
        """Rows ``{"claim", "paper", "ours", "verdict"}`` judging the paper's claims on ``results``."""
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


def _git_hash() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ------------------------------------------------------------------------------------- runner
def data_note(results: dict) -> str:
    """The data a run used, in words: the ``--data`` file's name, the ``--data-dir`` directory, or
    the embedded digits (else the loaded split's own name)."""
    cfg, name = results.get("config", {}), str(results.get("data", "?"))
    if cfg.get("data"):
        return f"data file {Path(cfg['data']).name}"
    if cfg.get("data_dir"):
        return f"{name.split('[')[0]} files in {cfg['data_dir']}"
    if name.startswith("digits"):
        return "embedded 8x8 digits"
    return name


def run_experiment(exp: Experiment, preset: str, out: str | Path, *, overrides: dict[str, Any] | None = None,
                   data: str | None = None, data_dir: str | None = None, resume: bool = False,
                   device: str | None = None, show_progress: bool = True, callback=None) -> dict:
    """Run every run of ``exp`` at ``preset``; write ``out/results.json`` and ``out/checkpoints/``.

    Everything is checked (config, runs, an earlier results.json) before the data is loaded.
    Figures and REPORT.md are made from results.json by :func:`noisereg.report.write_report`.

    Raises:
        UserError: a bad preset or value; ``out`` holds results of another run and ``resume`` is
            False; or ``resume`` with results written for another configuration.
    """
    from tqdm.auto import tqdm

    cfg = exp.config(preset, overrides)
    runs = exp.runs(cfg)
    out = Path(out)
    path = out / "results.json"
    device = device or default_device()
    config = {**dataclasses.asdict(cfg), "data": data, "data_dir": data_dir}
    if path.exists():
        previous = json.loads(path.read_text())
        if not resume:
            raise UserError(f"{path} exists: pass --resume to continue that run, or choose another --out")
        if previous.get("config") != json.loads(json.dumps(config)) or previous.get("preset") != preset:
            raise UserError(f"{path} was written with other settings; --resume needs the same preset, --set and data")
        done = {r["id"]: r for r in previous["runs"]}
    else:
        done = {}
    split = exp.data(cfg, data, data_dir)
    results = {"experiment": exp.name, "preset": preset, "config": config, "data": getattr(split, "name", str(split)),
               "environment": {"torch": torch.__version__, "python": platform.python_version(),
                               "device": device, "git": _git_hash()},
               "runs": [done[r.id] for r in runs if r.id in done]}
    todo = [r for r in runs if r.id not in done]
    t0 = time.perf_counter()
    with tqdm(total=sum(r.spec.epochs if isinstance(r, Run) else 1 for r in todo), disable=not show_progress,
              unit="epoch", mininterval=1.0, desc=exp.name) as bar:
        for run in todo:
            bar.set_postfix_str(run.id)
            checkpoint = out / "checkpoints" / f"{run.id}.pt"
            if isinstance(run, Job):
                t1 = time.perf_counter()
                record = {**run.fn(checkpoint=checkpoint, resume=resume), "seconds": round(time.perf_counter() - t1, 3)}
                bar.update(1)
            else:
                record = train(lambda run=run: exp.model(cfg, run, split), split, run.spec, device=device,
                               checkpoint=checkpoint, resume=resume, progress=bar, callback=callback)
            results["runs"].append({"id": run.id, "variant": run.variant, "params": run.params, **record})
            atomic_write_json(path, results)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(path, results)
    return results
