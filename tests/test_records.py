"""Atomic writes (noisereg.records): the file appears whole and with the mode the umask gives a plain open()."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from noisereg.records import atomic_write_bytes, atomic_write_json, atomic_write_text
from noisereg.training.checkpoint import save_checkpoint


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=["umask022", "umask027", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.mark.parametrize("write", [
    lambda p: atomic_write_bytes(p, b"x"),
    lambda p: atomic_write_text(p, "x"),
    lambda p: atomic_write_json(p, {"a": 1.0}),
    lambda p: save_checkpoint(p, {"w": torch.zeros(2)}),
], ids=["bytes", "text", "json", "checkpoint"])
def test_atomic_writes_keep_the_umask_mode(tmp_path, umask, write):
    write(tmp_path / "f")
    (tmp_path / "plain").write_bytes(b"x")   # what open(path, "w") gives under this umask
    mode = stat.S_IMODE((tmp_path / "f").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temporary file left


def test_rewrite_keeps_the_umask_mode(tmp_path, umask):
    atomic_write_text(tmp_path / "f", "a")
    atomic_write_text(tmp_path / "f", "b")
    assert (tmp_path / "f").read_text() == "b"
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o666 & ~umask
