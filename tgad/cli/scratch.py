"""A command's temporary files live in the tgad cache, in one folder of its process, never loose in ``$TMPDIR``.

Libraries make temporaries as they are imported (wandb's ``tmp*wandb-media`` and ``tmp*wandb-artifacts``,
imported by timm even with ``--no-wandb``) and remove them only at a clean exit, so a run killed with -9 left
them in ``$TMPDIR`` for good. ``command_tempdir`` points Python's ``tempfile`` at
``<tgad cache>/tmp/.<command>.pid<pid>.<random>.partial`` for the command, removes it at the end, and first
removes the folders that killed commands left there (their process is gone). The benchmark's row work folders
go to its results folder instead (``tgad.benchmark.row_task``), healed by the next run there.

``$TMPDIR`` itself is left unchanged for child processes (Ray keeps its sockets under it, whose paths have a
length limit).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def command_tempdir(command: str) -> Iterator[Path | None]:
    """``tempfile``'s folder is this command's own in the tgad cache while the block runs (None, and the system
    one, where the cache cannot be written: the command's own checks then say so)."""
    from tgad.assets.cache import cache_dir, scratch_dir
    from tgad.generate.heal import remove_stale_partials

    root = cache_dir() / "tmp"
    with contextlib.ExitStack() as stack:
        try:
            remove_stale_partials(root, depth=1)
            folder = stack.enter_context(scratch_dir(root, command))
        except OSError as err:
            log.debug("temporaries stay in %s: %s", tempfile.gettempdir(), err)
            yield None
            return
        before = tempfile.tempdir
        tempfile.tempdir = str(folder)
        try:
            yield folder
        finally:
            tempfile.tempdir = before
