"""The demo: GD vs GD+noise vs GD+noise (layer) on embedded digits, in about a minute on a CPU.

Top to bottom: config, data, model, train (one run per method, same initialisation), evaluate,
save (``results.json`` in the DESIGN.md schema, ``curves.png``), print a table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import noisereg as nr
from noisereg.data import Split, load_digits_split
from noisereg.models import MLP

METHODS = ("gd", "full", "layer")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (full-batch GD with momentum, as in the paper's official code)."""

    hidden: tuple[int, ...] = (512, 512)  # overparametrized: ~300k weights for 1024 points
    steps: int = 1500                     # full-batch GD iterations per method
    lr: float = 0.05
    momentum: float = 0.9
    sigma: float = 0.1                    # noise scale, paper convention (layer std = sigma*sqrt(M))
    n_train: int = 1024                   # the paper's Fashion-MNIST subset size
    eval_every: int = 50                  # steps between evaluations
    seed: int = 0                         # data split, initialisation and noise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Split) -> dict[str, float]:
    """Train/test cross-entropy and accuracy at the clean weights."""
    out = {}
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        logits = model(x)
        out[f"{split}_loss"] = F.cross_entropy(logits, y).item()
        out[f"{split}_acc"] = (logits.argmax(1) == y).float().mean().item()
    return out


def train_one(method: str, cfg: DemoConfig, data: Split, progress=None) -> dict:
    """Full-batch GD with momentum; ``method`` in ``METHODS`` picks the noise injection."""
    torch.manual_seed(cfg.seed)  # same initialisation for every method
    model = MLP(data.x_train.shape[1], cfg.hidden, data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    inj = None if method == "gd" else nr.NoiseInjector(model, cfg.sigma, mode=method, seed=cfg.seed)
    history = [{"step": 0, **evaluate(model, data)}]
    for step in range(1, cfg.steps + 1):
        opt.zero_grad(set_to_none=True)
        if inj is None:
            F.cross_entropy(model(data.x_train), data.y_train).backward()
        else:
            with inj.perturb():
                F.cross_entropy(model(data.x_train), data.y_train).backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            history.append({"step": step, **evaluate(model, data)})
        if progress is not None:
            progress.update(1)
    return {"method": method, "sigma": 0.0 if inj is None else cfg.sigma, "seed": cfg.seed,
            "final": {k: v for k, v in history[-1].items() if k != "step"}, "history": history}


def plot(results: dict, path: Path) -> None:
    """Train loss (log scale) and test accuracy against the step, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"gd": "GD", "full": "GD + noise", "layer": "GD + noise (layer)"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for run in results["runs"]:
        steps = [h["step"] for h in run["history"]]
        label = labels[run["method"]] + ("" if run["method"] == "gd" else f", σ={run['sigma']}")
        axes[0].semilogy(steps, [h["train_loss"] for h in run["history"]], label=label)
        axes[1].plot(steps, [100 * h["test_acc"] for h in run["history"]], label=label)
    axes[0].set(xlabel="iteration", ylabel="train loss (cross-entropy)", title="Training loss")
    axes[1].set(xlabel="iteration", ylabel="test accuracy (%)", title="Test accuracy",
                ylim=(max(0, 100 * min(r["final"]["test_acc"] for r in results["runs"]) - 10), 100))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{results['config']['data']}: MLP {results['config']['hidden']}, full-batch GD")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def run_demo(out: Path, cfg: DemoConfig = DemoConfig(), show_progress: bool = True) -> dict:
    """Train the three methods, write ``results.json`` and ``curves.png`` into ``out``."""
    from tqdm.auto import tqdm

    data = load_digits_split(cfg.n_train, seed=cfg.seed)
    results = {"experiment": "demo", "preset": "cpu",
               "config": {**dataclasses.asdict(cfg), "data": data.name}, "runs": []}
    t0 = time.perf_counter()
    with tqdm(total=len(METHODS) * cfg.steps, disable=not show_progress, unit="step", mininterval=1.0) as bar:
        for method in METHODS:
            bar.set_description(method)
            results["runs"].append(train_one(method, cfg, data, bar))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    plot(results, out / "curves.png")
    return results


def table(results: dict) -> str:
    """A fixed-width table of the final metrics of each run."""
    rows = [f"{'method':<8} {'sigma':>6} {'train loss':>11} {'train acc':>10} {'test loss':>10} {'test acc':>9}"]
    for r in results["runs"]:
        f = r["final"]
        rows.append(f"{r['method']:<8} {r['sigma']:>6g} {f['train_loss']:>11.4f} {100 * f['train_acc']:>9.2f}% "
                    f"{f['test_loss']:>10.4f} {100 * f['test_acc']:>8.2f}%")
    return "\n".join(rows)
