"""Data loaders on tiny files written here in the real formats (right and wrong), subsets, and the
synthetic sparse regression of Fig. 2.

IDX files follow http://yann.lecun.com/exdb/mnist/ (big-endian magic and dimensions, then uint8
values); CIFAR-10 batches are pickled dicts with b"data" (N, 3072) uint8 and b"labels", as in
``cifar-10-python.tar.gz``. Values are checked exactly (``torch.equal``) against ``uint8 / 255``.
"""

import gzip
import pickle
import re
import sys

import numpy as np
import pytest
import torch

from noisereg.data import (
    holdout,
    load_digits_split,
    DATASETS,
    RegressionSplit,
    Split,
    load,
    load_cifar10,
    load_fashion_mnist,
    load_npz,
    load_torchvision,
    read_idx,
    sparse_regression,
    subset,
)
from noisereg.data.files import IDX_IMAGES, IDX_LABELS

FASHION = {"train-images-idx3-ubyte": IDX_IMAGES, "train-labels-idx1-ubyte": IDX_LABELS,
           "t10k-images-idx3-ubyte": IDX_IMAGES, "t10k-labels-idx1-ubyte": IDX_LABELS}


# ---------------------------------------------------------------------------------------- writers
def idx_bytes(arr, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    magic = (0x0800 | arr.ndim) if magic is None else magic
    dims = b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return magic.to_bytes(4, "big") + dims + arr.tobytes()


def write(path, data, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fashion_arrays(seed=0, n_train=3, n_test=2, hw=(4, 5)):
    rng = np.random.default_rng(seed)
    return {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
            "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}


def write_fashion(root, gz=(False, True, False, True), arrays=None):
    arrays = arrays or fashion_arrays()
    paths = {name: write(root / name, idx_bytes(a), g) for (name, a), g in zip(arrays.items(), gz)}
    return arrays, paths


def cifar_batches(seed=0, n=2, n_test=3):
    rng = np.random.default_rng(seed)
    return {name: {b"batch_label": name.encode(),
                   b"data": rng.integers(0, 256, (m, 3072), dtype=np.uint8),
                   b"labels": [int(v) for v in rng.integers(0, 10, m)]}
            for name, m in [(f"data_batch_{i}", n) for i in range(1, 6)] + [("test_batch", n_test)]}


def write_cifar(root, batches=None):
    batches = batches or cifar_batches()
    root.mkdir(parents=True, exist_ok=True)
    for name, b in batches.items():
        (root / name).write_bytes(pickle.dumps(b, protocol=2))
    return batches


def npz(path, **arrays):
    good = {"x_train": np.arange(12.0).reshape(4, 3), "y_train": np.array([0, 1, 2, 1]),
            "x_test": np.ones((2, 3)), "y_test": np.array([2, 0])}
    good.update(arrays)
    np.savez(path, **{k: v for k, v in good.items() if v is not None})
    return path


# -------------------------------------------------------------------------------------- synthetic
def test_sparse_regression_shapes_truth_and_name():
    s = sparse_regression(n=30, d=7, k=2, noise=0.0, n_test=11, seed=4)
    assert isinstance(s, RegressionSplit) and isinstance(s, Split)
    assert [tuple(t.shape) for t in (s.x_train, s.y_train, s.x_test, s.y_test, s.beta)] == [
        (30, 7), (30, 1), (11, 7), (11, 1), (7, 1)]
    assert {t.dtype for t in (s.x_train, s.y_train, s.x_test, s.y_test, s.beta)} == {torch.float32}
    assert int((s.beta != 0).sum()) == 2 and set(s.beta.abs().flatten().tolist()) == {0.0, 1.0}
    assert torch.equal(s.y_train, s.x_train @ s.beta) and torch.equal(s.y_test, s.x_test @ s.beta)
    assert s.name == "sparse_regression(n=30,d=7,k=2,noise=0.0,n_test=11,seed=4)" and s.seed == 4


def test_sparse_regression_noise_level_and_recovery():
    s = sparse_regression(n=10_000, noise=0.1, seed=1)
    resid = (s.y_train - s.x_train @ s.beta).double()
    assert abs(resid.std().item() - 0.1) < 0.005  # std of the sample std: 0.1/sqrt(2n) = 7e-4
    d = sparse_regression(seed=1)  # the defaults: least squares lands near beta*
    b = torch.linalg.lstsq(d.x_train.double(), d.y_train.double()).solution
    assert (b - d.beta.double()).abs().max() < 0.1  # per-coefficient std ~ 0.1/sqrt(100) = 0.01


def test_sparse_regression_seeded_and_nested():
    a, b, c = sparse_regression(seed=0), sparse_regression(seed=0), sparse_regression(seed=1)
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_test", "beta"))
    assert not torch.equal(a.x_train, c.x_train)
    small, big = sparse_regression(n=5, seed=2), sparse_regression(n=50, n_test=7, seed=2)
    assert torch.equal(small.x_train, big.x_train[:5]) and torch.equal(small.y_train, big.y_train[:5])
    assert torch.equal(small.beta, big.beta) and torch.equal(small.x_test[:7], big.x_test)


def test_sparse_regression_k0_is_all_noise():
    s = sparse_regression(n=4, k=0, noise=0.5)
    assert not s.beta.any() and s.y_train.abs().sum() > 0


@pytest.mark.parametrize("kwargs, err, msg", [
    ({"n": 0}, ValueError, "n must be an integer >= 1, got 0"),
    ({"d": 0}, ValueError, "d must be an integer >= 1, got 0"),
    ({"n_test": -1}, ValueError, "n_test must be an integer >= 1, got -1"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
    ({"k": -1}, ValueError, "k must be an integer >= 0, got -1"),
    ({"k": 11}, ValueError, "k must be <= d = 10, got 11"),
    ({"noise": -0.1}, ValueError, "noise must be a finite real number >= 0, got -0.1"),
    ({"noise": float("nan")}, ValueError, "noise must be a finite real number >= 0, got nan"),
    ({"n": 1.5}, TypeError, "n must be an integer >= 1, got float"),
    ({"n": True}, TypeError, "n must be an integer >= 1, got bool"),
    ({"noise": "0.1"}, TypeError, "noise must be a real number >= 0, got str"),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_sparse_regression_errors(kwargs, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        sparse_regression(**kwargs)


def test_regression_split_has_no_num_classes():
    with pytest.raises(ValueError, match=r"num_classes is undefined for regression data \(sparse_reg"):
        sparse_regression(n=3).num_classes


# -------------------------------------------------------------------------------------------- npz
def test_npz_integer_labels(tmp_path):
    s = load_npz(npz(tmp_path / "d.npz", y_test=np.array([2.0, 0.0])))  # whole floats count as int
    assert torch.equal(s.x_train, torch.arange(12.0).reshape(4, 3)) and s.x_train.dtype == torch.float32
    assert torch.equal(s.y_train, torch.tensor([0, 1, 2, 1])) and s.y_test.dtype == torch.int64
    assert torch.equal(s.y_test, torch.tensor([2, 0])) and s.num_classes == 3
    assert s.name == f"npz({tmp_path / 'd.npz'})" and s.seed == 0


def test_npz_real_targets_stay_float(tmp_path):
    s = load_npz(npz(tmp_path / "r.npz", y_train=np.array([[0.5], [1], [2], [3]]),
                     y_test=np.array([[1.0], [2.0]])))
    assert s.y_train.dtype == s.y_test.dtype == torch.float32 and s.y_train[0, 0] == 0.5


@pytest.mark.parametrize("arrays, msg", [
    ({"y_test": None, "extra": np.zeros(1)}, r"d\.npz: missing key\(s\) \['y_test'\]; an .npz data "
     r"set needs .* found \['extra', 'x_test', 'x_train', 'y_train'\]"),
    ({"y_train": np.arange(3)}, r"d\.npz: y_train has 3 rows but x_train has 4"),
    ({"x_test": np.ones((5, 3))}, r"d\.npz: y_test has 2 rows but x_test has 5"),
    ({"x_test": np.ones((2, 4))}, r"d\.npz: x_train has feature shape \(3,\) but x_test has \(4,\)"),
    ({"y_test": np.array(3)}, r"d\.npz: y_test must be a numeric array with >= 1 axis, got dtype int64 "),
    ({"x_train": np.array(["a", "b", "c", "d"])}, r"d\.npz: x_train must be a numeric array"),
    ({"x_train": np.array([None] * 4, dtype=object)}, r"d\.npz: not a readable .npz archive .*pickle"),
], ids=["missing_key", "train_length", "test_length", "feature_shape", "0d", "strings", "objects"])
def test_npz_malformed(tmp_path, arrays, msg):
    with pytest.raises(ValueError, match=msg):
        load_npz(npz(tmp_path / "d.npz", **arrays))


def test_npz_not_an_archive(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable .npz archive"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"one\.npy: not a readable .npz .*single .npy array"):
        load_npz(tmp_path / "one.npy")
    with pytest.raises(FileNotFoundError, match=r"nope\.npz: no such file"):
        load_npz(tmp_path / "nope.npz")


# ---------------------------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize("layout", [".", "FashionMNIST/raw", "fashion-mnist"])
@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4, (False, True, True, False)],
                         ids=["plain", "gzip", "mixed"])
def test_fashion_mnist(tmp_path, layout, gz):
    arrays, _ = write_fashion(tmp_path / layout, gz)
    s = load_fashion_mnist(tmp_path)
    u8 = list(arrays.values())
    assert tuple(s.x_train.shape) == (3, 1, 4, 5) and tuple(s.x_test.shape) == (2, 1, 4, 5)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert torch.equal(s.x_train, torch.from_numpy(u8[0]).float()[:, None] / 255)
    assert torch.equal(s.x_test, torch.from_numpy(u8[2]).float()[:, None] / 255)
    assert torch.equal(s.y_train, torch.from_numpy(u8[1]).long())
    assert torch.equal(s.y_test, torch.from_numpy(u8[3]).long())
    assert 0 <= s.x_train.min() and s.x_train.max() <= 1 and s.name == "fashion_mnist"


def test_fashion_mnist_missing_file_lists_searched_paths(tmp_path):
    _, paths = write_fashion(tmp_path)
    paths["t10k-labels-idx1-ubyte"].unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_fashion_mnist(tmp_path)
    msg = str(e.value)
    assert msg.startswith("t10k-labels-idx1-ubyte: not found; searched ")
    for sub in ("", "FashionMNIST/raw/", "fashion-mnist/"):
        for suffix in ("", ".gz"):
            assert f"{tmp_path}/{sub}t10k-labels-idx1-ubyte{suffix}" in msg


def test_fashion_mnist_count_mismatch(tmp_path):
    arrays = fashion_arrays()
    arrays["t10k-labels-idx1-ubyte"] = arrays["t10k-labels-idx1-ubyte"][:1]
    write_fashion(tmp_path, arrays=arrays)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte has 2 images but .*"
                                         r"t10k-labels-idx1-ubyte\.gz has 1 labels"):
        load_fashion_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("data, magic, msg", [
    (idx_bytes(np.zeros((2, 3, 3)), magic=0x0803)[:-1], IDX_IMAGES,
     r"IDX payload has 17 bytes but the header's dimensions \(2, 3, 3\) need 18 \(truncated\)"),
    (idx_bytes(np.zeros((2, 3, 3))) + b"\0", IDX_IMAGES,
     r"IDX payload has 19 bytes but .* need 18 \(trailing bytes\)"),
    (idx_bytes(np.zeros(4)), IDX_IMAGES,
     r"bad IDX magic number 0x00000801, expected 0x00000803 \(uint8, 3-D\)"),
    (idx_bytes(np.zeros((2, 2))), IDX_LABELS, r"bad IDX magic number 0x00000802, expected 0x00000801"),
    (idx_bytes(np.zeros((2, 3, 3)))[:10], IDX_IMAGES, r"truncated IDX header: 10 bytes, need 16"),
    (b"", IDX_LABELS, r"truncated IDX header: 0 bytes, need 8"),
], ids=["truncated", "trailing", "labels_as_images", "2d_as_labels", "short_header", "empty"])
def test_read_idx_malformed(tmp_path, gz, data, magic, msg):
    path = write(tmp_path / "f-ubyte", data, gz)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": " + msg):
        read_idx(path, magic)


def test_read_idx_bad_gzip(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match=r"x\.gz: cannot read"):
        read_idx(tmp_path / "x.gz", IDX_LABELS)


def test_fashion_mnist_names_the_bad_file(tmp_path):
    _, paths = write_fashion(tmp_path)
    p = paths["train-labels-idx1-ubyte"]
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-1]))
    with pytest.raises(ValueError, match=re.escape(str(p)) + r": IDX payload .* \(truncated\)"):
        load_fashion_mnist(tmp_path)


# ---------------------------------------------------------------------------------------- CIFAR-10
@pytest.mark.parametrize("layout", [".", "cifar-10-batches-py"])
def test_cifar10(tmp_path, layout):
    batches = write_cifar(tmp_path / layout)
    s = load_cifar10(tmp_path)
    assert tuple(s.x_train.shape) == (10, 3, 32, 32) and tuple(s.x_test.shape) == (3, 3, 32, 32)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64 and s.name == "cifar10"
    raw = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert torch.equal(s.x_train, torch.from_numpy(raw).float().reshape(10, 3, 32, 32) / 255)
    # row layout: 1024 red, then green, then blue values, each plane row-major
    assert s.x_test[1, 2, 0, 1] == batches["test_batch"][b"data"][1, 2048 + 1] / np.float32(255)
    assert s.y_train.tolist() == sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert s.y_test.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_str_keys(tmp_path):
    batches = {k: {key.decode(): v for key, v in b.items()} for k, b in cifar_batches().items()}
    write_cifar(tmp_path, batches)
    assert tuple(load_cifar10(tmp_path).y_test.shape) == (3,)


def test_cifar10_missing_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"data_batch_4: not found; searched {tmp_path}/data_batch_4, "
            f"{tmp_path}/cifar-10-batches-py/data_batch_4")):
        load_cifar10(tmp_path)


def _edit(batch, **changes):
    b = dict(batch)
    for k, v in changes.items():
        if v is None:
            del b[k.encode()]
        else:
            b[k.encode()] = v
    return b


@pytest.mark.parametrize("make, msg", [
    (lambda b: [b], r"a CIFAR-10 batch must be a dict, got list"),
    (lambda b: _edit(b, labels=None), r"CIFAR-10 batch lacks the key\(s\) \['labels'\], has "),
    (lambda b: _edit(b, data=b[b"data"][:, :3000]),
     r"b'data' must be uint8 of shape \(N, 3072\), got uint8 \(2, 3000\)"),
    (lambda b: _edit(b, data=b[b"data"].astype(np.float32)), r"b'data' must be uint8 .*got float32"),
    (lambda b: _edit(b, labels=[1, 2, 3]), r"b'labels' must be 2 integers .*got int64 \(3,\)"),
    (lambda b: _edit(b, labels=[0.5, 1.0]), r"b'labels' must be 2 integers .*got float64 \(2,\)"),
], ids=["not_dict", "missing_key", "shape", "dtype", "label_count", "label_dtype"])
def test_cifar10_malformed_batch(tmp_path, make, msg):
    batches = cifar_batches()
    batches["data_batch_3"] = make(batches["data_batch_3"])
    write_cifar(tmp_path, batches)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "data_batch_3")) + ": " + msg):
        load_cifar10(tmp_path)


def test_cifar10_not_a_pickle(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps(cifar_batches()["test_batch"])[:50])
    with pytest.raises(ValueError, match=r"test_batch: cannot unpickle a CIFAR-10 batch \(\w+"):
        load_cifar10(tmp_path)


# ------------------------------------------------------------------------------------- torchvision
def test_torchvision_unknown_name(tmp_path):
    with pytest.raises(ValueError, match=r"name must be one of \['CIFAR10', 'FashionMNIST'\], got 'MNIST'"):
        load_torchvision("MNIST", tmp_path)


def test_torchvision_missing_says_use_raw_loader(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails whether installed or not
    with pytest.raises(ImportError, match=r"needs torchvision, which is not installed; read the raw "
                                          r"files with noisereg\.data\.load_cifar10\(data_dir\)"):
        load_torchvision("CIFAR10", tmp_path)


def test_torchvision_matches_raw_loader(tmp_path):
    pytest.importorskip("torchvision")
    write_fashion(tmp_path / "FashionMNIST" / "raw", gz=(False,) * 4)
    got, want = load_torchvision("FashionMNIST", tmp_path), load_fashion_mnist(tmp_path)
    assert got.name == want.name and all(
        torch.equal(getattr(got, f), getattr(want, f)) for f in ("x_train", "y_train", "x_test", "y_test"))
    with pytest.raises(FileNotFoundError, match=r"torchvision found no CIFAR10 under .*no internet"):
        load_torchvision("CIFAR10", tmp_path / "empty")


# ------------------------------------------------------------------------------------------ subset
def test_subset_seeded_and_recorded():
    full = sparse_regression(n=40, seed=0)
    a, b, c = subset(full, 10, seed=5), subset(full, 10, seed=5), subset(full, 10, seed=6)
    idx = np.random.default_rng(5).permutation(40)[:10]
    assert torch.equal(a.x_train, full.x_train[idx]) and torch.equal(a.y_train, full.y_train[idx])
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.x_test is full.x_test and torch.equal(a.beta, full.beta) and isinstance(a, RegressionSplit)
    assert a.seed == 5 and a.name == full.name + "[train subset 10 of 40, seed 5]"
    assert torch.equal(subset(full, 40, seed=1).x_train.sort(0).values, full.x_train.sort(0).values)


@pytest.mark.parametrize("args, err, msg", [
    ((0,), ValueError, "n_train must be an integer >= 1, got 0"),
    ((41,), ValueError, "n_train must be <= 40 (the training points of sparse_regression(n=40,"),
    ((5, -1), ValueError, "seed must be an integer >= 0, got -1"),
    ((5.0,), TypeError, "n_train must be an integer >= 1, got float"),
], ids=["zero", "too_many", "seed", "float"])
def test_subset_errors(args, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        subset(sparse_regression(n=40), *args)


def test_subset_needs_a_split():
    with pytest.raises(TypeError, match="split must be a Split, got tuple"):
        subset((torch.zeros(3),), 1)


# -------------------------------------------------------------------------------------------- load
def test_load_dispatch(tmp_path):
    write_fashion(tmp_path / "fm")
    write_cifar(tmp_path / "c10" / "cifar-10-batches-py")
    d = load("digits", seed=1)
    assert tuple(d.x_train.shape) == (1024, 64) and d.seed == 1
    assert tuple(load("digits", n_train=100).x_train.shape) == (100, 64)
    assert load("synthetic", n_train=7, seed=2).name.startswith("sparse_regression(n=7,")
    assert load("synthetic").name.startswith("sparse_regression(n=100,")
    f = load("fashion_mnist", data_dir=tmp_path / "fm", n_train=2, seed=3)
    assert f.name == "fashion_mnist[train subset 2 of 3, seed 3]" and len(f.x_test) == 2
    assert tuple(load("cifar10", data_dir=tmp_path / "c10").x_train.shape) == (10, 3, 32, 32)
    path = npz(tmp_path / "d.npz")
    assert len(load(path).x_train) == 4 and len(load(str(path), n_train=3).x_train) == 3


@pytest.mark.parametrize("spec, kwargs, err, msg", [
    ("mnist", {}, ValueError, f"spec must be one of {list(DATASETS)} or a path ending in .npz, got 'mnist'"),
    ("cifar10", {}, ValueError, "data_dir is required for 'cifar10'"),
    (3, {}, TypeError, "spec must be a string or path, got int"),
    ("digits", {"n_train": "5"}, TypeError, "n_train must be an integer >= 1, got str"),
    ("digits", {"seed": -2}, ValueError, "seed must be an integer >= 0, got -2"),
], ids=["unknown", "no_data_dir", "spec_type", "n_train_type", "seed"])
def test_load_errors(spec, kwargs, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        load(spec, **kwargs)


# ------------------------------------------------------------------------------------------ holdout
def test_holdout_is_seeded_disjoint_and_recorded():
    full = load_digits_split(n_train=300, seed=0)
    a, b, c = holdout(full, 100, seed=3), holdout(full, 100, seed=3), holdout(full, 100, seed=4)
    perm = np.random.default_rng(3).permutation(300)
    assert torch.equal(a.x_val, full.x_train[perm[200:]]) and torch.equal(a.y_val, full.y_train[perm[200:]])
    assert torch.equal(a.x_train, full.x_train[perm[:200]]) and torch.equal(a.y_train, full.y_train[perm[:200]])
    assert torch.equal(a.x_val, b.x_val) and not torch.equal(a.x_val, c.x_val)
    assert a.x_test is full.x_test and a.name == full.name + "[validation 100 of 300, seed 3]"
    assert [n for n, _, _ in a.splits()] == ["train", "val", "test"] and [n for n, _, _ in full.splits()] == ["train", "test"]
    assert torch.equal(torch.cat([a.x_train, a.x_val]).sort(0).values, full.x_train.sort(0).values)
    moved = a.to("cpu")
    assert torch.equal(moved.x_val, a.x_val) and moved.name == a.name


@pytest.mark.parametrize("args, err, msg", [
    ((0,), ValueError, "n_val must be an integer >= 1, got 0"),
    ((40,), ValueError, "n_val must be < 40 (the training points of sparse_regression(n=40,"),
    ((5, -1), ValueError, "seed must be an integer >= 0, got -1"),
    ((5.0,), TypeError, "n_val must be an integer >= 1, got float"),
], ids=["zero", "all", "seed", "float"])
def test_holdout_errors(args, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        holdout(sparse_regression(n=40), *args)
