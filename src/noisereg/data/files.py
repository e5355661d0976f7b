"""Data sets read from files: any ``.npz``, Fashion-MNIST's IDX files, CIFAR-10's python batches.

Nothing is downloaded (runs have no internet): copy the files into a directory and pass it as
``data_dir``, or let :func:`find_data_dir` look in ``$NOISEREG_DATA_DIR`` and, for Fashion-MNIST,
where Debian's package ``dataset-fashion-mnist`` installs it (:data:`DEBIAN_FASHION_DIR`). The
Fashion-MNIST files are checked against the SHA-256 of the official files' decompressed bytes
(:data:`FASHION_SHA256`). Images become float32 in [0, 1] (``uint8 / 255``) in (n, C, H, W) and labels int64;
no standardisation (per-channel mean/std) is applied. Files that hold no randomness get
``seed = 0``; :func:`subset` draws a seeded subset of the training points and :func:`holdout` a seeded
validation split out of them, each recorded in the name.
Every error about a file names the file and what is wrong with it; it is a
:class:`noisereg.errors.UserError` (a missing file: :class:`DataFileNotFound`, also a FileNotFoundError).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from noisereg.data.embedded import Split, load_digits_split, load_fashion_mnist_subset
from noisereg.data.synthetic import check_int, sparse_regression
from noisereg.errors import UserError

PathLike = str | os.PathLike


class DataFileNotFound(UserError, FileNotFoundError):
    """A data file that is not there: a user error (one line on the command line) and a FileNotFoundError."""

DATASETS = ("digits", "fashion_mnist", "fashion_mnist_subset", "cifar10", "synthetic", "standin:fashion_mnist",
            "standin:cifar10")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801  # uint8 (0x08), 3 resp. 1 dimensions
_FASHION_DIRS = (".", "FashionMNIST/raw", "fashion-mnist")
_CIFAR_DIRS = (".", "cifar-10-batches-py")
DATA_DIR_ENV = "NOISEREG_DATA_DIR"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's (and Ubuntu's) package ``dataset-fashion-mnist`` installs the four official files."""
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
"""SHA-256 of each official Fashion-MNIST file's *decompressed* bytes (computed from Debian's package
``dataset-fashion-mnist`` 0.0~git20200523.55506a9-1). Debian's ``.gz`` files carry other gzip headers than
the official downloads, whose md5s are train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d, train-labels
25c81989df183df01b3e8a0aad5dffbe, t10k-images bef4ecab320f06d8554ea6380940ec79, t10k-labels
bb300cfdad3c16e7a12a480ee83cd310; the deflate streams, hence the decompressed bytes, are the same."""
FASHION_COUNTS = {"train": 60000, "t10k": 10000}
FASHION_HELP = ("install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist, or "
                "apt-get download it and dpkg-deb -x it), or copy the four official files from "
                "https://github.com/zalandoresearch/fashion-mnist into a directory and pass --data-dir DIR "
                f"or set {DATA_DIR_ENV}=DIR")
_TORCHVISION = {"FashionMNIST": ("fashion_mnist", "load_fashion_mnist"),
                "CIFAR10": ("cifar10", "load_cifar10")}


def load_npz(path: PathLike) -> Split:
    """Any data set stored as ``np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)``.

    Inputs become float32. Targets become int64 when both ``y_train`` and ``y_test`` hold integers
    (an integer or bool dtype, or floats that are all whole numbers), else float32 (regression).
    The file is read with ``allow_pickle=False``: object arrays are refused.

    Args:
        path: the ``.npz`` file.

    Returns:
        A :class:`Split` named ``npz(<path>)`` with ``seed = 0``.

    Raises:
        DataFileNotFound (a FileNotFoundError): ``path`` is not a file.
        UserError: the file is not a readable ``.npz`` archive, lacks a key, holds a 0-d or
            non-numeric array, ``x_*`` and ``y_*`` differ in length, or ``x_train`` and
            ``x_test`` differ in their feature shape.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFound(f"{path}: no such file")
    found, a = _read_npz(path)
    missing = [k for k in _NPZ_KEYS if k not in a]
    if missing:
        raise UserError(f"{path}: missing key(s) {missing}; an .npz data set needs {list(_NPZ_KEYS)}"
                         f", found {sorted(found)}")
    for k in _NPZ_KEYS:
        if a[k].ndim == 0 or a[k].dtype.kind not in "biuf":
            raise UserError(f"{path}: {k} must be a numeric array with >= 1 axis, got dtype "
                             f"{a[k].dtype} and shape {a[k].shape}")
    for s in ("train", "test"):
        if len(a[f"y_{s}"]) != len(a[f"x_{s}"]):
            raise UserError(f"{path}: y_{s} has {len(a[f'y_{s}'])} rows but x_{s} has "
                             f"{len(a[f'x_{s}'])}")
    if a["x_train"].shape[1:] != a["x_test"].shape[1:]:
        raise UserError(f"{path}: x_train has feature shape {a['x_train'].shape[1:]} but x_test "
                         f"has {a['x_test'].shape[1:]}")
    y_int = all(_integer_valued(a[k]) for k in ("y_train", "y_test"))
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf: refused as non-finite later
        x = [torch.from_numpy(a[k].astype(np.float32)) for k in ("x_train", "x_test")]
        y = [torch.from_numpy(a[k].astype(np.int64 if y_int else np.float32)) for k in ("y_train", "y_test")]
    return Split(x[0], y[0], x[1], y[1], name=f"npz({path})", seed=0)


def _read_npz(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """The archive's keys, and its arrays among ``_NPZ_KEYS`` (others are not read)."""
    if not zipfile.is_zipfile(path):
        head = path.read_bytes()[:6]
        what = "a single .npy array" if head.startswith(b"\x93NUMPY") else "not a zip archive"
        raise UserError(f"{path}: not a readable .npz archive of numeric arrays ({what}; write one with "
                        "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...))")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise UserError("a single .npy array, not an .npz archive")
        with loaded:
            return loaded.files, {k: loaded[k] for k in _NPZ_KEYS if k in loaded.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not a readable .npz archive of numeric arrays ({e})") from e


def _integer_valued(y: np.ndarray) -> bool:
    """Integers, or floats that are all whole numbers within int64's range."""
    if y.dtype.kind in "bi" or (y.dtype.kind == "u" and (y.size == 0 or int(y.max()) < 2**63)):
        return True
    return y.dtype.kind == "f" and bool(np.all(np.isfinite(y)) and np.all(y == np.round(y))
                                        and np.all(np.abs(y) < 2.0**62))


def read_idx(path: PathLike, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if its name ends in ``.gz``).

    The format (http://yann.lecun.com/exdb/mnist/): a big-endian uint32 magic number
    ``0x000008NN`` (``08`` = uint8, ``NN`` = number of dimensions), one big-endian uint32 per
    dimension, then the values, row-major.

    Args:
        path: the file.
        magic: the expected magic number, e.g. :data:`IDX_IMAGES` or :data:`IDX_LABELS`.

    Returns:
        A read-only uint8 array with the header's dimensions.

    Raises:
        UserError: the file cannot be read or decompressed, has another magic number, a short
            header, or a payload whose length differs from the product of the dimensions.
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path}: cannot read ({e})") from e
    ndim, header = magic & 0xFF, 4 + 4 * (magic & 0xFF)
    got = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and got != magic:
        raise UserError(f"{path}: bad IDX magic number 0x{got:08x}, expected 0x{magic:08x} "
                         f"(uint8, {ndim}-D)")
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header: {len(data)} bytes, need {header}")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size, expected = len(data) - header, math.prod(dims)
    if size != expected:
        raise UserError(f"{path}: IDX payload has {size} bytes but the header's dimensions {dims} "
                         f"need {expected} ({'truncated' if size < expected else 'trailing bytes'})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(data_dir: PathLike, name: str, subdirs: tuple[str, ...], suffixes: tuple[str, ...],
          how: str = "copy the file into one of these") -> Path:
    searched = [Path(data_dir) / sub / (name + s) for sub in subdirs for s in suffixes]
    for p in searched:
        if p.is_file():
            return p
    raise DataFileNotFound(f"{name}: not found; searched {', '.join(map(str, searched))} "
                            f"(nothing is downloaded: {how})")


def idx_sha256(array: np.ndarray, magic: int) -> str:
    """SHA-256 (hex) of the IDX file that holds ``array``: the bytes :func:`read_idx` read, decompressed.

    The header is the big-endian ``magic`` and dimensions, so a file read without error hashes to
    the same value as the file itself.
    """
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return hashlib.sha256(header + np.ascontiguousarray(array).tobytes()).hexdigest()


def fashion_mnist_dirs(data_dir: PathLike | None = None) -> list[Path]:
    """The directories :func:`load_fashion_mnist` searches, in order (each with its subfolders
    ``FashionMNIST/raw`` and ``fashion-mnist``).

    An explicit ``data_dir`` is searched alone. Without one: ``$NOISEREG_DATA_DIR`` (when set),
    then Debian's :data:`DEBIAN_FASHION_DIR`.
    """
    if data_dir is not None:
        return [Path(data_dir)]
    env = os.environ.get(DATA_DIR_ENV)
    return ([Path(env)] if env else []) + [DEBIAN_FASHION_DIR]


def find_fashion_mnist(data_dir: PathLike | None = None) -> tuple[Path, dict[str, Path]] | None:
    """``(directory, {file name: path})`` of the first of :func:`fashion_mnist_dirs` holding all four files,
    or None."""
    return next(((d, f) for d in fashion_mnist_dirs(data_dir) if (f := _fashion_files(d)) is not None), None)


def _fashion_files(data_dir: Path) -> dict[str, Path] | None:
    """The four files under ``data_dir`` (or its subfolders), or None if one is missing."""
    found = {}
    for name in FASHION_SHA256:
        paths = [data_dir / sub / (name + s) for sub in _FASHION_DIRS for s in ("", ".gz")]
        found[name] = next((p for p in paths if p.is_file()), None)
    return None if None in found.values() else found


def load_fashion_mnist(data_dir: PathLike | None = None, verify: bool | None = None) -> Split:
    """Fashion-MNIST (60,000 training, 10,000 test images of 28x28) from its four IDX files.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``, each plain or gzipped (``.gz``), from a directory or its
    subfolders ``FashionMNIST/raw`` (torchvision's layout) and ``fashion-mnist``. The directory is
    ``data_dir``; without one, the first of :func:`fashion_mnist_dirs` that holds all four files
    (``$NOISEREG_DATA_DIR``, then Debian's ``/usr/share/datasets/fashion-mnist``). The image size is
    taken from the header. Pixels are scaled to [0, 1]; nothing is standardised.

    Each file is checked against :data:`FASHION_SHA256` (the official files' decompressed bytes):
    always with ``verify=True``, never with ``verify=False`` (MNIST's files have the same names and
    format and load that way), and with ``verify=None`` (default) when the file holds the official
    number of items (60,000 or 10,000), so a full-size file is the official one and smaller files
    (tests, excerpts) load unchecked.

    Args:
        data_dir: the directory to search alone (default: search, see above).
        verify: True, False or None (default), see above.

    Returns:
        A :class:`Split` with ``seed = 0``, named ``fashion_mnist`` (with an explicit ``data_dir``) or
        ``fashion_mnist(<directory>)`` (found by searching): ``x_*`` float32 (n, 1, H, W), ``y_*``
        int64 (n,).

    Raises:
        DataFileNotFound (a FileNotFoundError): a file is in none of the places searched (one line
            listing them and how to get the files).
        UserError: a file is malformed (see :func:`read_idx`), fails its checksum, or an image file
            and its label file hold different numbers of items.
    """
    if verify not in (None, True, False):
        raise TypeError(f"verify must be True, False or None, got {verify!r}")
    if data_dir is not None:
        files = {name: _find(data_dir, name, _FASHION_DIRS, ("", ".gz"), f"to get the files, {FASHION_HELP}")
                 for name in FASHION_SHA256}
        name = "fashion_mnist"
    else:
        found = find_fashion_mnist()
        if found is None:
            env = os.environ.get(DATA_DIR_ENV)
            where = ([f"{DATA_DIR_ENV}={env} (and its fashion-mnist/ and FashionMNIST/raw/)"] if env
                     else [f"{DATA_DIR_ENV} (not set)"]) + [str(DEBIAN_FASHION_DIR)]
            raise DataFileNotFound(f"fashion_mnist: its four files (train-images-idx3-ubyte[.gz], ...) are not in "
                                   f"{' or '.join(where)}; to get them, {FASHION_HELP}")
        name, files = f"fashion_mnist({found[0]})", found[1]
    parts = []
    for prefix in ("train", "t10k"):
        img_path, lab_path = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
        images, labels = read_idx(img_path, IDX_IMAGES), read_idx(lab_path, IDX_LABELS)
        if len(images) != len(labels):
            raise UserError(f"{img_path} has {len(images)} images but {lab_path} has "
                             f"{len(labels)} labels")
        for path, array, magic in ((img_path, images, IDX_IMAGES), (lab_path, labels, IDX_LABELS)):
            if verify or (verify is None and len(array) == FASHION_COUNTS[prefix]):
                want = FASHION_SHA256[path.name.removesuffix(".gz")]
                if (got := idx_sha256(array, magic)) != want:
                    raise UserError(f"{path}: not the official Fashion-MNIST file (SHA-256 of its decompressed "
                                    f"bytes {got}, expected {want}); MNIST or other IDX files load with "
                                    "noisereg.data.load_fashion_mnist(dir, verify=False)")
        parts += [torch.from_numpy(images[:, None].astype(np.float32) / 255),
                  torch.from_numpy(labels.astype(np.int64))]
    return Split(*parts, name=name, seed=0)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as e:  # a damaged pickle can raise almost any exception type
        raise UserError(f"{path}: cannot unpickle a CIFAR-10 batch ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise UserError(f"{path}: a CIFAR-10 batch must be a dict, got {type(batch).__name__}")
    # Python 2 pickles (the official files) read with bytes keys; accept str keys as well.
    get = {k.decode(errors="replace") if isinstance(k, bytes) else k: v for k, v in batch.items()}.get
    missing = [k for k in ("data", "labels") if get(k) is None]
    if missing:
        raise UserError(f"{path}: CIFAR-10 batch lacks the key(s) {missing}, has "
                         f"{sorted(map(repr, batch))}")
    data, labels = np.asarray(get("data")), np.asarray(get("labels"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {data.dtype} "
                         f"{data.shape}")
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise UserError(f"{path}: b'labels' must be {len(data)} integers (one per row of b'data'), "
                         f"got {labels.dtype} {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(data_dir: PathLike) -> Split:
    """CIFAR-10 (50,000 training, 10,000 test images of 3x32x32) from its python batches.

    Reads ``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` from ``data_dir`` or
    ``data_dir/cifar-10-batches-py`` (the unpacked ``cifar-10-python.tar.gz``, also torchvision's
    layout). Each is a pickled dict with ``b"data"``, uint8 (N, 3072) holding the red, green and
    blue 32x32 planes of each image, and ``b"labels"``, N integers. Pixels are scaled to [0, 1];
    nothing is standardised.

    .. warning::
        The batches are Python pickles (the format CIFAR-10 ships in), and unpickling can run
        arbitrary code: only point ``data_dir`` at files you trust.

    Args:
        data_dir: the directory to search.

    Returns:
        A :class:`Split` named ``cifar10`` with ``seed = 0``: ``x_*`` float32 (n, 3, 32, 32),
        ``y_*`` int64 (n,).

    Raises:
        DataFileNotFound (a FileNotFoundError): a batch is in none of the places searched (the message lists them).
        UserError: a batch cannot be unpickled, is not a dict, lacks ``b"data"`` or
            ``b"labels"``, or has the wrong dtype or shapes.
    """
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = [_read_cifar_batch(_find(data_dir, n, _CIFAR_DIRS, ("",))) for n in names]
    x_train = np.concatenate([b[0] for b in batches[:5]]).astype(np.float32) / 255
    y_train = np.concatenate([b[1] for b in batches[:5]])
    x_test, y_test = batches[5][0].astype(np.float32) / 255, batches[5][1]
    return Split(*map(torch.from_numpy, (x_train, y_train, x_test, y_test)), name="cifar10", seed=0)


def load_torchvision(name: str, data_dir: PathLike) -> Split:
    """Fashion-MNIST or CIFAR-10 through ``torchvision.datasets`` (``download=False``).

    The same data, scaling and names as :func:`load_fashion_mnist` and :func:`load_cifar10`, which
    read the same directory layouts without torchvision.

    Args:
        name: ``"FashionMNIST"`` or ``"CIFAR10"``.
        data_dir: torchvision's ``root``.

    Returns:
        A :class:`Split` as from the raw-file loader.

    Raises:
        UserError: ``name`` is not one of the two.
        ImportError: torchvision is not installed.
        DataFileNotFound (a FileNotFoundError): torchvision finds no data under ``data_dir``.
    """
    if name not in _TORCHVISION:
        raise UserError(f"name must be one of {sorted(_TORCHVISION)}, got {name!r}")
    short, raw_loader = _TORCHVISION[name]
    try:
        import torchvision
    except ImportError as e:
        raise ImportError(f"load_torchvision needs torchvision, which is not installed; read the "
                          f"raw files with noisereg.data.{raw_loader}(data_dir) instead") from e
    parts = []
    for train in (True, False):
        try:
            ds = getattr(torchvision.datasets, name)(str(data_dir), train=train, download=False)
        except RuntimeError as e:  # torchvision: "Dataset not found. You can use download=True ..."
            raise DataFileNotFound(f"torchvision found no {name} under {data_dir} (downloads are "
                                    f"off: no internet): {e}") from e
        x = torch.as_tensor(np.asarray(ds.data))
        x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)  # (n, H, W) or (n, H, W, C)
        parts += [x.contiguous().float() / 255, torch.as_tensor(ds.targets, dtype=torch.int64)]
    return Split(*parts, name=short, seed=0)


def subset(split: Split, n_train: int, seed: int = 0) -> Split:
    """A seeded random subset of the training points (the test points are kept).

    The indices are the first ``n_train`` of ``np.random.default_rng(seed).permutation(n)``; the
    result's name gets ``[train subset {n_train} of {n}, seed {seed}]`` and its ``seed`` is
    ``seed``. Other fields (e.g. ``beta`` of a regression split) are kept.

    Args:
        split: the data.
        n_train: training points to keep, 1 <= n_train <= n.
        seed: integer >= 0 (default 0).

    Returns:
        A split of the same class.

    Raises:
        TypeError: ``split`` is not a :class:`Split`, or ``n_train``/``seed`` is not an integer.
        UserError: ``n_train`` or ``seed`` is out of range.

    Example:
        >>> from noisereg.data import sparse_regression
        >>> subset(sparse_regression(n=50), 10, seed=1).name
        'sparse_regression(n=50,d=10,k=3,noise=0.1,n_test=1000,seed=0)[train subset 10 of 50, seed 1]'
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a Split, got {type(split).__name__}")
    n_train, seed, total = check_int("n_train", n_train, 1), check_int("seed", seed, 0), len(split.x_train)
    if n_train > total:
        raise UserError(f"n_train must be <= {total} (the training points of {split.name}), "
                         f"got {n_train}")
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(total)[:n_train])
    return dataclasses.replace(split, x_train=split.x_train[idx], y_train=split.y_train[idx], seed=seed,
                               name=f"{split.name}[train subset {n_train} of {total}, seed {seed}]")


def holdout(split: Split, n_val: int, seed: int = 0) -> Split:
    """Hold ``n_val`` of the training points out as a validation split (``x_val``, ``y_val``).

    The validation points are the last ``n_val`` of ``np.random.default_rng(seed).permutation(n)``
    over the ``n`` training points, the training points the others (in permutation order); the
    test points are kept. The name gets ``[validation {n_val} of {n}, seed {seed}]``.

    Args:
        split: the data (training points only are used).
        n_val: validation points, 1 <= n_val < n.
        seed: integer >= 0 (default 0).

    Raises:
        TypeError: ``split`` is not a :class:`Split`, or ``n_val``/``seed`` is not an integer.
        UserError: ``n_val`` leaves no training point, or ``seed`` is negative.

    Example:
        >>> from noisereg.data import load_digits_split
        >>> s = holdout(load_digits_split(n_train=1280), 256)
        >>> tuple(s.x_train.shape), tuple(s.x_val.shape), tuple(s.x_test.shape)
        ((1024, 64), (256, 64), (517, 64))
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a Split, got {type(split).__name__}")
    n_val, seed, total = check_int("n_val", n_val, 1), check_int("seed", seed, 0), len(split.x_train)
    if n_val >= total:
        raise UserError(f"n_val must be < {total} (the training points of {split.name}), got {n_val}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(total))
    tr, va = perm[:total - n_val], perm[total - n_val:]
    return dataclasses.replace(split, x_train=split.x_train[tr], y_train=split.y_train[tr],
                               x_val=split.x_train[va], y_val=split.y_train[va],
                               name=f"{split.name}[validation {n_val} of {total}, seed {seed}]")


def standin(name: str, seed: int = 0, n_train: int | None = None, n_test: int | None = None) -> Split:
    """Random data with the shapes and sizes of ``name`` (uniform pixels, uniform labels).

    For timing the paper presets without the real files; accuracy on it is meaningless.
    ``n_train`` / ``n_test`` default to the real sizes (60k/10k, 50k/10k).

    Example:
        >>> tuple(standin("fashion_mnist", n_train=8, n_test=4).x_train.shape)
        (8, 1, 28, 28)
    """
    shapes = {"fashion_mnist": ((1, 28, 28), 60000, 10000), "cifar10": ((3, 32, 32), 50000, 10000)}
    if name not in shapes:
        raise UserError(f"standin name must be one of {sorted(shapes)}, got {name!r}")
    shape, n_tr, n_te = shapes[name]
    n_tr, n_te = n_train or n_tr, n_test or n_te
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n_tr, *shape, generator=g), torch.randint(0, 10, (n_tr,), generator=g),
                 torch.rand(n_te, *shape, generator=g), torch.randint(0, 10, (n_te,), generator=g),
                 name=f"standin:{name}(random, seed={seed})", seed=seed)


def load(spec: PathLike, data_dir: PathLike | None = None, n_train: int | None = None,
         seed: int = 0) -> Split:
    """Load a data set by name or ``.npz`` path (for the command line).

    ==========================  ==============================================================
    ``spec``                    data
    ==========================  ==============================================================
    ``"digits"``                :func:`load_digits_split` (``n_train`` default 1024, ``seed``)
    ``"synthetic"``             :func:`sparse_regression` (``n = n_train``, seed ``seed``)
    ``"fashion_mnist"``         :func:`load_fashion_mnist` from ``data_dir`` (None: searched)
    ``"fashion_mnist_subset"``  :func:`load_fashion_mnist_subset`: real images in the package
    ``"cifar10"``               :func:`load_cifar10` from ``data_dir``
    a path ending in ``.npz``   :func:`load_npz`
    ``"standin:NAME"``          random data of the shapes of NAME (:func:`standin`), to time
                                paper presets where the real files are absent
    ==========================  ==============================================================

    For the last five, ``n_train`` (if given) takes a :func:`subset` with ``seed``.

    Args:
        spec: a name above or a path ending in ``.npz``.
        data_dir: the directory of Fashion-MNIST's or CIFAR-10's files (for Fashion-MNIST, None
            searches ``$NOISEREG_DATA_DIR`` and Debian's location, see :func:`load_fashion_mnist`).
        n_train: training points (None: all, or the loader's default).
        seed: integer >= 0 (default 0).

    Returns:
        A :class:`Split`.

    Raises:
        TypeError: ``spec`` is not a string or path, or ``n_train``/``seed`` is not an integer.
        UserError: ``spec`` is unknown, ``data_dir`` is missing where needed, or a value is out
            of range; and the errors of the loader.

    Example:
        >>> load("synthetic", n_train=20, seed=3).name
        'sparse_regression(n=20,d=10,k=3,noise=0.1,n_test=1000,seed=3)'
    """
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string or path, got {type(spec).__name__}")
    seed = check_int("seed", seed, 0)
    n_train = None if n_train is None else check_int("n_train", n_train, 1)
    if spec == "digits":
        return load_digits_split(seed=seed) if n_train is None else load_digits_split(n_train, seed)
    if spec == "synthetic":
        return sparse_regression(seed=seed) if n_train is None else sparse_regression(n_train, seed=seed)
    if spec.endswith(".npz"):
        split = load_npz(spec)
    elif spec.startswith("standin:") and spec[8:] in ("fashion_mnist", "cifar10"):
        return standin(spec[8:], seed=seed, n_train=n_train)
    elif spec == "fashion_mnist_subset":
        split = load_fashion_mnist_subset()
    elif spec == "fashion_mnist":
        split = load_fashion_mnist(data_dir)
    elif spec == "cifar10":
        if data_dir is None:
            raise UserError(f"data_dir is required for {spec!r}: the directory holding its files "
                             "(nothing is downloaded)")
        split = load_cifar10(data_dir)
    else:
        raise UserError(f"spec must be one of {list(DATASETS)} or a path ending in .npz, got {spec!r}")
    return split if n_train is None else subset(split, n_train, seed)
