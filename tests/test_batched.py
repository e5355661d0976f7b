"""Batched sweeps (noisereg.training.batched_gd): the same numbers as the per-run path, resume, divergence, CLI."""

import json
import math

import pytest
import torch

from noisereg import NoiseInjector
from noisereg.cli import main
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.sweep.executors import batches
from noisereg.noise import flat_layout
from noisereg.training.batched_gd import Setup, run_noisy_gd_batch

RTOL, ATOL = 1e-9, 1e-12          # the tolerance: only summation order may differ (float64)
BATCHED = ("lasso", "grouplasso", "logistic", "nuclear", "psd", "fig2")


def assert_same(a, b, path="", exact=False):
    """Recursive comparison of two run records: floats within RTOL/ATOL (bit for bit if ``exact``), the rest equal;
    ``seconds`` and ``batched`` (bookkeeping) are not compared."""
    if isinstance(a, dict):
        skip = {"seconds", "batched"}
        assert set(a) - skip == set(b) - skip, (path, set(a) ^ set(b))
        for k in set(a) - skip:
            assert_same(a[k], b[k], f"{path}/{k}", exact)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{path}[{i}]", exact)
    elif isinstance(a, float) or isinstance(b, float):
        if exact or math.isnan(a):
            assert a == b or (math.isnan(a) and math.isnan(b)), (path, a, b)
        else:
            assert abs(a - b) <= ATOL + RTOL * abs(b), (path, a, b)
    else:
        assert a == b, (path, a, b)


# ------------------------------------------------------------------ the injector's draws


def _two_param_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)).double()


@pytest.mark.parametrize("mode", ["full", "layer"])
def test_draw_gives_the_noise_perturb_injects(mode):
    m1, m2 = _two_param_model(), _two_param_model()
    a = NoiseInjector(m1, sigma=0.3, mode=mode, seed=5)
    b = NoiseInjector(m2, sigma=0.3, mode=mode, seed=5)
    for _ in range(6):
        with a.perturb():
            seen = [p.detach().clone() for p in m1.parameters()]
        drawn = b.draw()
        assert a.last_layer == b.last_layer and a.step == b.step
        for p, s in zip(m2.parameters(), seen):
            assert torch.equal(drawn.get(id(p), p.detach()), s)


@pytest.mark.parametrize("mode", ["full", "layer"])
def test_draw_flat_gives_the_noise_perturb_injects(mode):
    m1, m2 = _two_param_model(), _two_param_model()
    a = NoiseInjector(m1, sigma=0.3, mode=mode, seed=5)
    b = NoiseInjector(m2, sigma=0.3, mode=mode, seed=5)
    params = list(m2.parameters())
    offsets, total = flat_layout(params)
    buf = torch.full((3, total), 7.0, dtype=torch.float64)
    layers = set()
    for _ in range(8):
        with a.perturb():
            seen = [p.detach().clone() for p in m1.parameters()]
        assert b.draw_flat(buf[1])                      # a row of a larger buffer, as in a batch
        assert a.last_layer == b.last_layer and a.step == b.step
        layers.add(b.last_layer)
        for p, off, s in zip(params, offsets, seen):
            assert torch.equal(p.detach() + buf[1, off:off + p.numel()].view(p.shape), s)
    assert layers == ({None} if mode == "full" else {0, 1})   # both layers drawn: both blocks checked
    assert not NoiseInjector(m2, sigma=0.0, mode="full").draw_flat(buf[0])
    mixed = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).float()).double()
    mixed[1].float()
    with pytest.raises(ValueError, match="one device and dtype and scale='absolute'"):
        NoiseInjector(mixed, sigma=0.3, mode="full").draw_flat(buf[0])


# ------------------------------------------------------------------ same numbers as the per-run path


def _setups(name, overrides=None):
    exp = EXPERIMENTS[name]
    cfg = exp.config("smoke", {"seeds": (0, 1), **(overrides or {})})
    groups = [g for g in batches(exp.runs(cfg)).values() if len(g) > 1]
    assert groups, f"{name}: nothing to batch at this preset"
    return groups[0]


@pytest.mark.parametrize("name", BATCHED)
def test_batched_records_equal_the_per_run_records(name):
    overrides = {"sigmas": (0.3, 0.4)} if name == "nuclear" else None
    jobs = _setups(name, overrides)
    reference = [j.batch[1]().run() for j in jobs]
    batched = run_noisy_gd_batch([j.batch[1]() for j in jobs])
    for a, b in zip(batched, reference):   # logistic's batched forward uses the per-run kernels: exact
        assert_same(a, b, exact=name == "logistic")


def test_the_batched_path_uses_its_noise_fast_path_for_full_and_layerwise_noise():
    """Full and layer-wise runs of the experiments: one flat buffer (draw_flat)."""
    from noisereg.training.batched_gd import _flat_noise

    nuclear = EXPERIMENTS["nuclear"]
    layer = [j for j in batches(nuclear.runs(nuclear.config("smoke", {"seeds": (0, 1)})))["nuclear"]
             if j.params["method"] == "layer"]
    for jobs, fast in ((_setups("lasso"), True), (layer, True)):
        setups = [j.batch[1]() for j in jobs]
        own = [list(s.model.parameters()) for s in setups]
        names = [k for k, _ in setups[0].model.named_parameters()]
        assert (_flat_noise(setups, names, own) is not None) == fast


@pytest.mark.parametrize("fast", [True, False], ids=["draw_flat", "draw"])
def test_a_mixed_batch_equals_the_per_run_path_on_both_noise_paths(fast, monkeypatch):
    """nuclear: plain GD, full and layer-wise noise in one batch; the general path (draw) forced as well."""
    from noisereg.training import batched_gd

    if not fast:
        monkeypatch.setattr(batched_gd, "_flat_noise", lambda *a: None)
    exp = EXPERIMENTS["nuclear"]
    jobs = batches(exp.runs(exp.config("smoke", {"seeds": (0, 1), "sigmas": (0.3,)})))["nuclear"]
    assert {j.params["method"] for j in jobs} == {"gd", "full", "layer"}
    for a, b in zip(run_noisy_gd_batch([j.batch[1]() for j in jobs]), [j.batch[1]().run() for j in jobs]):
        assert_same(a, b)


# ------------------------------------------------------------------ resume, divergence, refusals


def test_a_killed_batch_resumes_bit_for_bit(tmp_path):
    jobs = _setups("lasso")
    whole = run_noisy_gd_batch([j.batch[1]() for j in jobs])
    ckpt = tmp_path / "batch.pt"

    class Killed(Exception):
        pass

    setups = [j.batch[1]() for j in jobs]
    evaluate = setups[1].options["evaluate"]

    def dies(t, avg):   # the second run's evaluation at step 300 kills the process (after the 200 checkpoint)
        if t == 300:
            raise Killed
        return evaluate(t, avg)

    setups[1].options["evaluate"] = dies
    with pytest.raises(Killed):
        run_noisy_gd_batch(setups, checkpoint=ckpt)
    assert ckpt.exists()
    resumed = run_noisy_gd_batch([j.batch[1]() for j in jobs], checkpoint=ckpt, resume=True)
    for a, b in zip(resumed, whole):
        assert_same(a, b, exact=True)


def test_a_checkpoint_of_another_batch_is_refused(tmp_path):
    jobs = _setups("lasso")
    run_noisy_gd_batch([j.batch[1]() for j in jobs], checkpoint=tmp_path / "b.pt")
    other = _setups("lasso", {"lr": 0.04})
    with pytest.raises(ValueError, match="another batch"):
        run_noisy_gd_batch([j.batch[1]() for j in other], checkpoint=tmp_path / "b.pt", resume=True)


def test_a_diverging_run_does_not_touch_the_others():
    jobs = _setups("lasso")
    setups = [j.batch[1]() for j in jobs]
    setups[0].options["lr"] = 1e3                     # explodes
    out = run_noisy_gd_batch(setups)
    assert not math.isfinite(out[0]["final"]["rel_err"]) and out[0]["diverged"] is True
    assert "diverged" not in out[1]
    assert_same(out[1], jobs[1].batch[1]().run())
    alone = jobs[0].batch[1]()
    alone.options["lr"] = 1e3
    assert alone.run()["diverged"] is True             # the per-run path marks it too


def test_runs_of_different_shapes_or_evaluation_steps_are_refused():
    from noisereg.experiments.lasso import setup_diagonal

    cfg = EXPERIMENTS["lasso"].config("smoke")
    a, b = setup_diagonal(cfg, 0.2, 0), setup_diagonal(EXPERIMENTS["lasso"].config("smoke", {"d": 60}), 0.2, 0)
    with pytest.raises(ValueError, match="same parameter names and shapes"):
        run_noisy_gd_batch([a, b])
    c = setup_diagonal(EXPERIMENTS["lasso"].config("smoke", {"eval_every": 50}), 0.2, 0)
    with pytest.raises(ValueError, match="same steps and eval_steps"):
        run_noisy_gd_batch([setup_diagonal(cfg, 0.2, 0), c])
    with pytest.raises(ValueError, match="at least one"):
        run_noisy_gd_batch([])
    bad = setup_diagonal(cfg, 0.2, 0)
    bad.options["lr"] = -1.0
    with pytest.raises(ValueError, match="lr must be"):
        run_noisy_gd_batch([bad, setup_diagonal(cfg, 0.2, 1)])
    assert isinstance(a, Setup)


# ------------------------------------------------------------------ the runner and the command line


def test_cli_batched_and_no_batch_give_the_same_results(tmp_path):
    args = ["run", "lasso", "--preset", "smoke", "--set", "seeds=0,1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--no-batch", "--out", str(tmp_path / "n")]) == 0
    b, n = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("b", "n"))
    assert b["environment"].get("batched") is True and "batched" not in n["environment"]
    assert [r["batched"] for r in b["runs"]] == [4] * 4 and not any("batched" in r for r in n["runs"])
    for x, y in zip(b["runs"], n["runs"]):
        assert_same(x, y)


def test_resume_of_a_finished_batched_sweep_changes_nothing(tmp_path):
    exp = EXPERIMENTS["psd"]
    first = run_experiment(exp, "smoke", tmp_path, overrides={"seeds": (0, 1)}, show_progress=False)
    again = run_experiment(exp, "smoke", tmp_path, overrides={"seeds": (0, 1)}, show_progress=False, resume=True)
    assert first["runs"] == again["runs"]


def test_show_says_which_runs_are_batched(capsys):
    assert main(["show", "lasso", "--preset", "demo"]) == 0
    assert "12 runs (s0.1-seed0 ...) train as one batched model" in capsys.readouterr().out
    assert main(["show", "fig3", "--preset", "smoke"]) == 0
    assert "batching: none" in capsys.readouterr().out


# ------------------------------------------------------------------ the experiments' written-out gradients


def _autograd(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {k: p.grad for k, p in model.named_parameters()}


def test_logistic_grad_is_autograds_gradient_bit_for_bit():
    """The written-out gradient must equal autograd's exactly: the logistic runs amplify any rounding."""
    from noisereg.experiments.logistic import logistic_grad, separable_problem
    from noisereg.models import DiagonalNet

    X, y, _ = separable_problem(30, 50, 3, 3.0, 0)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    for scale in (0.1, 1.0, 5.0):   # 5.0: margins beyond softplus's threshold, where its backward switches formula
        p = {k: scale * torch.randn(4, 50, generator=g, dtype=torch.float64) for k in ("w1", "w2")}
        mine = logistic_grad(X, y)(p)
        for r in range(4):
            net = DiagonalNet(50).double()
            net.load_state_dict({k: v[r] for k, v in p.items()})
            ref = _autograd(net, torch.nn.functional.softplus(-y * net(X)[:, 0]).mean())
            for k in ("w1", "w2"):
                assert torch.equal(mine[k][r], ref[k]), (scale, r, k)


def test_two_layer_grad_is_autograds_gradient():
    from noisereg.experiments.nuclear import two_layer_grad
    from noisereg.models import DeepLinearNet

    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(20, 4, generator=g, dtype=torch.float64), torch.randn(20, 3, generator=g, dtype=torch.float64)
    nets = [DeepLinearNet((4, 6, 3), generator=torch.Generator().manual_seed(r)).double() for r in range(3)]
    p = {k: torch.stack([dict(n.named_parameters())[k].detach() for n in nets]) for k in ("0.weight", "1.weight")}
    mine = two_layer_grad(X, Y)(p)
    for r, net in enumerate(nets):
        ref = _autograd(net, 0.5 * (net(X) - Y).pow(2).sum() / 20)
        for k in p:
            torch.testing.assert_close(mine[k][r], ref[k], rtol=1e-13, atol=1e-15)


def test_a_killed_batch_that_averages_as_one_tensor_resumes_bit_for_bit(tmp_path):
    """nuclear averages W2 W1 of all its runs as one stacked sum (batched_average); killed after it started."""
    exp = EXPERIMENTS["nuclear"]
    cfg = exp.config("smoke", {"seeds": (0, 1), "sigmas": (0.3,)})
    jobs = batches(exp.runs(cfg))["nuclear"]
    assert all(j.batch[1]().batched_average is not None for j in jobs)
    whole = run_noisy_gd_batch([j.batch[1]() for j in jobs])
    kill_at = cfg.steps - cfg.eval_every      # the averaging window is the last avg_frac of the steps
    assert kill_at > cfg.steps * (1 - cfg.avg_frac)
    setups = [j.batch[1]() for j in jobs]
    evaluate = setups[0].options["evaluate"]

    class Killed(Exception):
        pass

    def dies(t, avg):
        if t == kill_at:
            raise Killed
        return evaluate(t, avg)

    setups[0].options["evaluate"] = dies
    ckpt = tmp_path / "batch.pt"
    with pytest.raises(Killed):
        run_noisy_gd_batch(setups, checkpoint=ckpt)
    resumed = run_noisy_gd_batch([j.batch[1]() for j in jobs], checkpoint=ckpt, resume=True)
    for a, b in zip(resumed, whole):
        assert_same(a, b, exact=True)
    for a, b in zip(whole, [j.batch[1]().run() for j in jobs]):   # and the stacked average is the per-run one
        assert_same(a, b)


def test_diagonal_square_grad_is_autograds_gradient():
    from noisereg.experiments.lasso import diagonal_square_grad
    from noisereg.models import DiagonalNet

    g = torch.Generator().manual_seed(2)
    X, y = torch.randn(20, 7, generator=g, dtype=torch.float64), torch.randn(20, generator=g, dtype=torch.float64)
    p = {k: torch.randn(3, 7, generator=g, dtype=torch.float64) for k in ("w1", "w2")}
    mine = diagonal_square_grad(X, y)(p)
    for r in range(3):
        net = DiagonalNet(7).double()
        net.load_state_dict({k: v[r] for k, v in p.items()})
        ref = _autograd(net, (y - net(X)[:, 0]).pow(2).sum() / 40)
        for k in p:
            torch.testing.assert_close(mine[k][r], ref[k], rtol=1e-13, atol=1e-15)
