"""Atomic writers and safe extraction: complete results or nothing, with the user's usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from tgad.assets.cache import atomic_dir, atomic_file


def test_atomic_writes_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "a.txt") as handle:
            handle.write("x")
        with atomic_dir(tmp_path / "d") as folder:
            (folder / "f").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o755


def test_interrupted_atomic_writes_leave_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "a.txt") as handle:
        handle.write("half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as folder:
        (folder / "f").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
