"""Hugging Face Trainer: NoiseInjectionCallback with the real Trainer on a tiny local model (no downloads)."""

import copy
import json
import sys

import pytest
import torch
from torch import nn

import noisereg as nr

pytest.importorskip("transformers", reason="needs the transformers extra: pip install 'noisereg[transformers]'")
pytest.importorskip("accelerate", reason="needs the transformers extra: pip install 'noisereg[transformers]'")
from transformers import Trainer, TrainingArguments  # noqa: E402

from noisereg.integrations.transformers import NoiseInjectionCallback  # noqa: E402


class Tiny(nn.Module):
    """A regression MLP in the Trainer's calling convention; records the weights each forward sees."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
        self.seen = []

    def forward(self, x, labels=None):
        if self.training:
            self.seen.append([p.detach().clone() for p in self.net.parameters()])
        out = self.net(x)
        return {"loss": 0.5 * (out - labels).pow(2).sum(1).mean(), "logits": out}


def dataset(n=32):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 5, generator=g), torch.randn(n, 2, generator=g)
    return [{"x": x[i], "labels": y[i]} for i in range(n)]


def train(model, out_dir, callbacks=(), lr=0.1, accumulate=2, max_steps=4, resume=None, **kw):
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=4, gradient_accumulation_steps=accumulate,
        max_steps=max_steps, learning_rate=lr, lr_scheduler_type="constant", optim="sgd", weight_decay=0.0,
        max_grad_norm=1.0, report_to="none", logging_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        **{"save_strategy": "no", **kw})
    trainer = Trainer(model=model, args=args, train_dataset=dataset(), callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def params(model):
    return [p.detach().clone() for p in model.net.parameters()]


def test_one_draw_per_step_spans_the_micro_batches_and_restores_before_the_step(tmp_path):
    model = Tiny()
    start = copy.deepcopy(model.net)
    cb = NoiseInjectionCallback(sigma=0.1, mode="full", seed=3)
    train(model, tmp_path, [cb], lr=0.0, accumulate=2, max_steps=3)
    # lr = 0: every step is applied at the restored weights, which therefore never change
    assert all(torch.equal(p, q) for p, q in zip(model.net.parameters(), start.parameters()))
    assert cb.injector.step == 3 and len(model.seen) == 6
    ref = nr.NoiseInjector(start, 0.1, mode="full", seed=3)  # the same noise stream, replayed by hand
    for k in range(3):
        with ref.perturb():
            expected = [p.detach().clone() for p in start.parameters()]
        for micro in (2 * k, 2 * k + 1):  # both micro-batches of step k see the step's one draw
            assert all(torch.equal(p, q) for p, q in zip(model.seen[micro], expected))


def test_sigma_zero_equals_no_callback_bit_for_bit(tmp_path):
    plain, noisy = Tiny(), Tiny()
    train(plain, tmp_path / "plain")
    train(noisy, tmp_path / "noisy", [NoiseInjectionCallback(sigma=0.0, seed=0)])
    assert all(torch.equal(p, q) for p, q in zip(params(plain), params(noisy)))
    assert not all(torch.equal(p, q) for p, q in zip(params(plain), params(Tiny())))  # it did train


def test_noise_changes_training_and_is_seeded(tmp_path):
    a, b, c = Tiny(), Tiny(), Tiny()
    train(a, tmp_path / "a", [NoiseInjectionCallback(sigma=0.1, seed=0)])
    train(b, tmp_path / "b", [NoiseInjectionCallback(sigma=0.1, seed=0)])
    train(c, tmp_path / "c", [NoiseInjectionCallback(sigma=0.1, seed=1)])
    assert all(torch.equal(p, q) for p, q in zip(params(a), params(b)))
    assert not all(torch.equal(p, q) for p, q in zip(params(a), params(c)))


def test_resume_from_checkpoint_continues_the_noise_stream(tmp_path):
    full = Tiny()
    train(full, tmp_path / "run", [NoiseInjectionCallback(sigma=0.1, mode="layer", seed=5)], max_steps=4,
          save_strategy="steps", save_steps=2)
    ckpt = tmp_path / "run" / "checkpoint-2"
    saved = json.loads((ckpt / "trainer_state.json").read_text())["stateful_callbacks"]["NoiseInjectionCallback"]
    assert saved["attributes"]["injector_state"]["step"] == 2 and saved["args"]["seed"] == 5
    resumed_cb = NoiseInjectionCallback(sigma=0.1, mode="layer", seed=99)  # the stream must come from the file
    resumed = Tiny(seed=7)
    train(resumed, tmp_path / "resumed", [resumed_cb], max_steps=4, resume=str(ckpt))
    assert resumed_cb.injector.step == 4
    assert all(torch.equal(p, q) for p, q in zip(params(resumed), params(full)))


def test_restore_puts_the_clean_weights_back_after_an_exception(tmp_path):
    class Boom(Tiny):
        def forward(self, x, labels=None):
            raise KeyError("boom")

    model = Boom()
    start = copy.deepcopy(model.net)
    cb = NoiseInjectionCallback(sigma=1.0, mode="full", seed=0)
    with pytest.raises(KeyError, match="boom"):
        train(model, tmp_path, [cb])
    assert not all(torch.equal(p, q) for p, q in zip(model.net.parameters(), start.parameters()))
    cb.restore()
    assert all(torch.equal(p, q) for p, q in zip(model.net.parameters(), start.parameters()))


def test_optimizer_step_without_a_perturbation_raises():
    cb = NoiseInjectionCallback(sigma=0.1, seed=0)
    with pytest.raises(RuntimeError, match="not perturbed for this optimizer step"):
        cb.on_pre_optimizer_step(None, None, None)


def test_state_json_round_trip_of_rng_tensors():
    from noisereg.integrations.transformers import _from_json, _to_json
    inj = nr.NoiseInjector(Tiny(), 0.1, seed=0)
    with inj.perturb():
        pass
    sd = _from_json(json.loads(json.dumps(_to_json(inj.state_dict()))))
    assert sd["step"] == 1 and torch.equal(sd["selection_rng"], inj.state_dict()["selection_rng"])


def test_invalid_options_raise_on_construction():
    with pytest.raises(ValueError, match="sigma must be"):
        NoiseInjectionCallback(sigma=float("nan"))
    with pytest.raises(ValueError, match="order must be one of"):
        NoiseInjectionCallback(sigma=0.1, order="backwards")


def test_missing_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers.trainer_callback", None)
    monkeypatch.delitem(sys.modules, "noisereg.integrations.transformers")
    from noisereg.integrations import MissingExtraError
    with pytest.raises(MissingExtraError, match=r'pip install "noisereg\[transformers\]"$'):
        import noisereg.integrations.transformers  # noqa: F401


def test_bf16_autocast_restores_and_trains(tmp_path):
    frozen, trained = Tiny(), Tiny()
    start = copy.deepcopy(frozen.net)
    train(frozen, tmp_path / "frozen", [NoiseInjectionCallback(sigma=0.1, seed=0)], lr=0.0, bf16=True)
    assert all(torch.equal(p, q) for p, q in zip(frozen.net.parameters(), start.parameters()))
    cb = NoiseInjectionCallback(sigma=0.1, seed=0)
    train(trained, tmp_path / "trained", [cb], bf16=True)
    assert cb.injector.step == 4 and not all(torch.equal(p, q) for p, q in zip(params(trained), params(Tiny())))


# ------------------------------------------------------------- the family's options and σ schedules (issue 33)
@pytest.mark.parametrize("options,schedule", [
    ({"scale": "filter"}, None),                                     # RWP's per-filter noise
    ({"exclude": ["bias"], "restore": "regenerate", "mode": "full"}, None),
    ({"mode": "full"}, ("cosine_up", 3.0)),                          # LPF-SGD's rising radius
    ({"mode": "full"}, ("linear", 2.0)),
], ids=["rwp-scale", "exclude-regenerate", "cosine_up", "linear"])
def test_injector_options_and_sigma_schedule_reach_the_noise(tmp_path, options, schedule):
    model = Tiny()
    start = copy.deepcopy(model.net)
    sched = {} if schedule is None else {"sigma_schedule": schedule[0], "sigma_factor": schedule[1]}
    cb = NoiseInjectionCallback(sigma=0.1, seed=3, **options, **sched)
    train(model, tmp_path, [cb], lr=0.0, accumulate=1, max_steps=4)
    ref = nr.NoiseInjector(start, 0.1, seed=3, **options)
    sigmas = nr.sigma_schedule(schedule[0], 0.1, total=4, factor=schedule[1]) if schedule else (lambda k: 0.1)
    for k in range(4):
        ref.sigma = sigmas(k)
        with ref.perturb():
            expected = [p.detach().clone() for p in start.parameters()]
        assert all(torch.allclose(p, q, rtol=0, atol=1e-7 if options.get("restore") else 0)
                   for p, q in zip(model.seen[k], expected))
    if schedule is not None:
        assert cb.injector.sigma == pytest.approx(sigmas(3)) and sigmas(3) != 0.1


@pytest.mark.parametrize("option", [{"samples": 4}, {"antithetic": True}, {"clean_weight": 0.5}])
def test_several_evaluation_options_are_refused_in_one_line(option):
    (name, value), = option.items()
    with pytest.raises(ValueError, match=rf"NoiseInjectionCallback cannot take {name}={value!r}: .*transformers.Trainer "
                                         r"calls optimizer.step\(\) without one; use the Lightning callback"):
        NoiseInjectionCallback(sigma=0.01, **option)
    with pytest.raises(ValueError, match=r"clean_weight must be a number in \[0, 1\)"):
        NoiseInjectionCallback(sigma=0.01, clean_weight=1.0)
    with pytest.raises(ValueError, match="sigma_schedule must be one of"):
        NoiseInjectionCallback(sigma=0.01, sigma_schedule="up")
    NoiseInjectionCallback(sigma=0.01, samples=1, antithetic=False, clean_weight=0.0)   # the defaults are fine
