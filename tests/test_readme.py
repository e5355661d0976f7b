"""The README's usage example runs as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_usage_example_runs():
    blocks = python_blocks()
    assert blocks, "README has no python example"
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    model, inj = scope["model"], scope["inj"]
    assert inj.step == 100 and inj.sigma == 0.0
    assert all(torch.isfinite(p).all() for p in model.parameters())
