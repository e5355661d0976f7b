"""The noise the presets really inject, read from real (tiny) runs of the sweep runner.

The paper presets of fig3-fig6 inject the noise of the code that drew the figures (docs/THEORY.md §3):
every parameter tensor is a layer (T of them), layer-wise noise perturbs tensor ``t mod T`` at step t
with std σ, full noise perturbs every entry with std σ/√T. The cpu presets keep the paper's convention:
std σ on every entry (full), σ·√M on one of the M modules' parameters (layer).

The noise is recorded inside ``perturb()`` as the perturbed minus the clean weights; a sample std over N
draws has a relative standard error of about 1/√(2N), and each is checked within 4 of them.
"""

import contextlib
import math

import pytest
import torch

import noisereg.training.loop as loop
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.injection import NoiseInjector

SIGMA, STEPS = 0.05, 36


@pytest.fixture
def recorded(monkeypatch):
    """Every training run's injector records, per step, ``[(tensor name, noise)]`` of each parameter tensor."""
    steps: list[list[tuple[str, torch.Tensor]]] = []

    class Recording(NoiseInjector):
        @contextlib.contextmanager
        def perturb(self):
            named = [(f"{name}[{i}]", p) for name, ps in self.layers for i, p in enumerate(ps)]
            clean = [p.detach().clone() for _, p in named]
            with super().perturb():
                steps.append([(n, p.detach() - c) for (n, p), c in zip(named, clean)])
                yield

    monkeypatch.setattr(loop, "NoiseInjector", Recording)
    return steps


def _run(tmp_path, name, preset, method, **overrides):
    cfg = dict(dataset="standin:fashion_mnist", n_train=40, n_val=8, epochs=STEPS, eval_every=STEPS,
               sigmas=(SIGMA,), seeds=(0,), methods=(method,), log=(), checkpoint_every=STEPS, confirm_seeds=())
    run_experiment(EXPERIMENTS[name], preset, tmp_path / f"{name}-{preset}-{method}", overrides={**cfg, **overrides},
                   show_progress=False)


def _check_std(noise: list[torch.Tensor], want: float) -> None:
    x = torch.cat([n.flatten().double() for n in noise])
    rel_se = 1 / math.sqrt(2 * x.numel())
    assert abs(float(x.std()) / want - 1) < 4 * rel_se, (float(x.std()), want, x.numel())


PRESETS = [("fig3", dict(hidden=(6, 5)), 6), ("fig4", dict(widths=(7,), lrs=(0.01,), depth=2), 6)]


@pytest.mark.parametrize("name, model, tensors", PRESETS, ids=[p[0] for p in PRESETS])
def test_paper_preset_full_noise_is_sigma_over_root_T_on_every_tensor(tmp_path, recorded, name, model, tensors):
    _run(tmp_path, name, "paper", "full", **model)
    assert len(recorded) == STEPS and len(recorded[0]) == tensors
    for t in range(tensors):
        assert all(float(step[t][1].abs().max()) > 0 for step in recorded)  # every tensor, every step
        _check_std([step[t][1] for step in recorded], SIGMA / math.sqrt(tensors))


@pytest.mark.parametrize("name, model, tensors", PRESETS, ids=[p[0] for p in PRESETS])
def test_paper_preset_layer_noise_is_sigma_on_one_tensor_in_turn(tmp_path, recorded, name, model, tensors):
    _run(tmp_path, name, "paper", "layer", **model)
    assert len(recorded) == STEPS
    chosen = [[t for t, (_, n) in enumerate(step) if bool(n.abs().max() > 0)] for step in recorded]
    assert chosen == [[k % tensors] for k in range(STEPS)]  # cyclic, one tensor per step
    for t in range(tensors):
        _check_std([step[t][1] for step in recorded[t::tensors]], SIGMA)


def test_cpu_preset_keeps_the_paper_convention(tmp_path, recorded):
    _run(tmp_path, "fig3", "cpu", "layer", hidden=(6, 5))  # M = 3 modules, 2 tensors each
    sizes = {0: 784 * 6 + 6, 1: 6 * 5 + 5, 2: 5 * 10 + 10}
    by_module: dict[int, list[torch.Tensor]] = {m: [] for m in sizes}
    for step in recorded:
        hit = sorted({t // 2 for t, (_, n) in enumerate(step) if bool(n.abs().max() > 0)})
        assert len(hit) == 1  # one module (both its tensors) per step, chosen at random
        by_module[hit[0]] += [step[2 * hit[0]][1], step[2 * hit[0] + 1][1]]
    assert sum(1 for v in by_module.values() if v) >= 2
    _check_std([n for v in by_module.values() for n in v], SIGMA * math.sqrt(3))
    recorded.clear()
    _run(tmp_path, "fig3", "cpu", "full", hidden=(6, 5))
    _check_std([n for step in recorded for _, n in step], SIGMA)


@pytest.mark.parametrize("name", ["fig3", "fig4", "fig5", "fig6"])
def test_every_paper_preset_uses_the_official_noise_and_cpu_the_papers(name):
    exp = EXPERIMENTS[name]
    paper, cpu = exp.config("paper"), exp.config("cpu")
    assert (paper.convention, paper.layers, paper.order) == ("official", "tensor", "cyclic")
    assert (cpu.convention, cpu.layers, cpu.order) == ("paper", "module", "random")


def test_reports_state_the_convention(tmp_path):
    import json

    from noisereg.report import write_report

    for preset, overrides, want in (("cpu", dict(hidden=(6, 5)), "Noise: convention `paper` (full noise std σ per"),
                                    ("paper", dict(hidden=(6, 5)), "Noise: convention `official` (full noise std "
                                                                    "σ/√T per entry, layer-wise std σ on one of the T "
                                                                    "parameter tensors, chosen in turn)")):
        _run(tmp_path, "fig3", preset, "layer", methods=("gd", "layer"), **overrides)
        out = tmp_path / f"fig3-{preset}-layer"
        write_report(out, [json.loads((out / "results.json").read_text())])
        assert want in (out / "REPORT.md").read_text()
