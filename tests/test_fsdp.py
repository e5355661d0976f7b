"""NoiseInjector under FSDP2 (``fully_shard``, DTensor parameters): 2 CPU processes, gloo backend.

One spawned run records every check's data (module fixture ``fsdp``); the tests assert on it.
Error cases run in this process on a 1-rank gloo group (``one_rank``) or need no group at all.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import noisereg as nr
from _spawn import exit_after_success

pytest.importorskip("torch.distributed.fsdp")
from torch.distributed.fsdp import fully_shard  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

SIGMA, STEPS, LR = 0.1, 6, 0.05
CASES = [("full", "paper"), ("full", "official"), ("layer", "paper"), ("layer", "official")]
ROOT = Path(__file__).resolve().parents[1]


def make_model(shard_root=True, shard=(0, 2, 4)):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    for i in shard:
        fully_shard(model[i])
    if shard_root:
        fully_shard(model)
    return model


def make_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 8, generator=g, dtype=torch.float64), torch.randn(32, 4, generator=g, dtype=torch.float64)


def sq_loss(out, y):
    return 0.5 * (out - y).pow(2).sum(1).mean()


def full(model):
    with torch.no_grad():
        return [(p.full_tensor() if isinstance(p, DTensor) else p).detach().clone() for p in model.parameters()]


def local(model):
    return [(p.to_local() if isinstance(p, DTensor) else p).detach().clone() for p in model.parameters()]


def train_case(rank, world, mode, convention):
    """STEPS noisy SGD steps; per step the clean/noisy gathered weights and the FSDP gradient."""
    x, y = make_data()
    xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]
    model = make_model()
    inj = nr.NoiseInjector(model, SIGMA, mode=mode, convention=convention, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    rec = {"clean": [], "noisy": [], "grad": [], "after": [], "local_equal": [], "layer": [], "std": inj.std(),
           "layers": [[i for i, q in enumerate(model.parameters()) if any(q is r for r in ps)] for _, ps in inj.layers]}
    for _ in range(STEPS):
        opt.zero_grad()
        clean, clean_local = full(model), local(model)
        with inj.perturb():
            rec["noisy"].append(full(model))
            sq_loss(model(xs), ys).backward()
        rec["clean"].append(clean)
        rec["after"].append(full(model))
        rec["local_equal"].append(all(torch.equal(a, b) for a, b in zip(local(model), clean_local)))
        rec["grad"].append([p.grad.full_tensor() for p in model.parameters()])
        rec["layer"].append(inj.last_layer)
        opt.step()
    rec["final"] = full(model)
    return rec


def resume_case(mode):
    """Noise after load_state_dict (into an injector with another seed) equals the original run's."""
    model = make_model()
    a = nr.NoiseInjector(model, SIGMA, mode=mode, seed=3)
    for _ in range(2):
        with a.perturb():
            pass
    state = a.state_dict()
    with a.perturb():
        want = local(model)
    b = nr.NoiseInjector(model, SIGMA, mode=mode, seed=4)
    b.load_state_dict(state)
    with b.perturb():
        got = local(model)
    c = nr.NoiseInjector(model, SIGMA, mode=mode, seed=3)  # same seed, same world size: same noise
    for _ in range(3):
        with c.perturb():
            again = local(model)
    return {"resumed": all(torch.equal(u, v) for u, v in zip(want, got)),
            "repeated": all(torch.equal(u, v) for u, v in zip(want, again)),
            "moved": not all(torch.equal(u, v) for u, v in zip(want, local(model)))}


def mixed_case():
    """Only the first two Linears sharded, no root: the last Linear's plain tensors stay replicated."""
    model = make_model(shard_root=False, shard=(0, 2))
    inj = nr.NoiseInjector(model, SIGMA, mode="full", seed=0)
    clean = local(model)
    with inj.perturb():
        noisy = local(model)
    return {"noise": [n - c for n, c in zip(noisy, clean)], "restored": all(torch.equal(a, b) for a, b in
                                                                          zip(local(model), clean)),
            "dtensor": [isinstance(p, DTensor) for p in model.parameters()]}


def hsdp_case():
    """HSDP on a (replicate=2, shard=1) mesh: both ranks hold the same shard, so the same noise."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (2, 1), mesh_dim_names=("replicate", "shard"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    for i in (0, 2):
        fully_shard(model[i], mesh=mesh)
    fully_shard(model, mesh=mesh)
    inj = nr.NoiseInjector(model, SIGMA, mode="full", seed=0)
    clean = local(model)
    with inj.perturb():
        noisy = local(model)
    return {"noise": [n - c for n, c in zip(noisy, clean)], "placements": [str(p.placements) for p in model.parameters()]}


def default_seed_case():
    """No seed: rank 0's OS seed is broadcast, so the ranks agree on the layers."""
    model = make_model()
    inj = nr.NoiseInjector(model, SIGMA, mode="layer")
    layers = []
    for _ in range(16):  # all 16 the same layer: probability 3**-15
        with inj.perturb():
            layers.append(inj.last_layer)
    return {"seed": inj.seed, "layers": layers}


def _worker(rank, world, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        out = {case: train_case(rank, world, *case) for case in CASES}
        out["resume"] = {mode: resume_case(mode) for mode in ("full", "layer")}
        out["mixed"] = mixed_case()
        out["hsdp"] = hsdp_case()
        out["default_seed"] = default_seed_case()
        model = make_model()
        unsharded = nr.NoiseInjector(model, SIGMA, seed=0)
        model[2].unshard()  # one Linear's group (the root's own group holds no parameters)
        try:
            with unsharded.perturb():
                pass
            out["unsharded_error"] = None
        except RuntimeError as e:
            out["unsharded_error"] = str(e)
        model[2].reshard()
        gathered = [None] * world
        dist.all_gather_object(gathered, out)
        if rank == 0:
            torch.save(gathered, out_file)
    finally:
        dist.destroy_process_group()
    exit_after_success()  # reached only when the work succeeded (see tests/_spawn.py)


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_worker, args=(2, str(tmp / "init"), str(tmp / "out.pt")), nprocs=2, join=True)
    return torch.load(tmp / "out.pt", weights_only=False)


@pytest.fixture
def one_rank(tmp_path):
    """A 1-rank gloo group in this process (FSDP2 and DTensor need one), destroyed afterwards."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init1'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def case_ids(cases):
    return [f"{m}-{c}" for m, c in cases]


# --------------------------------------------------------------------------------- the noise law
@pytest.mark.parametrize("case", CASES[:2], ids=case_ids(CASES[:2]))
def test_full_mode_moves_every_layer_by_the_std(fsdp, case):
    for rec in (r[case] for r in fsdp):
        for layer in rec["layers"]:  # pooled over the steps, per layer: sample std within 4 SE
            e = torch.cat([(step_n[i] - step_c[i]).flatten() for step_n, step_c in zip(rec["noisy"], rec["clean"])
                           for i in layer])
            se = rec["std"] / math.sqrt(2 * e.numel())
            assert abs(e.pow(2).mean().sqrt().item() - rec["std"]) < 4 * se, (case, layer)
            assert (e != 0).all()


@pytest.mark.parametrize("case", CASES[2:], ids=case_ids(CASES[2:]))
def test_layer_mode_moves_exactly_one_layer_the_same_on_both_ranks(fsdp, case):
    r0, r1 = fsdp[0][case], fsdp[1][case]
    assert r0["layer"] == r1["layer"]
    assert len(set(r0["layer"])) > 1  # the choice varies over the steps
    moved = []
    for step, j in enumerate(r0["layer"]):
        for k, layer in enumerate(r0["layers"]):
            for i in layer:
                e = r0["noisy"][step][i] - r0["clean"][step][i]
                if k == j:
                    assert (e != 0).all()  # every entry, i.e. both ranks' shards, moved
                    moved.append(e.flatten())
                else:
                    assert torch.equal(e, torch.zeros_like(e))
    e = torch.cat(moved)
    assert abs(e.pow(2).mean().sqrt().item() - r0["std"]) < 4 * r0["std"] / math.sqrt(2 * e.numel())


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_shards_draw_different_noise(fsdp, case):
    rec = fsdp[0][case]
    for step, j in enumerate(rec["layer"]):
        i = rec["layers"][j if j is not None else 0][0]  # a weight (16 x in or 4 x 16): 2 shards of rows
        e = rec["noisy"][step][i] - rec["clean"][step][i]
        half = e.shape[0] // 2
        assert not torch.allclose(e[:half], e[half:])  # rank 0's rows vs rank 1's rows


# --------------------------------------------------------------------------- restore and training
@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_restore_is_bit_exact_and_ranks_agree(fsdp, case):
    r0, r1 = fsdp[0][case], fsdp[1][case]
    for rec in (r0, r1):
        assert all(rec["local_equal"])
        for before, after in zip(rec["clean"], rec["after"]):
            assert all(torch.equal(a, b) for a, b in zip(before, after))
    for a, b in zip(r0["noisy"], r1["noisy"]):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for u, v in zip(r0["final"], r1["final"]))
    assert not torch.equal(r0["final"][0], r0["clean"][0][0])  # it trained


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_fsdp_gradient_equals_one_process_gradient_at_the_gathered_noisy_weights(fsdp, case):
    x, y = make_data()
    rec = fsdp[0][case]
    for noisy, grad in zip(rec["noisy"], rec["grad"]):
        torch.manual_seed(0)
        ref = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).double()
        with torch.no_grad():
            for p, w in zip(ref.parameters(), noisy):
                p.copy_(w)
        sq_loss(ref(x), y).backward()
        for p, g in zip(ref.parameters(), grad):
            torch.testing.assert_close(g, p.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["full", "layer"])
def test_state_dict_resumes_the_same_noise(fsdp, mode):
    for r in fsdp:
        assert r["resume"][mode] == {"resumed": True, "repeated": True, "moved": True}


def test_plain_parameters_beside_shards_get_the_same_noise_on_every_rank(fsdp):
    m0, m1 = fsdp[0]["mixed"], fsdp[1]["mixed"]
    assert m0["dtensor"] == [True] * 4 + [False] * 2
    for e0, e1, is_dt in zip(m0["noise"], m1["noise"], m0["dtensor"]):
        assert (e0 != 0).all() and (e1 != 0).all()
        assert torch.equal(e0, e1) != is_dt  # replicated: equal noise; shards: independent noise
    assert m0["restored"] and m1["restored"]


def test_hsdp_replicas_of_a_shard_draw_the_same_noise(fsdp):
    h0, h1 = fsdp[0]["hsdp"], fsdp[1]["hsdp"]
    assert h0["placements"][0] == "(Replicate(), Shard(dim=0))"
    for e0, e1 in zip(h0["noise"], h1["noise"]):
        assert (e0 != 0).all() and torch.equal(e0, e1)


def test_without_seed_the_ranks_agree_on_the_layers(fsdp):
    d0, d1 = fsdp[0]["default_seed"], fsdp[1]["default_seed"]
    assert d0["seed"] == d1["seed"] and d0["layers"] == d1["layers"]
    assert len(set(d0["layers"])) > 1


def test_unsharded_module_raises(fsdp):
    for r in fsdp:
        assert r["unsharded_error"] is not None and "unsharded parameter" in r["unsharded_error"]


# ------------------------------------------------------------------------------------ errors
def test_unsharded_module_raises_on_one_rank(one_rank):
    model = make_model()
    inj = nr.NoiseInjector(model, SIGMA, seed=0)
    model[2].unshard()
    with pytest.raises(RuntimeError, match="holds its unsharded parameter"):
        with inj.perturb():
            pass
    model[2].reshard()
    with inj.perturb():  # sharded again: works
        pass


def test_injector_built_before_fully_shard_raises(one_rank):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    inj = nr.NoiseInjector(model, SIGMA, seed=0)
    fully_shard(model)
    with pytest.raises(RuntimeError, match="was replaced after the NoiseInjector was built"):
        with inj.perturb():
            pass


def test_dtensor_arguments_that_cannot_be_supported_raise(one_rank):
    model = make_model()
    with pytest.raises(ValueError, match="restore='regenerate' needs"):
        nr.NoiseInjector(model, SIGMA, seed=0, restore="regenerate")
    with pytest.raises(ValueError, match="scale='filter' / 'element' is not supported with DTensor"):
        nr.NoiseInjector(model, SIGMA, seed=0, scale="filter")
    with pytest.raises(ValueError, match="need seed=, not generator="):
        nr.NoiseInjector(model, SIGMA, generator=torch.Generator())
    with pytest.raises(ValueError, match="independent_ranks=True is not supported with DTensor"):
        nr.NoiseInjector(model, SIGMA, seed=0, independent_ranks=True)
    with pytest.raises(TypeError, match="pass the nn.Module, not an iterable"):
        nr.NoiseInjector(model.parameters(), SIGMA, seed=0)
    inj = nr.NoiseInjector(model, SIGMA, seed=0)
    plain = nr.NoiseInjector(nn.Linear(2, 2), SIGMA, seed=0)
    state = {**plain.state_dict(), "num_layers": len(inj.layers)}
    with pytest.raises(ValueError, match="shard noise generators"):
        inj.load_state_dict(state)


def test_partial_placement_raises(one_rank):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Partial

    mesh = init_device_mesh("cpu", (1,))
    module = nn.Module()
    module.w = nn.Parameter(DTensor.from_local(torch.ones(3), mesh, [Partial()]))
    with pytest.raises(ValueError, match="Partial placement"):
        nr.NoiseInjector(module, SIGMA, seed=0)


def test_in_place_change_of_a_shard_inside_the_block_raises(one_rank):
    model = make_model()
    inj = nr.NoiseInjector(model, SIGMA, mode="full", seed=0)
    clean = local(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="SGD.step\\(\\) was called inside perturb"):  # refused before any change
        with inj.perturb():
            sq_loss(model(torch.ones(2, 8, dtype=torch.float64)), torch.zeros(2, 4, dtype=torch.float64)).backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(local(model), clean))
    with pytest.raises(RuntimeError, match="modified in place inside perturb"):  # any other in-place change
        with inj.perturb(), torch.no_grad():
            next(model.parameters()).to_local().add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(local(model), clean))  # restored


def test_deepspeed_zero3_parameters_raise():
    model = nn.Linear(3, 2)
    model.weight.ds_id = 0  # what DeepSpeed ZeRO-3 attaches to the parameters it partitions
    with pytest.raises(TypeError, match="DeepSpeed ZeRO-3 partitioned parameters are not supported"):
        nr.NoiseInjector(model, SIGMA, seed=0)
    p = nn.Parameter(torch.zeros(3))
    p.ds_numel = 3
    with pytest.raises(TypeError, match="ZeRO-3"):
        nr.NoiseInjector([p], SIGMA, seed=0)


@pytest.mark.filterwarnings("ignore:FSDP is switching to use `NO_SHARD`")
@pytest.mark.parametrize("use_orig_params", [False, True], ids=["flat", "orig-params"])
def test_fsdp1_raises(one_rank, use_orig_params):
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = FullyShardedDataParallel(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), device_id=torch.device("cpu"),
                                     use_orig_params=use_orig_params)
    with pytest.raises(TypeError, match="FSDP1"):
        nr.NoiseInjector(model, SIGMA, seed=0)
    if not use_orig_params:  # its flat parameters are recognised without the module
        with pytest.raises(TypeError, match="FSDP1"):
            nr.NoiseInjector(list(model.parameters()), SIGMA, seed=0)


# ----------------------------------------------------------------------------------- example
def test_torchrun_example_runs():
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples" / "fsdp2_torchrun.py"), "--steps", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert "2 ranks, 5 steps, mode layer" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "restored exactly: True, same layer on all ranks: True" in proc.stdout
    # torch 2.13 CPU: an FSDP2 process under torchrun/gloo sometimes aborts at interpreter exit,
    # after destroy_process_group ("terminate called without an active exception"; 9 of 46 runs
    # here, as often for a bare fully_shard script without noisereg). Tolerate exactly that.
    teardown_abort = "terminate called without an active exception" in proc.stderr
    assert proc.returncode == 0 or teardown_abort, proc.stdout[-3000:] + proc.stderr[-3000:]
