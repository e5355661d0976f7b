"""Real Fashion-MNIST: where the files are searched, their checksums, and the subset embedded in the package.

The search and checksum tests use small IDX files written here. The comparison of the embedded images with
the official files needs those files: found as `noisereg run` finds them ($NOISEREG_DATA_DIR, then Debian's
/usr/share/datasets/fashion-mnist). CI fetches them (scripts/get_fashion_mnist.sh) and fails if they are
absent; elsewhere these tests skip with the reason.
"""

import gzip
import hashlib
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import fashion_arrays, write_fashion

from noisereg.data import files
from noisereg.data import fashion_mnist_subset_arrays, holdout, load, load_fashion_mnist, load_fashion_mnist_subset
from noisereg.data.embedded import FASHION_SUBSET_FILE, FASHION_SUBSET_SHA256
from noisereg.data.files import FASHION_SHA256, IDX_LABELS, idx_sha256
from noisereg.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """Debian's location points at an empty directory; $NOISEREG_DATA_DIR is unset."""
    monkeypatch.setattr(files, "DEBIAN_FASHION_DIR", tmp_path / "debian-empty")
    monkeypatch.delenv(files.DATA_DIR_ENV, raising=False)
    return tmp_path / "debian-empty"


def _official_dir():
    """The directory of the official files, as load_fashion_mnist searches it, or None."""
    found = files.find_fashion_mnist()
    return None if found is None else found[0]


@pytest.fixture(scope="module")
def official():
    if _official_dir() is None:
        where = " or ".join(map(str, files.fashion_mnist_dirs()))
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the official Fashion-MNIST files (in {where}): run scripts/get_fashion_mnist.sh")
        pytest.skip(f"needs the official Fashion-MNIST files in {where} (scripts/get_fashion_mnist.sh fetches them)")
    return load_fashion_mnist(verify=True)


# ------------------------------------------------------------------------------------------ search
@pytest.mark.parametrize("layout", [".", "fashion-mnist", "FashionMNIST/raw"])
def test_env_dir_and_its_subfolders_are_searched(tmp_path, monkeypatch, no_debian, layout):
    arrays, _ = write_fashion(tmp_path / "env" / layout)
    monkeypatch.setenv(files.DATA_DIR_ENV, str(tmp_path / "env"))
    s = load("fashion_mnist")
    assert s.name == f"fashion_mnist({tmp_path / 'env'})"
    assert torch.equal(s.y_train, torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long())


def test_env_dir_comes_before_debian_and_debian_is_the_fallback(tmp_path, monkeypatch, no_debian):
    a_env, _ = write_fashion(tmp_path / "env", arrays=fashion_arrays(seed=1))
    a_deb, _ = write_fashion(no_debian, arrays=fashion_arrays(seed=2))
    monkeypatch.setenv(files.DATA_DIR_ENV, str(tmp_path / "env"))
    assert torch.equal(load("fashion_mnist").y_test, torch.from_numpy(a_env["t10k-labels-idx1-ubyte"]).long())
    monkeypatch.setenv(files.DATA_DIR_ENV, str(tmp_path / "elsewhere"))  # set but empty: Debian's files
    s = load("fashion_mnist")
    assert s.name == f"fashion_mnist({no_debian})"
    assert torch.equal(s.y_test, torch.from_numpy(a_deb["t10k-labels-idx1-ubyte"]).long())


def test_explicit_data_dir_is_searched_alone(tmp_path, monkeypatch, no_debian):
    write_fashion(no_debian)
    monkeypatch.setenv(files.DATA_DIR_ENV, str(no_debian))
    (tmp_path / "given").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load("fashion_mnist", data_dir=tmp_path / "given")
    assert str(no_debian) not in str(e.value) and str(tmp_path / "given") in str(e.value)
    assert "apt-get install dataset-fashion-mnist" in str(e.value)


def test_nowhere_is_one_line_saying_where_and_how(tmp_path, monkeypatch, no_debian):
    for env in (None, str(tmp_path / "env")):
        if env:
            monkeypatch.setenv(files.DATA_DIR_ENV, env)
        with pytest.raises(files.DataFileNotFound) as e:
            load("fashion_mnist")
        msg = str(e.value)
        assert "\n" not in msg and str(no_debian) in msg
        assert (f"NOISEREG_DATA_DIR={env} (and its fashion-mnist/ and FashionMNIST/raw/)" if env
                else "NOISEREG_DATA_DIR (not set)") in msg
        assert "apt-get install dataset-fashion-mnist" in msg and "github.com/zalandoresearch/fashion-mnist" in msg


def test_cli_finds_the_files_without_data_dir(tmp_path, monkeypatch, no_debian):
    from noisereg.cli import main

    write_fashion(tmp_path / "env", arrays=fashion_arrays(n_train=40, n_test=6))
    monkeypatch.setenv(files.DATA_DIR_ENV, str(tmp_path / "env"))
    assert main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "o"), "--quiet", "--set",
                 "dataset=fashion_mnist", "--set", "n_train=24", "--set", "n_val=8"]) == 0
    report = (tmp_path / "o" / "REPORT.md").read_text()
    assert f"fashion_mnist files in {tmp_path / 'env'}" in report


def test_cli_missing_files_is_one_line(tmp_path, no_debian, capsys):
    from noisereg.cli import main

    assert main(["run", "fig3", "--preset", "smoke", "--out", str(tmp_path / "o"), "--quiet", "--set",
                 "dataset=fashion_mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "apt-get install dataset-fashion-mnist" in err


# ----------------------------------------------------------------------------------------- checksums
def test_idx_sha256_is_the_files_sha256(tmp_path):
    arrays, paths = write_fashion(tmp_path, gz=(False, True, False, True))
    for name, path in paths.items():
        raw = path.read_bytes()
        raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
        magic = files.IDX_IMAGES if "images" in name else IDX_LABELS
        assert idx_sha256(arrays[name], magic) == hashlib.sha256(raw).hexdigest()


def test_a_full_size_file_must_be_the_official_one(tmp_path):
    arrays = fashion_arrays(n_test=10000)  # the official test-label count, random labels
    arrays["t10k-images-idx3-ubyte"] = np.zeros((10000, 1, 1), np.uint8)
    write_fashion(tmp_path, arrays=arrays)
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte: not the official Fashion-MNIST file \(SHA-256 "
                                        r"of its decompressed bytes [0-9a-f]{64}, expected "
                                        + FASHION_SHA256["t10k-images-idx3-ubyte"]):
        load_fashion_mnist(tmp_path)
    assert len(load_fashion_mnist(tmp_path, verify=False).y_test) == 10000  # MNIST-like files: verify=False


def test_verify_true_checks_small_files_and_false_skips(tmp_path):
    write_fashion(tmp_path)
    with pytest.raises(UserError, match="train-images-idx3-ubyte: not the official Fashion-MNIST file"):
        load_fashion_mnist(tmp_path, verify=True)
    assert len(load_fashion_mnist(tmp_path).x_train) == 3  # default: small files load unchecked
    with pytest.raises(TypeError, match="verify must be True, False or None, got 'yes'"):
        load_fashion_mnist(tmp_path, verify="yes")


def test_official_files_pass_their_checksums(official):
    assert tuple(official.x_train.shape) == (60000, 1, 28, 28) and tuple(official.x_test.shape) == (10000, 1, 28, 28)


# --------------------------------------------------------------------------------- embedded subset
def test_embedded_subset_shapes_payload_and_notice():
    a = fashion_mnist_subset_arrays()
    assert {k: v.shape for k, v in a.items()} == {
        "x_train": (4096, 28, 28), "y_train": (4096,), "train_index": (4096,),
        "x_test": (5000, 28, 28), "y_test": (5000,), "test_index": (5000,)}
    assert all(np.all(np.diff(a[k]) > 0) for k in ("train_index", "test_index"))  # sorted, distinct
    rng = np.random.default_rng(0)  # the selection the build script documents
    assert np.array_equal(a["train_index"], np.sort(rng.permutation(60000)[:4096]))
    assert np.array_equal(a["test_index"], np.sort(rng.permutation(10000)[:5000]))
    assert set(np.unique(a["y_train"])) == set(range(10)) == set(np.unique(a["y_test"]))
    pkg = resources.files("noisereg.data")
    packed = (pkg / FASHION_SUBSET_FILE).read_bytes()
    assert len(packed) <= 6_000_000 and packed[4:8] == b"\0\0\0\0"  # gzip mtime 0: no timestamp
    assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == FASHION_SUBSET_SHA256
    notice = (pkg / "FASHION_MNIST_LICENSE.txt").read_text()
    assert "Zalando SE" in notice and "MIT License" in notice


def test_embedded_subset_is_the_official_images_one_by_one(official):
    a = fashion_mnist_subset_arrays()
    for split, x, y in (("train", official.x_train, official.y_train), ("test", official.x_test, official.y_test)):
        idx = torch.from_numpy(a[f"{split}_index"].astype(np.int64))
        assert torch.equal(torch.from_numpy(a[f"x_{split}"]).float()[:, None] / 255, x[idx])
        assert torch.equal(torch.from_numpy(a[f"y_{split}"]).long(), y[idx])


def test_build_script_rebuilds_the_same_payload(official, tmp_path):
    out = tmp_path / "subset.npy.gz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_fashion_mnist_subset.py"), str(_official_dir()),
                    "--out", str(out)], check=True, capture_output=True)
    assert hashlib.sha256(gzip.decompress(out.read_bytes())).hexdigest() == FASHION_SUBSET_SHA256
    packed = (resources.files("noisereg.data") / FASHION_SUBSET_FILE).read_bytes()
    assert out.read_bytes() == packed  # same zlib here: the same bytes


def test_subset_through_load_and_holdout_keeps_the_settings():
    s = load_fashion_mnist_subset()
    assert s.name == "fashion_mnist_subset" and s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert 0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1
    for n_train, n_val, seed in ((1024, 256, 0), (1024, 1024, 3), (64, 16, 1)):
        h = holdout(load("fashion_mnist_subset", n_train=n_train + n_val, seed=seed), n_val, seed=seed)
        assert (len(h.x_train), len(h.x_val), len(h.x_test)) == (n_train, n_val, 5000)
        perm = np.random.default_rng(seed).permutation(4096)[:n_train + n_val]
        val = perm[np.random.default_rng(seed).permutation(n_train + n_val)[n_train:]]
        assert torch.equal(h.x_val, s.x_train[torch.from_numpy(val)])
    with pytest.raises(UserError, match="n_train must be <= 4096"):
        load("fashion_mnist_subset", n_train=5000)


@pytest.mark.parametrize("name", ["fig3", "fig4"])
def test_cpu_presets_train_on_the_embedded_subset(name):
    from noisereg.sweep import EXPERIMENTS

    exp = EXPERIMENTS[name]
    for preset in ("cpu", "demo"):
        cfg = exp.config(preset)
        split = exp.data(cfg, None, None)
        assert cfg.dataset == "fashion_mnist_subset" and cfg.n_train == 1024
        assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (1024, cfg.n_val, 5000)
        assert tuple(split.x_train.shape[1:]) == (1, 28, 28) and len(cfg.seeds) >= 3
