"""The README's usage example runs as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_usage_example_runs():
    blocks = python_blocks()
    assert len(blocks) == 2, "README python examples changed: update this test"
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
