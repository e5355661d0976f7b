"""Lightning: the NoiseInjection callback and NoisyOptimizer against the three-line loop (real lightning, CPU)."""

import copy
import sys

import pytest
import torch
from torch import nn

import noisereg as nr

L = pytest.importorskip("lightning", reason="needs the lightning extra: pip install 'noisereg[lightning]'")
from noisereg.integrations.lightning import NoiseInjection  # noqa: E402

N, BATCH = 48, 8  # 6 batches per epoch


def make_net(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)).to(dtype)


def dataset(dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return torch.utils.data.TensorDataset(torch.randn(N, 5, generator=g, dtype=dtype),
                                          torch.randn(N, 2, generator=g, dtype=dtype))


def loader(dtype=torch.float64, batch_size=BATCH):
    return torch.utils.data.DataLoader(dataset(dtype), batch_size=batch_size, shuffle=False)


def sq_loss(out, y):
    return 0.5 * (out - y).pow(2).sum(1).mean()


def make_sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


class Net(L.LightningModule):
    def __init__(self, seed=0, dtype=torch.float64, noisy=None):
        super().__init__()
        self.net = make_net(seed, dtype)
        self.noisy = noisy  # None, or NoiseInjector kwargs for a NoisyOptimizer
        self.val_seen = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return sq_loss(self(x), y)

    def validation_step(self, batch, batch_idx):
        self.val_seen.append([p.detach().clone() for p in self.parameters()])

    def configure_optimizers(self):
        opt = make_sgd(self.parameters())
        if self.noisy is None:
            return opt
        opt = nr.NoisyOptimizer(opt, nr.NoiseInjector(self, **self.noisy))
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}


def trainer(**kw):
    kw = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
          "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
          "max_epochs": 2, **kw}
    return L.Trainer(**kw)


def reference(steps_per_window, epochs=2, sigma=0.1, seed=7, mode="layer", scheduler=False, dtype=torch.float64,
              autocast=False):
    """The three-line loop, one perturb() around all micro-batches of a step; weights after each step."""
    net = make_net(dtype=dtype)
    opt = make_sgd(net.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if scheduler else None
    inj = nr.NoiseInjector(net, sigma, mode=mode, seed=seed)
    batches = list(loader(dtype))
    after = [[p.detach().clone() for p in net.parameters()]]
    for _ in range(epochs):
        for i in range(0, len(batches), steps_per_window):
            window = batches[i:i + steps_per_window]
            opt.zero_grad()
            with inj.perturb():
                for x, y in window:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                        loss = sq_loss(net(x), y)
                    (loss / steps_per_window if steps_per_window > 1 else loss).backward()
            opt.step()
            after.append([p.detach().clone() for p in net.parameters()])
        if sched is not None:
            sched.step()
    return net, inj, after


def assert_same(params, ref_params):
    for p, q in zip(params, ref_params):
        assert torch.equal(p.detach().cpu(), q.detach().cpu())


@pytest.mark.parametrize("accumulate", [1, 2], ids=["accumulate1", "accumulate2"])
def test_callback_equals_the_three_line_loop(accumulate):
    module, cb = Net(), NoiseInjection(sigma=0.1, mode="layer", seed=7)
    trainer(callbacks=[cb], accumulate_grad_batches=accumulate).fit(module, loader())
    ref, ref_inj, _ = reference(accumulate)
    assert_same(module.parameters(), ref.parameters())
    assert cb.injector.step == ref_inj.step == 2 * (N // BATCH) // accumulate  # one draw per optimizer step


def test_validation_mid_accumulation_sees_the_clean_weights():
    module, cb = Net(), NoiseInjection(sigma=0.5, mode="full", seed=7)
    # validation after batch 3: inside the second accumulation window (batches 3, 4)
    trainer(callbacks=[cb], accumulate_grad_batches=2, max_epochs=1, val_check_interval=3, limit_val_batches=1,
            ).fit(module, loader(), loader())
    _, _, after = reference(2, epochs=1, sigma=0.5, mode="full")
    assert len(module.val_seen) == 2  # at batch 3 (mid-window) and at batch 6 (end of epoch)
    assert_same(module.val_seen[0], after[1])
    assert_same(module.val_seen[1], after[3])


def test_noisy_optimizer_from_configure_optimizers_with_a_scheduler():
    module = Net(noisy={"sigma": 0.1, "mode": "layer", "seed": 7})
    trainer().fit(module, loader())
    ref, _, _ = reference(1, scheduler=True)
    assert_same(module.parameters(), ref.parameters())


@pytest.mark.parametrize("how", ["callback", "noisy_optimizer"])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, how):
    def run(epochs, ckpt=None, seed=7):
        if how == "callback":
            module, cbs = Net(), [NoiseInjection(sigma=0.1, mode="layer", seed=seed)]
        else:
            module, cbs = Net(noisy={"sigma": 0.1, "mode": "layer", "seed": seed}), []
        # NoisyOptimizer supports no accumulation under Lightning (refused: see the test below)
        t = trainer(callbacks=cbs, max_epochs=epochs, accumulate_grad_batches=2 if how == "callback" else 1)
        t.fit(module, loader(), ckpt_path=ckpt)
        return module, t

    full, _ = run(2)
    first, t = run(1)
    t.save_checkpoint(tmp_path / "epoch1.ckpt")
    ckpt = torch.load(tmp_path / "epoch1.ckpt", weights_only=True)  # a checkpoint is data
    resumed, _ = run(2, ckpt=str(tmp_path / "epoch1.ckpt"), seed=99)  # the noise stream comes from the file
    assert_same(resumed.parameters(), full.parameters())
    assert not all(torch.equal(p, q) for p, q in zip(first.parameters(), full.parameters()))
    if how == "callback":
        assert ckpt["callbacks"]["NoiseInjection"]["injector"]["step"] == 3


def test_bf16_mixed_precision():
    module, cb = Net(dtype=torch.float32), NoiseInjection(sigma=0.1, mode="layer", seed=7)
    trainer(callbacks=[cb], precision="bf16-mixed", accumulate_grad_batches=2).fit(module, loader(torch.float32))
    ref, _, _ = reference(2, dtype=torch.float32, autocast=True)
    assert_same(module.parameters(), ref.parameters())


def test_exception_in_training_step_restores_the_weights():
    class Boom(Net):
        def training_step(self, batch, batch_idx):
            raise KeyError("boom")

    module = Boom()
    start = copy.deepcopy(module.net)
    with pytest.raises(KeyError, match="boom"):
        trainer(callbacks=[NoiseInjection(sigma=1.0, mode="full", seed=0)]).fit(module, loader())
    assert_same(module.net.parameters(), start.parameters())


def test_invalid_options_raise_on_construction():
    with pytest.raises(ValueError, match="sigma must be"):
        NoiseInjection(sigma=-1.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        NoiseInjection(sigma=0.1, mode="everything")
    with pytest.raises(TypeError, match="unexpected keyword"):
        NoiseInjection(sigma=0.1, sigm=0.2)


def test_strategy_that_accumulates_itself_is_refused():
    class SelfAccumulating(L.pytorch.strategies.SingleDeviceStrategy):
        @property
        def handles_gradient_accumulation(self):
            return True

    t = trainer(callbacks=[NoiseInjection(sigma=0.1, seed=0)], strategy=SelfAccumulating(torch.device("cpu")))
    with pytest.raises(RuntimeError, match="does not support SelfAccumulating"):
        t.fit(Net(), loader())


def test_missing_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)  # import lightning now raises ImportError
    monkeypatch.delitem(sys.modules, "noisereg.integrations.lightning")
    from noisereg.integrations import MissingExtraError
    with pytest.raises(MissingExtraError, match=r'^noisereg.integrations.lightning needs the "lightning" package, '
                                                r'which is not installed: pip install "noisereg\[lightning\]"$'):
        import noisereg.integrations.lightning  # noqa: F401


# ----------------------------------------------------------------------------------- DDP
class DDPNet(Net):
    def __init__(self, out_dir):
        super().__init__()
        self.out_dir = out_dir

    def train_dataloader(self):  # rank r takes samples r, r+2, r+4, ... in order
        sampler = torch.utils.data.DistributedSampler(dataset(), num_replicas=2, rank=self.global_rank, shuffle=False)
        return torch.utils.data.DataLoader(dataset(), batch_size=BATCH, sampler=sampler)

    def on_train_end(self):
        cb = next(c for c in self.trainer.callbacks if isinstance(c, NoiseInjection))
        torch.save({"params": [p.detach().clone() for p in self.parameters()], "injector": cb.injector.state_dict()},
                   f"{self.out_dir}/rank{self.global_rank}.pt")


def test_ddp_two_processes_share_the_noise_and_equal_one_process_on_the_union(tmp_path):
    module = DDPNet(str(tmp_path))
    t = trainer(callbacks=[NoiseInjection(sigma=0.1, mode="layer", seed=7)], devices=2, strategy="ddp_spawn",
                accumulate_grad_batches=2, max_epochs=1, use_distributed_sampler=False)
    t.fit(module)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["injector"]["step"] == r1["injector"]["step"] == 2  # 24 samples per rank: 3 batches, 2 steps
    assert torch.equal(r0["injector"]["noise_rng"][0], r1["injector"]["noise_rng"][0])
    # rank r takes samples r, r+2, ...: one rank-batch pair is a 16-sample batch of the unsharded data
    net = make_net()
    opt = make_sgd(net.parameters())
    inj = nr.NoiseInjector(net, 0.1, mode="layer", seed=7)
    batches = list(loader(batch_size=2 * BATCH))
    for window in (batches[0:2], batches[2:3]):
        opt.zero_grad()
        with inj.perturb():
            for x, y in window:
                (sq_loss(net(x), y) / 2).backward()
        opt.step()
    for p, q in zip(r0["params"], net.parameters()):
        torch.testing.assert_close(p, q.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("built_from", ["module", "parameters"])
def test_noisy_optimizer_with_lightning_accumulation_is_refused_before_any_update(built_from, monkeypatch):
    """Lightning runs the earlier micro-batches of a window outside step(): they would see no noise. An
    injector built from the LightningModule is refused at fit start (configure_optimizers), before any
    training step; one built from a parameter iterable at the first optimizer step, before any update."""
    module = Net(noisy={"sigma": 0.1, "mode": "layer", "seed": 7})
    if built_from == "parameters":
        real = nr.NoiseInjector
        monkeypatch.setattr(nr, "NoiseInjector", lambda model, **kw: real(list(model.parameters()), **kw))
    steps = []
    real_step = module.training_step
    module.training_step = lambda *a, **k: (steps.append(1), real_step(*a, **k))[1]
    before = [p.detach().clone() for p in module.parameters()]
    with pytest.raises(RuntimeError, match=r"accumulate_grad_batches > 1.*NoiseInjection instead; nothing was updated"):
        trainer(accumulate_grad_batches=2).fit(module, loader())
    assert all(torch.equal(p, q) for p, q in zip(module.parameters(), before))
    assert len(steps) == (0 if built_from == "module" else 1)   # fit start vs the first step (1 micro-batch ran)


# ------------------------------------------------------------- the weight-perturbation family, SAM, σ schedules
from noisereg.integrations.lightning import SharpnessAware  # noqa: E402

FAMILY_CASES = {   # callback options -> (injector options, NoisyOptimizer options) of the reference loop
    "rwp": ({"scale": "filter"}, {}),
    "mrwp": ({"scale": "filter"}, {"clean_weight": 0.5}),
    "lpf": ({"scale": "filter"}, {"samples": 3}),
    "nso": ({}, {"antithetic": True, "samples": 2}),
    "exclude-regenerate": ({"exclude": ["bias"], "restore": "regenerate"}, {"samples": 2}),
}


def family_reference(inj_options, family, epochs=2, sigma=0.1, seed=7, schedule=None, optimizer=None):
    """The closure loop: NoisyOptimizer (or ``optimizer(opt)``) stepping on every batch; σ set by ``schedule``."""
    net = make_net()
    opt = make_sgd(net.parameters())
    inj = nr.NoiseInjector(net, sigma, mode="layer", seed=seed, **inj_options)
    wrapped = optimizer(opt) if optimizer else nr.NoisyOptimizer(opt, inj, **family)
    step = 0
    for _ in range(epochs):
        for x, y in loader():
            if schedule is not None:
                inj.sigma = schedule(step)

            def closure(x=x, y=y):
                wrapped.zero_grad()
                loss = sq_loss(net(x), y)
                loss.backward()
                return loss

            wrapped.step(closure)
            step += 1
    return net, inj


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_the_family_options_equal_the_noisy_optimizer_loop(case):
    inj_options, family = FAMILY_CASES[case]
    module, cb = Net(), NoiseInjection(sigma=0.1, mode="layer", seed=7, **inj_options, **family)
    trainer(callbacks=[cb]).fit(module, loader())
    ref, ref_inj = family_reference(inj_options, family)
    assert_same(module.parameters(), ref.parameters())
    assert cb.injector.step == ref_inj.step == 2 * (N // BATCH) * family.get("samples", 1)


def test_sam_callback_equals_the_sam_loop():
    module, cb = Net(), SharpnessAware(rho=0.05, adaptive=True)
    trainer(callbacks=[cb]).fit(module, loader())
    ref, _ = family_reference({}, {}, optimizer=lambda opt: nr.SAM(opt, rho=0.05, adaptive=True))
    assert_same(module.parameters(), ref.parameters())
    assert isinstance(module.optimizers().optimizer, nr.SAM)


def test_sigma_schedule_in_the_callback_equals_the_public_schedule_in_the_loop():
    steps = 2 * (N // BATCH)
    module, cb = Net(), NoiseInjection(sigma=0.1, mode="layer", seed=7, sigma_schedule="cosine_up", sigma_factor=3.0)
    trainer(callbacks=[cb]).fit(module, loader())
    ref, _ = family_reference({}, {}, schedule=nr.sigma_schedule("cosine_up", 0.1, total=steps, factor=3.0))
    assert_same(module.parameters(), ref.parameters())
    assert cb.injector.sigma == pytest.approx(0.1 * nr.schedules.sigma_factor("cosine_up", (steps - 1) / steps, 3.0))


def test_family_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    def run(epochs, ckpt=None, seed=7):
        module = Net()
        t = trainer(callbacks=[NoiseInjection(sigma=0.1, seed=seed, samples=2, clean_weight=0.25)], max_epochs=epochs)
        t.fit(module, loader(), ckpt_path=ckpt)
        return module, t

    full, _ = run(2)
    _, t = run(1)
    t.save_checkpoint(tmp_path / "epoch1.ckpt")
    ckpt = torch.load(tmp_path / "epoch1.ckpt", weights_only=True)
    assert set(ckpt["optimizer_states"][0]) == {"state", "param_groups"}   # the plain optimizer's own state
    resumed, _ = run(2, ckpt=str(tmp_path / "epoch1.ckpt"), seed=99)
    assert_same(resumed.parameters(), full.parameters())


class ManualNet(Net):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt = self.optimizers()

        def closure():
            opt.zero_grad()
            loss = sq_loss(self(x), y)
            self.manual_backward(loss)
            return loss

        opt.step(closure=closure)


def test_manual_optimization_with_a_closure():
    module, cb = ManualNet(), NoiseInjection(sigma=0.1, mode="layer", seed=7, samples=2, antithetic=True)
    trainer(callbacks=[cb]).fit(module, loader())
    ref, _ = family_reference({}, {"samples": 2, "antithetic": True})
    assert_same(module.parameters(), ref.parameters())


@pytest.mark.parametrize("callbacks,kw,match", [
    ([NoiseInjection(sigma=0.1, seed=0, samples=2)], {"accumulate_grad_batches": 2},
     r"NoiseInjection\(samples=2\) evaluates Lightning's closure several times per step and needs "
     r"accumulate_grad_batches=1 under automatic optimization, got 2"),
    ([SharpnessAware()], {"accumulate_grad_batches": 3}, "SharpnessAware evaluates .* got 3"),
    ([SharpnessAware(), NoiseInjection(sigma=0.1, seed=0)], {},
     "SharpnessAware and NoiseInjection cannot train together"),
], ids=["family-accumulation", "sam-accumulation", "sam-and-noise"])
def test_unsupported_closure_setups_are_refused_at_fit_start(callbacks, kw, match):
    module = Net()
    before = [p.detach().clone() for p in module.parameters()]
    with pytest.raises(RuntimeError, match=match):
        trainer(callbacks=callbacks, **kw).fit(module, loader())
    assert_same(module.parameters(), before)


def test_fp16_grad_scaler_is_refused_at_fit_start():
    plugin = L.pytorch.plugins.MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(RuntimeError, match=r"needs optimizer.step\(closure\), which fp16 mixed precision's GradScaler"):
        trainer(callbacks=[SharpnessAware()], plugins=[plugin]).fit(Net(dtype=torch.float32), loader(torch.float32))


class TwoOptimizers(ManualNet):
    def configure_optimizers(self):
        return make_sgd(self.net[0].parameters()), make_sgd(self.net[2].parameters())


def test_several_optimizers_are_refused_with_the_family():
    with pytest.raises(RuntimeError, match="wraps one optimizer, but configure_optimizers returned 2"):
        trainer(callbacks=[NoiseInjection(sigma=0.1, seed=0, clean_weight=0.5)]).fit(TwoOptimizers(), loader())


def test_family_and_schedule_options_are_checked_on_construction():
    with pytest.raises(ValueError, match=r"clean_weight must be a number in \[0, 1\)"):
        NoiseInjection(sigma=0.1, clean_weight=1.0)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        NoiseInjection(sigma=0.1, samples=0)
    with pytest.raises(ValueError, match="sigma_schedule must be one of"):
        NoiseInjection(sigma=0.1, sigma_schedule="cosine_down")
    with pytest.raises(ValueError, match="scale must be one of"):
        NoiseInjection(sigma=0.1, scale="row")
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        SharpnessAware(rho=-1.0)
    cb = NoiseInjection(sigma=0.1, samples=4, exclude=["bias"], sigma_schedule="cosine_up")   # exclude: at fit
    assert repr(cb) == ("NoiseInjection(sigma=0.1, samples=4, sigma_schedule='cosine_up', sigma_factor=2.0, "
                        "exclude=['bias'])")
    with pytest.raises(ValueError, match=r"exclude entries \['typo'\] match no parameter name"):
        trainer(callbacks=[NoiseInjection(sigma=0.1, exclude=["typo"], seed=0)]).fit(Net(), loader())
