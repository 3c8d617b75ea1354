"""Atomic writers and safe extraction: complete results or nothing, with the user's usual permissions."""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from tgad.assets.cache import atomic_dir, atomic_file, safe_extract


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


def test_safe_extract_refuses_path_escapes(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        data = b"pwned"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="escapes"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
