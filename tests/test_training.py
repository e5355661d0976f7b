"""train() injects the configured noise, resumes without repeating steps, and augments as documented.

The weights a training forward sees are recorded by a forward pre-hook that the model carries into
``train()``. With ``lr = 1e-30`` (float64) an SGD step leaves every weight unchanged, so a forward's
weights minus the initial ones are exactly the noise of that step: its std, its layer choice and
its schedule can be read off and compared with the law (docs/THEORY.md §2-§3).
"""

import dataclasses
import math

import pytest
import torch

from noisereg.data import Split
from noisereg.sweep import EXPERIMENTS, run_experiment
from noisereg.models import MLP
from noisereg.training import TrainSpec, train
from noisereg.training.loop import _augment, build_model

SIGMA = 0.1
NUM_LAYERS = 3  # the MLP below: three Linear modules (six tensors)


def _data(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return Split(x, y, x[:8], y[:8], name="gauss", seed=seed)


def _model_fn(seen):
    def make():
        model = MLP(6, (5, 4), 3).double()

        def record(mod, inp):
            if mod.training:  # training forwards only (evaluation runs in eval mode)
                seen.append([p.detach().clone() for p in mod.parameters()])

        model.register_forward_pre_hook(record)
        return model
    return make


def _noises(**kw):
    """Per training step, the list over parameter tensors of (weights seen in forward) − (initial weights)."""
    spec = TrainSpec(**{"epochs": 30, "lr": 1e-30, "loss": "cross_entropy", "seed": 3, "eval_every": 100, **kw})
    seen = []
    train(_model_fn(seen), _data(), spec)
    init = [p.detach() for p in build_model(_model_fn([]), spec.seed, "cpu").parameters()]
    assert len(seen) == spec.epochs
    return [[s - p for s, p in zip(step, init)] for step in seen]


def _perturbed_tensors(step):
    return [i for i, e in enumerate(step) if e.abs().max() > 0]


def test_gd_sees_the_clean_weights_and_noisy_training_does_not():
    assert all(not _perturbed_tensors(step) for step in _noises(method="gd"))  # and lr=1e-30 moves nothing
    full = _noises(method="full", sigma=SIGMA)
    assert all(_perturbed_tensors(step) == list(range(6)) for step in full)
    layer = _noises(method="layer", sigma=SIGMA)
    assert all(_perturbed_tensors(step) for step in layer)


def test_a_noisy_run_ends_elsewhere_than_gd():
    spec = dict(epochs=5, lr=0.5, loss="cross_entropy", seed=1)
    gd = train(_model_fn([]), _data(), TrainSpec(method="gd", **spec))
    noisy = train(_model_fn([]), _data(), TrainSpec(method="full", sigma=SIGMA, **spec))
    assert gd["final"]["train_loss"] != noisy["final"]["train_loss"]


@pytest.mark.parametrize("mode,convention,std", [
    ("full", "paper", SIGMA),
    ("full", "official", SIGMA / math.sqrt(NUM_LAYERS)),
    ("layer", "paper", SIGMA * math.sqrt(NUM_LAYERS)),
    ("layer", "official", SIGMA),
], ids=["full-paper", "full-official", "layer-paper", "layer-official"])
def test_training_noise_has_the_std_of_the_mode_and_convention(mode, convention, std):
    entries = torch.cat([e.flatten() for step in _noises(method=mode, sigma=SIGMA, convention=convention)
                         for e in step if e.abs().max() > 0])
    assert entries.numel() > 500
    assert entries.std().item() == pytest.approx(std, rel=0.08)  # SE of the std estimate < 3 %
    assert entries.mean().abs().item() < 4 * std / math.sqrt(entries.numel())


def test_layer_noise_follows_the_configured_layers_and_order():
    module_cyclic = [_perturbed_tensors(s) for s in _noises(method="layer", sigma=SIGMA, order="cyclic")]
    layers = [[2 * j, 2 * j + 1] for j in range(NUM_LAYERS)]  # weight and bias of one Linear
    assert all(p in layers for p in module_cyclic)
    chosen = [p[0] // 2 for p in module_cyclic]
    assert chosen == [(chosen[0] + t) % NUM_LAYERS for t in range(len(chosen))]
    random_ = [_perturbed_tensors(s)[0] // 2 for s in _noises(method="layer", sigma=SIGMA, order="random")]
    assert set(random_) == set(range(NUM_LAYERS))
    assert random_ != [(random_[0] + t) % NUM_LAYERS for t in range(len(random_))]
    tensor = [_perturbed_tensors(s) for s in _noises(method="layer", sigma=SIGMA, layers="tensor")]
    assert all(len(p) == 1 for p in tensor) and {p[0] for p in tensor} == set(range(6))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_training_noise_follows_the_sigma_schedule_and_stops(schedule):
    const = _noises(method="full", sigma=SIGMA, epochs=10)
    sched = _noises(method="full", sigma=SIGMA, epochs=10, sigma_schedule=schedule, noise_stop_epoch=8)
    factor = {"linear": lambda t: 1 - t, "cosine": lambda t: 0.5 * (1 + math.cos(math.pi * t))}[schedule]
    for epoch, (a, b) in enumerate(zip(const, sched)):
        f = factor(epoch / 10) if epoch < 8 else 0.0
        for ea, eb in zip(a, b):  # the same unit draws, scaled by the schedule
            torch.testing.assert_close(eb, f * ea, rtol=1e-9, atol=1e-15)


class Killed(Exception):
    pass


def test_train_resumed_after_a_kill_runs_only_the_remaining_epochs(tmp_path):
    spec = TrainSpec(method="layer", sigma=SIGMA, epochs=6, lr=0.1, loss="cross_entropy", seed=2)
    ref_seen = []
    ref = train(_model_fn(ref_seen), _data(), spec)

    def kill(epoch):
        if epoch == 4:
            raise Killed

    with pytest.raises(Killed):
        train(_model_fn([]), _data(), spec, checkpoint=tmp_path / "c.pt", callback=kill)
    seen, epochs = [], []
    got = train(_model_fn(seen), _data(), spec, checkpoint=tmp_path / "c.pt", resume=True, callback=epochs.append)
    assert epochs == [5, 6] and len(seen) == 2  # two training forwards, not six
    for a, b in zip(seen, ref_seen[4:]):
        assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert got["final"] == ref["final"] and got["history"] == ref["history"]


def test_runner_resume_does_not_repeat_finished_epochs(tmp_path):
    exp, overrides = EXPERIMENTS["fig3"], {"epochs": 4, "checkpoint_every": 1}
    calls = []

    def kill(epoch):  # the second run dies after its epoch-2 checkpoint
        calls.append(epoch)
        if len(calls) == 6:
            raise Killed

    with pytest.raises(Killed):
        run_experiment(exp, "smoke", tmp_path, overrides=overrides, show_progress=False, callback=kill)
    runs = len(exp.runs(exp.config("smoke", overrides)))
    after = []
    run_experiment(exp, "smoke", tmp_path, overrides=overrides, show_progress=False, resume=True,
                   callback=after.append)
    assert after == [3, 4] + [1, 2, 3, 4] * (runs - 2)  # run 1 kept, run 2 from epoch 2, the rest whole


def _augment_reference(x, gen):
    """Crop and flip one image at a time, with the draws in the order of ``_augment``."""
    n, _, h, w = x.shape
    pad = 4 if h >= 32 else 1
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        padded = torch.zeros(x.shape[1], h + 2 * pad, w + 2 * pad, dtype=x.dtype)
        padded[:, pad:pad + h, pad:pad + w] = x[i]
        crop = padded[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


@pytest.mark.parametrize("shape", [(16, 1, 8, 8), (6, 3, 32, 32), (4, 2, 5, 7)], ids=["8x8", "32x32", "5x7"])
def test_augment_crops_and_flips_like_a_per_image_reference(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    got = _augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(got, _augment_reference(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(got, x)


def test_logged_metrics_equal_direct_computations_on_the_trained_model():
    """With lr = 1e-30 the trained model is the initial one: its logged loss, accuracy, GGN trace
    (on the first ``trace_points`` training points) and reg_loss = R + σ²/2·tr(GGN) (paper
    convention, docs/THEORY.md §3) are recomputed here from the model directly."""
    import noisereg as nr
    from noisereg.losses import loss_value

    data, sigma = _data(), 0.3
    data = dataclasses.replace(data, x_val=data.x_test[:7] * 2, y_val=data.y_test.flip(0)[:7])  # a validation split
    spec = TrainSpec(method="full", sigma=sigma, epochs=2, lr=1e-30, seed=4, trace_points=10,
                     log=("reg_loss", "ggn_trace", "hessian_trace"))
    record = train(_model_fn([]), data, spec)
    model = build_model(_model_fn([]), spec.seed, "cpu").eval()
    x, y = data.x_train, data.y_train
    with torch.no_grad():
        loss = loss_value("cross_entropy", model(x), y).item()
        acc = (model(data.x_test).argmax(1) == data.y_test).double().mean().item()
        val_loss = loss_value("cross_entropy", model(data.x_val), data.y_val).item()
        val_acc = (model(data.x_val).argmax(1) == data.y_val).double().mean().item()
    ggn = nr.ggn_trace(model, x[:10], y[:10], "cross_entropy")
    assert ggn != pytest.approx(nr.ggn_trace(model, x, y, "cross_entropy"), rel=1e-3)  # trace_points matters
    for h in (record["history"][0], record["final"]):
        assert h["train_loss"] == pytest.approx(loss, rel=1e-12)
        assert h["test_acc"] == pytest.approx(acc)
        assert h["val_loss"] == pytest.approx(val_loss, rel=1e-12) and h["val_acc"] == pytest.approx(val_acc)
        assert h["ggn_trace"] == pytest.approx(ggn, rel=1e-10)
        assert h["hessian_trace"] == h["ggn_trace"]  # ReLU net: exact
        r10 = loss_value("cross_entropy", model(x[:10]), y[:10]).item()
        assert h["reg_loss"] == pytest.approx(r10 + sigma ** 2 / 2 * ggn, rel=1e-10)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_amp_trains_forward_in_bfloat16_and_evaluates_in_full_precision(amp):
    dtypes = {True: set(), False: set()}  # by module.training

    def make():
        torch.manual_seed(0)
        model = MLP(6, (5, 4), 3)
        model[1].register_forward_hook(lambda mod, inp, out: dtypes[mod.training].add(out.dtype))  # a Linear
        return model

    data = _data()
    data = Split(data.x_train.float(), data.y_train, data.x_test.float(), data.y_test, name="gauss", seed=0)
    spec = TrainSpec(method="layer", sigma=SIGMA, epochs=3, lr=0.1, amp=amp)
    record = train(make, data, spec)
    assert dtypes[True] == {torch.bfloat16 if amp else torch.float32} and dtypes[False] == {torch.float32}
    assert math.isfinite(record["final"]["train_loss"])


# ----------------------------------------------------------------------------- the loop's bookkeeping
def _batches(spec, data):
    """The inputs of every training forward of ``train(spec)`` (an MLP that records them)."""
    seen = []

    def make():
        model = MLP(6, (5,), 3).double()
        model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].clone()) if mod.training else None)
        return model

    record = train(make, data, spec)
    return seen, record


def test_minibatches_visit_every_training_point_once_per_epoch_in_a_new_order():
    data = _data(n=10)
    seen, record = _batches(TrainSpec(epochs=3, batch_size=4, lr=0.01, seed=1), data)
    assert [len(b) for b in seen] == [4, 4, 2] * 3
    key = lambda x: sorted(tuple(r.tolist()) for r in x)  # noqa: E731
    for e in range(3):
        assert key(torch.cat(seen[3 * e:3 * e + 3])) == key(data.x_train)  # a partition of the training set
    assert not torch.equal(torch.cat(seen[:3]), torch.cat(seen[3:6]))  # reshuffled each epoch
    assert record["history"][-1]["step"] == 9 and record["grad_evals"] == 9


def test_augmentation_reaches_the_training_forward_only_when_asked():
    data = _data(n=8)
    images = dataclasses.replace(data, x_train=data.x_train.reshape(8, 1, 2, 3).expand(8, 1, 2, 3).contiguous())
    seen = []

    def make():
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3)).double()
        model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].clone()) if mod.training else None)
        return model

    raw = dataclasses.replace(images, x_test=images.x_train)
    train(make, raw, TrainSpec(epochs=2, lr=0.01, seed=0))
    assert all(torch.equal(b, raw.x_train) for b in seen)
    seen.clear()
    train(make, raw, TrainSpec(epochs=2, lr=0.01, seed=0, augment=True))
    assert len(seen) == 2 and not any(torch.equal(b, raw.x_train) for b in seen)


class _Counter:
    def __init__(self):
        self.n = 0

    def update(self, k):
        self.n += k


def test_evaluations_every_eval_every_epochs_and_at_the_last_one():
    bar = _Counter()
    record = train(_model_fn([]), _data(), TrainSpec(epochs=7, eval_every=3, lr=0.01), progress=bar)
    assert [h["step"] for h in record["history"]] == [0, 3, 6, 7]  # step 0: before training
    assert [h.get("epoch") for h in record["history"]] == [None, 3, 6, 7]
    assert record["final"] == {k: v for k, v in record["history"][-1].items() if k not in ("step", "epoch")}
    assert bar.n == 7  # the progress bar advances once per epoch


@pytest.mark.parametrize("every,eval_every,expected", [(3, 2, [None, None, 3, 3, 3, 6, 7]),
                                                     (0, 2, [None, 2, 2, 4, 4, 6, 7])],
                         ids=["checkpoint_every=3", "0:at-evaluations"])
def test_checkpoints_every_checkpoint_every_epochs_and_at_the_end(tmp_path, every, eval_every, expected):
    from noisereg.training.checkpoint import load_checkpoint

    ckpt, on_disk = tmp_path / "c.pt", []  # after each epoch: the epoch of the checkpoint on disk
    spec = TrainSpec(epochs=7, eval_every=eval_every, checkpoint_every=every, lr=0.01)
    train(_model_fn([]), _data(), spec, checkpoint=ckpt,
          callback=lambda e: on_disk.append(load_checkpoint(ckpt)["epoch"] if ckpt.exists() else None))
    assert on_disk == expected


def test_seconds_add_up_the_epochs_and_stay_within_the_wall_time():
    import time

    def make():
        model = MLP(6, (5,), 3).double()
        model.register_forward_pre_hook(lambda mod, inp: time.sleep(0.02) if mod.training else None)
        return model

    t0 = time.perf_counter()
    record = train(make, _data(), TrainSpec(epochs=5, lr=0.01, eval_every=5))
    wall = time.perf_counter() - t0
    assert 5 * 0.02 <= record["seconds"] <= wall + 1e-3  # every epoch's time, and no more than elapsed
    assert record["seconds"] == round(record["seconds"], 3)  # milliseconds, as documented


def test_a_diverging_run_stops_and_says_so():
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))  # GD at lr 10 on a quadratic:
    d = Split(x, x[:, :1], x, x[:, :1], name="lin", seed=0)                # |1 − lr·λ|^t overflows float32
    record = train(lambda: torch.nn.Linear(6, 1), d, TrainSpec(epochs=100, lr=10.0, loss="square", eval_every=10))
    assert record["diverged"] is True
    assert record["history"][-1]["epoch"] < 50 and not math.isfinite(record["final"]["train_loss"])
    ok = train(lambda: torch.nn.Linear(6, 1), d, TrainSpec(epochs=100, lr=0.01, loss="square", eval_every=10))
    assert ok["diverged"] is False and ok["history"][-1]["epoch"] == 100


def test_train_without_resume_ignores_an_existing_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    spec = TrainSpec(epochs=4, lr=0.01, eval_every=2)
    first = train(_model_fn([]), _data(), spec, checkpoint=ckpt)
    assert ckpt.exists()
    seen = []
    again = train(_model_fn(seen), _data(), spec, checkpoint=ckpt)  # resume defaults to False
    assert len(seen) == 4 and again["final"] == first["final"]


def test_hessian_trace_alone_on_a_relu_net_is_its_exact_ggn_trace():
    import noisereg as nr

    data = _data()
    spec = TrainSpec(epochs=1, lr=1e-30, seed=2, log=("hessian_trace",), trace_points=12)
    record = train(_model_fn([]), data, spec)
    model = build_model(_model_fn([]), spec.seed, "cpu").eval()
    ggn = nr.ggn_trace(model, data.x_train[:12], data.y_train[:12], "cross_entropy")
    assert record["final"]["hessian_trace"] == pytest.approx(ggn, rel=1e-10)
    assert "hessian_trace_se" not in record["final"] and "ggn_trace" not in record["final"]


def test_the_sampled_estimator_logs_its_standard_errors():
    """trace_estimator="sampled": ggn_trace and its se from sampled_ggn_trace (8 draws, the run's
    seed); a ReLU net's hessian_trace carries the same se; reg_loss_se = se · σ²/2 (paper convention)."""
    import noisereg as nr
    from noisereg.training.loop import SAMPLED_DRAWS

    data, sigma = _data(), 0.2
    spec = TrainSpec(method="full", sigma=sigma, epochs=1, lr=1e-30, seed=5, trace_points=16,
                     trace_estimator="sampled", log=("ggn_trace", "hessian_trace", "reg_loss"))
    final = train(_model_fn([]), data, spec)["final"]
    model = build_model(_model_fn([]), spec.seed, "cpu").eval()
    est, se = nr.sampled_ggn_trace(model, data.x_train[:16], data.y_train[:16], "cross_entropy",
                                   num_samples=SAMPLED_DRAWS, seed=spec.seed)
    assert se > 0
    assert final["ggn_trace"] == pytest.approx(est, rel=1e-10) and final["ggn_trace_se"] == pytest.approx(se, rel=1e-10)
    assert final["hessian_trace"] == final["ggn_trace"] and final["hessian_trace_se"] == final["ggn_trace_se"]
    assert final["reg_loss_se"] == pytest.approx(se * sigma ** 2 / 2, rel=1e-10)


def test_sam_takes_two_forwards_per_minibatch_and_logs_reg_loss_without_noise():
    data = _data(n=10)
    seen, record = _batches(TrainSpec(method="sam", sigma=0.05, epochs=2, batch_size=4, lr=0.01,
                                      log=("reg_loss", "ggn_trace"), trace_points=10), data)
    assert [len(b) for b in seen] == [4, 4, 4, 4, 2, 2] * 2  # each batch twice: at w and at w + ε
    assert record["grad_evals"] == 2 * 6
    final = record["final"]  # reg_loss at σ = 0 for SAM: the loss on the trace points, no curvature term
    assert final["reg_loss"] == pytest.approx(final["train_loss"], rel=1e-12) and final["ggn_trace"] > 0


def test_the_exact_trace_is_not_computed_when_no_logged_metric_needs_it(monkeypatch):
    """On a smooth (tanh) net hessian_trace is Hutchinson's: logging it alone must not pay for the GGN trace."""
    from noisereg.training import loop

    calls = []
    monkeypatch.setattr(loop, "ggn_trace", lambda *a, **kw: calls.append(1) or 1.0)
    tanh = lambda: torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()  # noqa: E731
    final = train(tanh, _data(), TrainSpec(epochs=1, lr=0.01, log=("hessian_trace",), trace_points=8))["final"]
    assert calls == [] and "hessian_trace_se" in final
    train(tanh, _data(), TrainSpec(epochs=1, lr=0.01, log=("ggn_trace",), trace_points=8))
    assert calls  # and it is computed when logged


@pytest.mark.parametrize("method", ["gd", "sam"])
def test_a_non_finite_loss_in_any_minibatch_marks_the_run_diverged(method):
    """A point whose cross-entropy overflows float32 (logits ±3e38: the loss is inf, its gradient
    softmax − onehot is finite, so the weights stay finite and the other batches' losses too)."""
    x = torch.zeros(10, 1)
    x[0] = 1.0  # the overflowing point; the others see only the bias
    y = torch.ones(10, dtype=torch.long)

    def make():
        m = torch.nn.Linear(1, 2)
        with torch.no_grad():
            m.weight.copy_(torch.tensor([[3e38], [-3e38]]))
            m.bias.zero_()
        return m

    spec = TrainSpec(method=method, sigma=0.0 if method == "gd" else 1e-30, epochs=1, batch_size=1, lr=1e-30, seed=0)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(spec.seed + 7919))
    assert order[-1] != 0  # the overflowing batch is not the epoch's last (a check of last-batch-only would miss it)
    record = train(make, Split(x, y, x, y, name="overflow", seed=0), spec)
    assert record["diverged"] is True
