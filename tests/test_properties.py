"""Property-based checks of the command line's input handling (hypothesis, bounded examples, tiny runs):
random data arrays and random ``--set`` strings never end in a traceback; invalid data never trains; a
refused request writes nothing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from noisereg.cli import main

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint8, np.bool_])
_values = st.one_of(st.just(None), st.sampled_from([np.nan, np.inf, -1.0, 0.5, 12.0, 1e30]))


@st.composite
def datasets(draw):
    """x_train, y_train, x_test, y_test of random shapes, dtypes and values, with some invalid entries."""
    n, n_test = draw(st.integers(0, 30)), draw(st.integers(0, 8))
    feat = draw(st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple))
    out = {}
    for key, rows, shape in (("x_train", n, feat), ("x_test", n_test, feat)):
        out[key] = draw(hnp.arrays(draw(_dtypes), (rows, *shape)))
    for key, rows in (("y_train", n), ("y_test", n_test)):
        extra = draw(st.sampled_from([(), (), (1,), (2,)]))
        y = draw(hnp.arrays(draw(_dtypes), (rows + draw(st.sampled_from([0, 0, 0, 1])), *extra),
                            elements=None))
        out[key] = y
    poison = draw(_values)
    if poison is not None and out["x_train"].size and out["x_train"].dtype.kind == "f":
        out["x_train"].flat[0] = poison
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
        assert x.dtype.kind in "biuf" and np.isfinite(x.astype(np.float64)).all() and x.ndim >= 2 and x[0].size
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
