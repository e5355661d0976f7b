"""Shared test settings: markers that skip slow and GPU checks with a reason."""

import os

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    slow_ok = os.environ.get("NOISEREG_SLOW") == "1"
    for item in items:
        if "slow" in item.keywords and not slow_ok:
            item.add_marker(pytest.mark.skip(reason="slow check; run with NOISEREG_SLOW=1"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)"))


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (the runs' own default), the caller's count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
