"""Caches that heal: what a killed or damaged run left behind is named, moved aside and rebuilt.

* ``.partial`` temporaries (``tgad.assets.cache.atomic_dir`` / ``atomic_file``) whose writer is gone are
  removed; a live writer's (its process id is in the name) are left alone, so processes may share a folder.
* An ExtraSet folder whose manifest does not load, or a cached generator fit that does not load, is renamed
  to ``<name>.damaged-<time>`` with a warning; the next request rebuilds it under the original name.
* ``complete_extra_sets`` is the one way to list the ExtraSets of a folder: it skips temporaries and
  damaged copies, so nothing downstream (reports, W&B, the histogram script) reads a half-written set.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from tgad.assets.cache import PARTIAL_SUFFIX
from tgad.generate.artifact import MANIFEST, ExtraSetError, load_manifest

logger = logging.getLogger(__name__)

DAMAGED_TAG = ".damaged-"
_PID = re.compile(r"\.pid(\d+)\.")


def damaged_path(path: Path) -> Path:
    """A free sibling name ``<name>.damaged-<YYYYmmddTHHMMSS>[-n]`` for a damaged file or folder."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    candidate, n = path.with_name(f"{path.name}{DAMAGED_TAG}{stamp}"), 1
    while os.path.lexists(candidate):
        candidate, n = path.with_name(f"{path.name}{DAMAGED_TAG}{stamp}-{n}"), n + 1
    return candidate


def move_aside(path: Path, why: str) -> Path:
    """Rename a damaged file or folder out of the way, with a one-line warning naming both paths."""
    target = damaged_path(path)
    os.replace(path, target)
    logger.warning("%s: %s; moved aside to %s, it will be rebuilt", path, why, target.name)
    return target


def _writer_alive(name: str) -> bool:
    """Whether the process that is writing temporary ``name`` still runs (False for a name without a pid)."""
    found = _PID.search(name)
    if not found:
        return False
    pid = int(found.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_partials(folder: str | Path, depth: int = 4) -> list[Path]:
    """Remove ``.*.partial`` temporaries up to ``depth`` levels under ``folder`` whose writer is gone."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for level in range(1, depth + 1):
        pattern = "/".join(["*"] * (level - 1) + [f".*{PARTIAL_SUFFIX}"])
        for path in sorted(folder.glob(pattern)):
            if not _writer_alive(path.name):
                _remove(path)
                removed.append(path)
    if removed:
        logger.warning(
            "%s: removed %d unfinished temporary file(s) left by an interrupted run", folder, len(removed)
        )
    return removed


def remove_stale_partials_of(final: str | Path) -> list[Path]:
    """Remove the temporaries a killed writer of ``final`` left beside it (``.<name>.*.partial``)."""
    final, removed = Path(final), []
    if not final.parent.is_dir():
        return removed
    for path in sorted(final.parent.glob(f".{final.name}.*{PARTIAL_SUFFIX}")):
        if not _writer_alive(path.name):
            _remove(path)
            removed.append(path)
    if removed:
        logger.warning(
            "%s: removed %d unfinished temporary copy(ies) of an interrupted run", final, len(removed)
        )
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def is_listed(folder: Path) -> bool:
    """Whether a folder name is a real ExtraSet name (not a temporary or a damaged copy)."""
    return not folder.name.startswith(".") and DAMAGED_TAG not in folder.name


def complete_extra_sets(root: str | Path, pattern: str = "*/*/*") -> list[Path]:
    """The ExtraSet folders matching ``pattern`` under ``root`` whose manifest loads, sorted."""
    out = []
    for folder in sorted(Path(root).glob(pattern)):
        if not folder.is_dir() or not is_listed(folder) or not (folder / MANIFEST).is_file():
            continue
        try:
            load_manifest(folder)
        except ExtraSetError:
            continue
        out.append(folder)
    return out


def heal_extra_sets(root: str | Path, pattern: str = "*/*/*", skip: tuple[str, ...] = ("generator",)) -> None:
    """Move aside every ExtraSet folder under ``root`` (``<kind>/<category>/<set>``) whose manifest does not
    load; folders under ``skip`` (the fit cache) are not ExtraSets."""
    root = Path(root)
    if not root.is_dir():
        return
    for folder in sorted(root.glob(pattern)):
        relative = folder.relative_to(root).parts
        if relative[0] in skip or not folder.is_dir() or not is_listed(folder):
            continue
        heal_extra_set(folder)


def heal_extra_set(folder: str | Path) -> bool:
    """Move ``folder`` aside when it is not a loadable ExtraSet; True when it was moved."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    try:
        load_manifest(folder)
    except ExtraSetError as err:
        move_aside(folder, f"ExtraSet does not load ({str(err).removeprefix(str(folder / MANIFEST) + ': ')})")
        return True
    return False


def heal_fit_file(path: str | Path) -> bool:
    """Move a cached generator fit aside when it does not load as one; True when it was moved."""
    import torch

    path = Path(path)
    if not path.is_file():
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ok = isinstance(state, dict) and isinstance(state.get("state_dict"), dict) and "config" in state
        why = "it holds no generator state_dict"
    except Exception as err:  # truncated zip, garbage bytes, unsafe pickle: all mean "refit"
        ok, why = False, f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"
    if ok:
        return False
    move_aside(path, f"cached generator fit does not load ({why})")
    return True
