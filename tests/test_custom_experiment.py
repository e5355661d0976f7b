"""docs/custom_experiment.md, run as written: a user's experiment through the CLI, by --module and as an installed package."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "custom_experiment.md").read_text()


def block(lang: str) -> str:
    (text,) = [b for b in re.findall(rf"```{lang}\n(.*?)```", PAGE, re.S) if lang != "bash" or "noisereg" in b][:1]
    return text


def noisereg(*args: str, path: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT / "src")])}
    return subprocess.run([sys.executable, "-m", "noisereg.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("user")
    (folder / "shrink_exp.py").write_text(block("python"))
    return folder


def test_the_page_example_is_one_short_file():
    assert len(block("python").strip().splitlines()) <= 61


def test_every_command_of_the_page_through_the_cli(user_module):
    commands = [line.split("#")[0].split() for line in block("bash").splitlines()
                if line.startswith("noisereg ")]
    assert [c[1] for c in commands] == ["list", "show", "run", "run", "report"]
    outputs = []
    for cmd in commands:
        result = noisereg(*cmd[1:], path=user_module, cwd=user_module)
        assert result.returncode == 0, f"{' '.join(cmd)}: {result.stderr[-2000:]}"
        outputs.append(result.stdout)
        if len(outputs) == 3:   # the first run: two worker processes
            results = json.loads((user_module / "runs" / "shrink" / "results.json").read_text())
            assert results["environment"]["jobs"] == 2 and results["environment"]["executor"] == "processes"
    assert re.search(r"^shrink\s+layer-wise noise shrinks", outputs[0], re.M)
    assert "sigma0.3-seed2" in outputs[1] or "6 runs" in outputs[1]
    results = json.loads((user_module / "runs" / "shrink" / "results.json").read_text())
    assert len(results["runs"]) == 6
    assert {r["method"] for r in results["runs"]} == {"gd", "layer"}
    report = (user_module / "runs" / "shrink" / "REPORT.md").read_text()
    assert "noise shrinks ‖W1‖² + ‖W2‖²" in report
    assert re.search(r"\*\*(reproduced|not reproduced|inconclusive)\*\*", report)
    # --resume found every run done: the results are the same runs
    assert "6 runs" in outputs[3]


def test_an_unknown_user_experiment_says_how_to_load_it(user_module, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"experiment": "shrink", "runs": []}))
    result = noisereg("report", str(out), path=tmp_path, cwd=tmp_path)
    assert result.returncode == 2
    assert "pass --module MOD, or install its package" in result.stderr
    result = noisereg("run", "--module", "no_such_module_here", "shrink", path=tmp_path, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("noisereg: error: --module no_such_module_here: cannot")


def test_log_to_tensorboard_with_a_user_experiment(user_module, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    result = noisereg("run", "--module", "shrink_exp", "shrink", "--preset", "smoke", "--set", "seeds=0",
                      "--out", str(out), "--log-to", "tensorboard", "--quiet", path=user_module, cwd=user_module)
    assert result.returncode == 0, result.stderr[-2000:]
    assert list((out / "tensorboard").iterdir())


def test_installed_as_a_package_through_the_entry_point(user_module, tmp_path):
    """pip installs the page's pyproject.toml into a folder; no --module needed there."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "shrink_exp.py").write_text(block("python"))
    (pkg / "pyproject.toml").write_text(block("toml"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
                    "--target", str(site), str(pkg)], check=True, capture_output=True, timeout=300)
    assert list(site.glob("shrink_exp-0.1.dist-info/entry_points.txt"))
    listed = noisereg("list", path=site, cwd=tmp_path)
    assert listed.returncode == 0 and re.search(r"^shrink\s", listed.stdout, re.M), listed.stderr
    out = tmp_path / "out"
    ran = noisereg("run", "shrink", "--preset", "smoke", "--out", str(out), "--quiet", path=site, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert noisereg("report", str(out), path=site, cwd=tmp_path).returncode == 0
    # a broken entry point warns and leaves the others usable
    (site / "shrink_exp.py").write_text("raise RuntimeError('broken plugin')\n")
    listed = noisereg("list", path=site, cwd=tmp_path)
    assert listed.returncode == 0 and "fig3" in listed.stdout
    assert "entry point 'shrink'" in listed.stderr and "broken plugin" in listed.stderr
