"""How the generation chain runs its stages: progress reporting and timing, Lightning kept quiet, trainers on
the requested hardware, and glibc's mmap threshold raised while the generator fits."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import time
import warnings

from tgad.hardware import Hardware

logger = logging.getLogger(__name__)


class StageReporter:
    """Receives the chain's progress; the CLI draws rich progress bars, this default only logs."""

    def start(self, stage: str, total: int | None = None) -> None:
        logger.info("stage %s: start (%s steps)", stage, total)

    def advance(self, stage: str, amount: int = 1) -> None:
        pass

    def finish(self, stage: str, seconds: float) -> None:
        logger.info("stage %s: %.1f s", stage, seconds)


class Stage:
    """Times one stage and reports its start and end."""

    def __init__(
        self, reporter: StageReporter, timings: dict[str, float], name: str, total: int | None
    ) -> None:
        self.reporter, self.timings, self.name, self.total = reporter, timings, name, total

    def __enter__(self) -> Stage:
        self.start = time.perf_counter()
        self.reporter.start(self.name, self.total)
        return self

    def __exit__(self, *exc) -> None:
        self.timings[f"{self.name}_seconds"] = round(time.perf_counter() - self.start, 3)
        if exc[0] is None:
            self.reporter.finish(self.name, self.timings[f"{self.name}_seconds"])


def advance_callback(reporter: StageReporter, stage: str, every: int = 1):
    import lightning as L

    class Advance(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            reporter.advance(stage, every)

    return Advance()


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's banners and warnings about our deliberate choices (no validation loop, a frozen codebook in
    eval mode) would break the progress bars; real warnings still pass, and ``-v`` shows the banners."""
    lightning_logger = logging.getLogger("lightning.pytorch")
    old = lightning_logger.level
    if not logger.isEnabledFor(logging.INFO):
        lightning_logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            ".*validation_step.*",
            ".*module\\(s\\) in eval mode.*",
            ".*LeafSpec.*",
            ".*num_workers.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            lightning_logger.setLevel(old)


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@contextlib.contextmanager
def generator_malloc():
    """Raise glibc's mmap threshold to 32 MB while the generator fits, when ``MALLOC_MMAP_THRESHOLD_`` fixed it.

    A fixed threshold keeps PatchCore's coreset small (ENVIRONMENT.md; the Makefile sets 8 MiB), but a low one
    (a user's 128 KiB) makes every activation above it a fresh mmap: a VarianceVQGAN cpu iteration took 1.65 s
    instead of 0.75 s at 128 KiB (measured, one thread). The setting is restored afterwards and freed memory is
    trimmed, so a detector fitted later in the same process sees the user's threshold again.
    """
    low = os.environ.get("MALLOC_MMAP_THRESHOLD_", "")
    libc = None
    if low.isdigit() and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if not libc.mallopt(M_MMAP_THRESHOLD, 32 << 20):
                libc = None
        except (OSError, AttributeError):
            libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_THRESHOLD, int(low))
            libc.malloc_trim(0)


def make_trainer(root: str, callbacks: list, hardware: Hardware, devices: int | None = None, **kwargs):
    """A quiet Lightning Trainer on ``hardware`` (resolved); ``devices=1`` for the parts that never use DDP."""
    import lightning as L

    return L.Trainer(
        **hardware.trainer_kwargs(devices),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=root,
        callbacks=callbacks,
        **kwargs,
    )
