"""A test image trained on, found by its content: a copy or a hard link under another name has another real
path, so comparing paths alone let ``ln test/good/000.png train/good/leak.png`` become a shot.

Files are compared by size first (a stat), and only files whose size occurs on both sides are hashed
(SHA-256 of the bytes), each once per process while its size, mtime and inode stay the same: a benchmark
sets up the same category many times.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tgad.assets.cache import sha256_file
from tgad.data.errors import DataError

_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, cached by (real path, size, mtime, inode)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def same_content(train: Iterable[str | Path], test: Iterable[str | Path]) -> tuple[str, str] | None:
    """The first (train file, test file) pair with identical bytes, or None."""
    test_by_size: dict[int, list[str]] = {}
    for path in test:
        test_by_size.setdefault(os.stat(path).st_size, []).append(str(path))
    digests: dict[int, dict[str, str]] = {}  # size -> digest -> test file, hashed on first need
    for path in train:
        size = os.stat(path).st_size
        if size not in test_by_size:
            continue
        if size not in digests:
            digests[size] = {}
            for other in test_by_size[size]:
                digests[size].setdefault(file_digest(other), other)
        if hit := digests[size].get(file_digest(path)):
            return str(path), hit
    return None


def check_no_leak(
    train: Iterable[str | Path], test: Iterable[str | Path], what: str = "a training image"
) -> None:
    """Raise a ``DataError`` naming both files when a training file has the bytes of a test file."""
    if pair := same_content(train, test):
        raise DataError(
            f"{pair[0]}: {what} has the same content as the test image {pair[1]} (a copy or a link); a test "
            "image must never be trained on: delete it from the training images"
        )
