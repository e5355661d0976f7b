"""Every script in examples/ runs at toy size and reports what it promises."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def run(cmd, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_example_is_run_by_some_test():
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    untested = [p.name for p in EXAMPLES.glob("*.py") if p.name not in tests]
    assert not untested, f"examples not run by any test: {untested}"


def test_plain_loop():
    out = run([sys.executable, "examples/plain_loop.py", "--steps", "20"])
    assert "three-line loop == NoisyOptimizer: True" in out


def test_ddp_under_torchrun_two_gloo_processes():
    out = run(TORCHRUN + ["examples/ddp_torchrun.py", "--steps", "5"])
    assert "2 ranks, 5 steps" in out and "noisy weights agree on all ranks: True" in out


def test_lightning():
    pytest.importorskip("lightning")
    out = run([sys.executable, "examples/lightning_train.py", "--epochs", "1", "--accumulate", "2"])
    assert "after 7 optimizer steps; 7 noise draws (2 micro-batches per step" in out  # 14 batches of 64


def test_hugging_face_trainer():
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    out = run([sys.executable, "examples/hf_trainer.py", "--steps", "3", "--accumulate", "2"])
    assert "after 3 optimizer steps; 3 noise draws" in out


def test_hugging_face_trainer_under_torchrun():
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    out = run(TORCHRUN + ["examples/hf_trainer.py", "--steps", "2", "--accumulate", "2"])
    assert "after 2 optimizer steps; 2 noise draws" in out and "2 process(es)" in out
    assert "noisy weights agree on all ranks: True" in out
