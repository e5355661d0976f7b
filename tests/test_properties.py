"""Property-based checks of the command line's input handling (hypothesis, bounded examples, tiny runs):
random data arrays and random ``--set`` strings never end in a traceback; invalid data never trains; a
refused request writes nothing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from noisereg.cli import main

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

_dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint8, np.bool_])
_CORRUPTIONS = ("nan", "inf", "huge", "label_gap", "label_negative", "label_fraction", "label_2col", "label_col",
                "extra_label", "empty_test", "no_feature", "int_x", "random_x", "random_y")


def _corrupt(out, kind, draw):
    x, y = out["x_train"], out["y_train"]
    if kind in ("nan", "inf", "huge") and x.size:
        x.flat[draw(st.integers(0, x.size - 1))] = {"nan": np.nan, "inf": -np.inf, "huge": np.finfo(np.float32).max}[kind]
    elif kind == "label_gap":
        out["y_train"] = np.where(y == y.max(), y.max() + 3, y)
    elif kind == "label_negative":
        out["y_train"] = y - 1
    elif kind == "label_fraction":
        out["y_train"] = y + 0.5
    elif kind == "label_2col":
        out["y_train"] = np.stack([y, y], 1)
    elif kind == "label_col":  # (n, 1): valid, squeezed
        out["y_train"], out["y_test"] = y[:, None], out["y_test"][:, None]
    elif kind == "extra_label":
        out["y_train"] = np.concatenate([y, y[:1]])
    elif kind == "empty_test":
        out["x_test"], out["y_test"] = out["x_test"][:0], out["y_test"][:0]
    elif kind == "no_feature":
        out["x_train"], out["x_test"] = x[:, :0], out["x_test"][:, :0]
    elif kind == "int_x":
        out["x_train"], out["x_test"] = (x * 10).astype(np.int64), (out["x_test"] * 10).astype(np.int64)
    elif kind == "random_x":
        out["x_train"] = draw(hnp.arrays(draw(_dtypes), draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=6))))
    elif kind == "random_y":
        out["y_train"] = draw(hnp.arrays(draw(_dtypes), draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=12))))


@st.composite
def datasets(draw):
    """A valid data set (finite float inputs, labels 0..C-1 all present), then zero to two corruptions drawn from
    _CORRUPTIONS (some keep it valid: (n, 1) labels, integer inputs)."""
    classes = draw(st.integers(2, 4))
    n, n_test, d = draw(st.integers(classes + 2, 24)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    out = {"x_train": rng.random((n, d)).astype(np.float32), "y_train": np.arange(n) % classes,
           "x_test": rng.random((n_test, d)).astype(np.float32), "y_test": np.arange(n_test) % classes}
    for kind in draw(st.lists(st.sampled_from(_CORRUPTIONS), max_size=2)):
        _corrupt(out, kind, draw)
    return out


OUTCOMES: list[int] = []


@SETTINGS
@given(arrays=datasets())
def test_random_arrays_never_give_a_traceback_or_train_on_invalid_data(tmp_path_factory, arrays):
    tmp = tmp_path_factory.mktemp("prop")
    path = tmp / "d.npz"
    np.savez(path, **arrays)
    code = main(["run", "fig3", "--preset", "smoke", "--data", str(path), "--out", str(tmp / "o"), "--quiet",
                 "--set", "methods=gd", "--set", "epochs=1", "--set", "eval_every=1", "--set", "n_train=none",
                 "--set", "n_val=1", "--set", "hidden=4"])
    assert code in (0, 2)
    OUTCOMES.append(code)
    written = (tmp / "o" / "results.json").exists()
    assert written == (code == 0)  # a refused request writes nothing
    if code == 0:  # it trained: the data were valid
        x, y = arrays["x_train"], arrays["y_train"]
        with np.errstate(over="ignore"):
            assert x.dtype.kind in "biuf" and np.isfinite(x.astype(np.float32)).all()
        assert x.ndim >= 2 and x[0].size
        y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
        assert y.ndim == 1 and len(y) == len(x) and (y >= 0).all()


_keys = st.sampled_from(["sigmas", "seeds", "epochs", "lr", "hidden", "methods", "n_val", "n_train", "log",
                         "convention", "momentum", "batch_size", "unknown_key", "rhos", "eval_every", ""])
_texts = st.one_of(st.text(max_size=12), st.sampled_from(["0,0", "-1", "nan", "inf", "1e400", "none", "", "0.1,0.2",
                                                          "gd,layer", "true", "3.5", "1,,2", "paper", "0"]))


@SETTINGS
@given(pairs=st.lists(st.tuples(_keys, _texts), min_size=1, max_size=3), eq=st.booleans())
def test_random_set_strings_never_give_a_traceback(capsys, pairs, eq):
    argv = ["show", "fig3", "--preset", "smoke"]
    for k, v in pairs:
        argv += ["--set", f"{k}={v}" if eq else f"{k}{v}"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("noisereg: error: ")


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1"])
def test_non_finite_or_negative_sigma_is_refused(capsys, value):
    assert main(["show", "fig3", "--preset", "smoke", "--set", f"sigmas={value}"]) == 2


def test_the_random_data_both_train_and_get_refused():
    """The generator is not vacuous: across the examples above, some data trained and some was refused."""
    if OUTCOMES:
        assert {0, 2} <= set(OUTCOMES), OUTCOMES
