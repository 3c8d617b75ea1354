"""Where tgad keeps files it makes or fetches, and the small safe-I/O helpers every asset uses."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """The tgad cache root: ``$TGAD_CACHE``, else ``$XDG_CACHE_HOME/tgad``, else ``~/.cache/tgad``."""
    if env := os.environ.get("TGAD_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tgad"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


PARTIAL_SUFFIX = ".partial"


def partial_prefix(final: Path) -> str:
    """Temporary siblings are ``.<name>.pid<pid>.<random>.partial``: the writer's process id lets a later
    run remove what a killed one left (``tgad.generate.heal``) without touching a live writer's folder."""
    return f".{final.name}.pid{os.getpid()}."


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Build a folder in a sibling temporary folder and rename it into place only if the block succeeds.

    An interrupted build never leaves ``final`` looking complete; an existing ``final`` is replaced.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(final), suffix=PARTIAL_SUFFIX, dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the user's usual mode
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def scratch_dir(folder: str | Path, name: str = "tmp") -> Iterator[Path]:
    """A temporary working folder inside ``folder``, removed when the block ends.

    Named like a temporary of this process (``.<name>.pid<pid>.<random>.partial``), so that when a run is
    killed (-9: no ``finally`` runs) the next run's healing of that folder (``tgad.generate.heal``) removes it,
    instead of it piling up in ``$TMPDIR``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = partial_prefix(folder / name)
    with tempfile.TemporaryDirectory(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=folder) as tmp:
        yield Path(tmp)


@contextmanager
def atomic_file(final: str | Path, mode: str = "w") -> Iterator:
    """Open a temporary file next to ``final``; rename it over ``final`` only when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=partial_prefix(final), suffix=PARTIAL_SUFFIX, dir=final.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the user's usual mode
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_kind(path: str | Path) -> str:
    """What stands at ``path``, for messages: "a folder", "a FIFO (named pipe)", "a socket", "a device",
    "a broken link", "a file" or "nothing" (so a FIFO is never called a folder)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "a broken link"
    try:
        mode = path.stat().st_mode
    except OSError:
        return "nothing"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a file"
