"""σ schedules (noisereg.schedules): the one definition the experiments, the loop and the callbacks use."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import noisereg as nr
from noisereg.schedules import SIGMA_SCHEDULES, SigmaSchedule, sigma_factor
from noisereg.training.loop import sigma_at
from noisereg.training.settings import TrainSettings


@pytest.mark.parametrize("name,t,factor,expected", [
    ("constant", 0.3, 2.0, 1.0), ("linear", 0.25, 2.0, 0.75), ("cosine", 0.5, 2.0, 0.5), ("cosine", 1.0, 2.0, 0.0),
    ("cosine_up", 0.0, 3.0, 1.0), ("cosine_up", 0.5, 3.0, 2.0), ("cosine_up", 1.0, 3.0, 3.0),
    ("linear", 1.7, 2.0, 0.0), ("linear", -1.0, 2.0, 1.0),   # t clamped to [0, 1]
])
def test_factors_against_their_formulas(name, t, factor, expected):
    assert sigma_factor(name, t, factor) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("name", list(SIGMA_SCHEDULES))
def test_the_training_loop_uses_the_public_schedule(name):
    spec = TrainSettings(epochs=8, lr=0.1, sigma_schedule=name, sigma_factor=3.0).spec(method="layer", sigma=0.2, seed=0)
    schedule = nr.sigma_schedule(name, 0.2, total=8, factor=3.0)
    assert [sigma_at(spec, e) for e in range(8)] == [schedule(e) for e in range(8)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(name=st.sampled_from(list(SIGMA_SCHEDULES)), sigma=st.floats(0, 10), total=st.integers(1, 1000),
       factor=st.floats(0, 10), step=st.integers(0, 2000))
def test_schedules_stay_between_their_ends(name, sigma, total, factor, step):
    s = nr.sigma_schedule(name, sigma, total=total, factor=factor)
    lo, hi = (min(1.0, factor), max(1.0, factor)) if name == "cosine_up" else (0.0, 1.0)
    assert sigma * lo - 1e-12 <= s(step) <= sigma * hi + 1e-12
    assert s(step) == s(min(step, total))   # after the end the last σ stays


@settings(max_examples=40, deadline=None, derandomize=True)
@given(name=st.one_of(st.sampled_from(list(SIGMA_SCHEDULES)), st.text(max_size=8)),
       sigma=st.one_of(st.floats(allow_nan=True), st.integers(-2, 2)),
       total=st.one_of(st.integers(-2, 3), st.floats(0, 3), st.booleans()),
       factor=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 3)))
def test_arguments_are_checked_in_one_line(name, sigma, total, factor):
    valid_name = name in SIGMA_SCHEDULES
    valid_factor = not isinstance(factor, bool) and math.isfinite(factor) and factor >= 0
    valid_sigma = math.isfinite(sigma) and sigma >= 0
    valid_total = isinstance(total, int) and not isinstance(total, bool) and total >= 1
    if valid_name and valid_factor and valid_sigma and valid_total:
        assert SigmaSchedule(name, sigma, total, factor)(0) == pytest.approx(sigma)
        return
    with pytest.raises((ValueError, TypeError)) as err:
        nr.sigma_schedule(name, sigma, total=total, factor=factor)
    message = str(err.value)
    assert "\n" not in message and " must be " in message and ", got " in message
    if not valid_name:
        assert message.startswith("sigma_schedule must be one of ('constant', 'linear', 'cosine', 'cosine_up')")
