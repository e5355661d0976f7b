"""Packaging: one version, a typed wheel with an SPDX license, a light core, and a plain install that runs the CLI."""

import importlib.metadata
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
import torch

import noisereg
from noisereg._version import __version__ as source_version

ROOT = Path(__file__).resolve().parents[1]
CORE = ["injection", "layers", "losses", "noise", "optim"]
IN_CI = os.environ.get("CI") == "true" or os.environ.get("NOISEREG_SLOW") == "1"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """``pip wheel .`` of this checkout, and pip's output."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("noisereg-*.whl")
    return path, proc.stdout + proc.stderr


def test_version_has_one_source():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "noisereg._version.__version__"}
    assert noisereg.__version__ == source_version == importlib.metadata.version("noisereg"), (
        "installed metadata is stale: reinstall (source scripts/env.sh does it when _version.py changes)")
    out = subprocess.run([sys.executable, "-m", "noisereg.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"noisereg {source_version}"


def test_wheel_has_py_typed_spdx_license_and_no_deprecation_warning(wheel):
    path, log = wheel
    assert "deprecat" not in log.lower(), log
    names = zipfile.ZipFile(path).namelist()
    assert "noisereg/py.typed" in names
    meta = zipfile.ZipFile(path).read(f"noisereg-{source_version}.dist-info/METADATA").decode()
    assert f"\nVersion: {source_version}\n" in meta
    assert "\nLicense-Expression: MIT\n" in meta and any(n.endswith("licenses/LICENSE") for n in names)
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    plain = {r.split(">")[0].split("=")[0].split(";")[0] for r in requires if "extra ==" not in r}
    assert plain == {"torch", "numpy", "matplotlib", "scikit-learn", "scipy", "tqdm"}  # what the CLI needs
    extras = {r.split("extra == ")[1].strip('"') for r in requires if "extra ==" in r}
    assert {"lightning", "transformers", "ray", "tensorboard", "mlflow", "test"} <= extras


def test_core_modules_import_only_torch_and_numpy():
    code = (
        "import sys, torch, numpy\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        f"import {', '.join('noisereg.' + m for m in CORE)}\n"
        "new = {m.split('.')[0] for m in sys.modules} - before - {'noisereg'}\n"
        "print(sorted(new - set(sys.stdlib_module_names)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the core pulls in {out.strip()}"


def test_integrations_package_imports_no_framework():
    code = "import sys, noisereg.integrations; print([m for m in ('lightning', 'transformers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(not IN_CI, reason="builds a fresh venv (~2 min); runs in CI (CI=true) or with NOISEREG_SLOW=1")
def test_fresh_venv_plain_install_runs_the_cli(wheel, tmp_path):
    """``pip install noisereg`` without extras, in a new venv: every CLI command the smoke presets use runs."""
    path, _ = wheel
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py, cli = str(env_dir / "bin" / "python"), str(env_dir / "bin" / "noisereg")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["OMP_NUM_THREADS"] = "1"
    log = []

    def sh(*cmd, ok=True):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        log.append(f"$ {' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}")
        assert (proc.returncode == 0) == ok, "\n".join(log[-1:])
        return proc.stdout + proc.stderr

    # the same torch as here (a local wheel on our machines), then the package alone: no extras
    sh(py, "-m", "pip", "install", "-q", f"torch=={torch.__version__.split('+')[0]}")
    sh(py, "-m", "pip", "install", "-q", str(path))
    assert sh(cli, "--version").strip() == f"noisereg {source_version}"
    assert "fig2" in sh(cli, "list")
    for name in ("fig2", "fig3", "lasso"):
        sh(cli, "run", name, "--preset", "smoke", "--out", str(tmp_path / name))
        assert (tmp_path / name / "results.json").is_file() and (tmp_path / name / "REPORT.md").is_file()
    # an extra that is not installed: one line naming the pip command
    err = sh(py, "-c", "import noisereg.integrations.lightning", ok=False)
    assert 'MissingExtraError: noisereg.integrations.lightning needs the "lightning" package, which is not ' \
           'installed: pip install "noisereg[lightning]"' in err
    (tmp_path / "transcript.txt").write_text("\n".join(log))


def test_require_names_the_extra_or_shows_a_broken_install(monkeypatch):
    from noisereg.integrations import MissingExtraError, require
    with pytest.raises(MissingExtraError, match=r'^demo needs the "no_such_pkg" package, which is not installed: '
                                                r'pip install "noisereg\[x\]"$'):
        require("no_such_pkg.sub", "x", "demo")

    def broken(name):  # the package exists, but one of its own dependencies does not
        raise ModuleNotFoundError("No module named 'tokenizers'", name="tokenizers")

    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="tokenizers") as info:
        require("transformers", "transformers", "demo")
    assert not isinstance(info.value, MissingExtraError)
