"""The README's usage example runs as written."""

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_usage_example_runs():
    blocks = python_blocks()
    assert len(blocks) == 7, "README python examples changed: update this test"
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    model, inj = scope["model"], scope["inj"]
    assert inj.step == 100 and inj.sigma == 0.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_readme_regularizer_logging_example_runs(capsys):
    scope = {}
    exec(compile(python_blocks()[1], "README.md", "exec"), scope)
    out = capsys.readouterr().out
    assert out.count("R_eff =") == 3
    assert scope["reg"] > 0 and set(scope["layers"]) == {"0", "2"}


def integration_blocks():
    return [b for b in python_blocks() if ("NoisyOptimizer(" in b or "noisereg.integrations" in b)
            and "scale=" not in b]


def test_readme_family_example_runs():
    """The family block continues the closure block's session (model, closure)."""
    closure_block = integration_blocks()[0]
    family = next(b for b in python_blocks() if 'scale="filter"' in b)
    scope = {}
    exec(compile(closure_block, "README.md", "exec"), scope)
    before = [p.detach().clone() for p in scope["model"].parameters()]
    exec(compile(family, "README.md", "exec"), scope)
    assert scope["nso"].injector.step == 1 and torch.isfinite(scope["loss"])
    assert any(not torch.equal(a, p) for a, p in zip(before, scope["model"].parameters()))


def test_readme_closure_example_runs():
    scope = {}
    exec(compile(integration_blocks()[0], "README.md", "exec"), scope)
    assert scope["opt"].param_groups[0]["lr"] < 0.05  # the scheduler on the wrapper moved the real lr
    assert set(scope["checkpoint"]) == {"optimizer", "injector"} and scope["inj"].step == 50


def test_readme_lightning_example_runs(capsys):
    pytest.importorskip("lightning")
    scope = {}
    exec(compile(integration_blocks()[1], "README.md", "exec"), scope)
    assert capsys.readouterr().out.strip().endswith("8")


def test_readme_hugging_face_example_runs(capsys, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)  # the Trainer's output_dir
    scope = {}
    exec(compile(integration_blocks()[2], "README.md", "exec"), scope)
    assert capsys.readouterr().out.strip().endswith("4")


def test_readme_sam_example_runs():
    import noisereg as nr

    block = next(b for b in python_blocks() if "nr.SAM(" in b)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    model, x, y = scope["model"], scope["x"], scope["y"]
    assert isinstance(scope["opt"], nr.SAM) and torch.isfinite(scope["loss"])
    with torch.no_grad():  # 50 SAM steps fit the random targets better than their mean does
        assert 0.5 * (model(x) - y).pow(2).sum(1).mean() < 0.5 * (y - y.mean()).pow(2).sum(1).mean()
