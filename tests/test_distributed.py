"""NoiseInjector under DistributedDataParallel: 2 CPU processes, gloo backend."""



import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import noisereg as nr
from _spawn import exit_after_success

STEPS, LR, SIGMA = 5, 0.1, 0.2


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 2)).double()


def make_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=g, dtype=torch.float64), torch.randn(32, 2, generator=g, dtype=torch.float64)


def sq_loss(out, y):
    return 0.5 * (out - y).pow(2).sum(1).mean()


def train(model, x, y, inj, record):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for _ in range(STEPS):
        opt.zero_grad()
        with inj.perturb():
            record.append([p.detach().clone() for p in model.parameters()])
            sq_loss(model(x), y).backward()
        opt.step()


def _worker(rank, world, init_file, out_file, independent, seed=0):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = make_data()
        xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]
        model = nn.parallel.DistributedDataParallel(make_model())
        inj = nr.NoiseInjector(model, SIGMA, mode="layer", seed=seed, independent_ranks=independent)
        noisy = []
        train(model, xs, ys, inj, noisy)
        final = [p.detach().clone() for p in model.parameters()]
        gathered = [None] * world
        dist.all_gather_object(gathered, {"final": final, "noisy": noisy, "layers": [n for n, _ in inj.layers],
                                          "seed": inj.seed})
        if rank == 0:
            torch.save(gathered, out_file)
    finally:
        dist.destroy_process_group()
    exit_after_success()  # reached only when the work succeeded (see tests/_spawn.py)


def run_ddp(tmp_path, independent, seed=0):
    out = tmp_path / f"ddp_{independent}_{seed}.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / f"init_{independent}_{seed}"), str(out), independent, seed), nprocs=2,
             join=True)
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def single_process():
    x, y = make_data()
    model = make_model()
    noisy = []
    train(model, x, y, nr.NoiseInjector(model, SIGMA, mode="layer", seed=0), noisy)
    return [p.detach() for p in model.parameters()], noisy


def test_ddp_shared_noise_equals_one_process_on_the_union(tmp_path, single_process):
    r0, r1 = run_ddp(tmp_path, independent=False)
    assert r0["layers"][0].startswith("module.")
    for a, b in zip(r0["final"], r1["final"]):
        assert torch.equal(a, b)  # ranks hold identical weights
    for s0, s1 in zip(r0["noisy"], r1["noisy"]):
        assert all(torch.equal(a, b) for a, b in zip(s0, s1))  # same noise on both ranks
    final, noisy = single_process
    # the same perturbed points as the 1-process run: bit-equal at step 1, then up to the
    # rounding of DDP's gradient average (a sum in another order)
    assert all(torch.equal(a, b) for a, b in zip(r0["noisy"][0], noisy[0]))
    for s0, s in zip(r0["noisy"], noisy):
        for a, b in zip(s0, s):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(r0["final"], final):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_ddp_independent_noise_per_rank(tmp_path, single_process):
    r0, r1 = run_ddp(tmp_path, independent=True)
    for a, b in zip(r0["final"], r1["final"]):
        assert torch.equal(a, b)  # gradients are averaged, so weights stay identical
    differs = [any(not torch.equal(a, b) for a, b in zip(s0, s1)) for s0, s1 in zip(r0["noisy"], r1["noisy"])]
    assert all(differs)  # every step, the ranks evaluated the gradient at different points
    assert not torch.allclose(r0["final"][0], single_process[0][0])


def test_ddp_without_seed_ranks_agree_on_one(tmp_path):
    """No seed under torch.distributed: rank 0's OS seed is broadcast, so the ranks perturb alike."""
    r0, r1 = run_ddp(tmp_path, independent=False, seed=None)
    assert r0["seed"] == r1["seed"]
    for s0, s1 in zip(r0["noisy"], r1["noisy"]):
        assert all(torch.equal(a, b) for a, b in zip(s0, s1))
    for a, b in zip(r0["final"], r1["final"]):
        assert torch.equal(a, b)
