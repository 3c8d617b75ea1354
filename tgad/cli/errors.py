"""The one place that turns an error reaching the console into one red line and exit code 2.

Every ``tgad`` command runs through ``report_errors``. Known bad input (data, weights, keywords, benchmark
settings, ExtraSets, output locations) keeps its own message, which already names the file or setting and the
fix; a full disk or a read-only folder is said as such; anything else is one line that says how to see the
traceback. ``TGAD_DEBUG=1`` re-raises instead, for the traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import signal
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.text import Text

from tgad.assets.cache import file_kind
from tgad.assets.weights import AssetError, unpickling_problem
from tgad.benchmark.plan import BenchmarkError
from tgad.data.errors import DataError
from tgad.generate.artifact import ExtraSetError
from tgad.hardware import HardwareError
from tgad.models.presets import SettingError
from tgad.text.keywords import KeywordError

EXIT_USER_ERROR = 2
DEBUG_HINT = "TGAD_DEBUG=1 shows the traceback"


class UsageError(ValueError):
    """A command-line argument, environment variable or output location is unusable; the message says which
    and what to pass instead. Raised by the preflight checks before any model is built."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exception types whose message is written for the user."""
    return (
        UsageError,
        DataError,
        AssetError,
        KeywordError,
        BenchmarkError,
        ExtraSetError,
        HardwareError,
        SettingError,  # a config number out of range (a LightningCLI YAML, Python): names field and range
        FileExistsError,
        FloatingPointError,  # the generator's loss went NaN: its message says which setting to change
    )


_OS_FIXES = {
    errno.ENOSPC: "no space left on the device; free space there or choose another output folder",
    errno.EDQUOT: "disk quota exceeded; free space there or choose another output folder",
    errno.EROFS: "read-only file system; choose a writable output folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.ENOTDIR: "a path component is a file, not a folder; choose another path",
    errno.EISDIR: "is a folder where a file was expected; choose another path",
}


def one_line(text: str) -> str:
    """``text`` with its lines joined and whitespace collapsed, so a message is one console line."""
    return " ".join(str(text).split())


def describe(err: BaseException) -> str:
    """The one-line message for ``err``: its own for known bad input, a plain account of OS errors."""
    if isinstance(err, FileExistsError) and err.filename:  # os.mkdir met a file: say so, not "[Errno 17]"
        kind = file_kind(err.filename)
        return one_line(f"{err.filename}: {kind} is in the way of a folder tgad makes there; move it away")
    if isinstance(err, _user_errors()):
        return one_line(str(err))
    if isinstance(err, pickle.UnpicklingError):  # torch's text advises weights_only=False: never repeat it
        return one_line(f"a checkpoint {unpickling_problem(err)} ({DEBUG_HINT} names the file)")
    if isinstance(err, OSError) and err.errno in _OS_FIXES:
        where = err.filename or "an output file"
        return one_line(f"{where}: {_OS_FIXES[err.errno]} ({err.strerror or os.strerror(err.errno)})")
    if isinstance(err, OSError) and err.filename:
        return one_line(f"{err.filename}: {err.strerror or err}; check the file or folder ({DEBUG_HINT})")
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return one_line(f"{type(err).__name__}: {first} (unexpected; {DEBUG_HINT})")


def report_errors(run: Callable[[], int | None], err_console: Console) -> int:
    """Run a command; any error ends in one red line on stderr and exit code 2 (``TGAD_DEBUG=1`` re-raises).

    ``KeyboardInterrupt`` and ``SystemExit`` (argparse usage errors) pass through unchanged.
    """
    try:
        return int(run() or 0)
    except Exception as err:
        return print_error(err, err_console)


def print_error(err: Exception, err_console: Console) -> int:
    """Print ``err`` as one red line and return exit code 2; with ``TGAD_DEBUG=1`` re-raise it instead."""
    if os.environ.get("TGAD_DEBUG"):
        raise err
    # Text, not markup: messages hold brackets (lists of names) that rich would read as styles.
    err_console.print(Text.assemble(("error:", "red"), " ", describe(err)), highlight=False, soft_wrap=True)
    return EXIT_USER_ERROR


class Stopped(BaseException):
    """SIGTERM or SIGINT reached a running command. A BaseException, like KeyboardInterrupt, so no ``except
    Exception`` (a row's failure handler) swallows it; not a KeyboardInterrupt, which Lightning's fit turns
    into a silent ``sys.exit(1)``, while it re-raises anything else after its teardown."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise ``Stopped`` in the main thread (a second one acts as
    usual: kill, KeyboardInterrupt). Lightning's fit keeps this handler beside its own while it runs."""
    watched = (signal.SIGTERM, signal.SIGINT)

    def stop(signum: int, frame) -> None:
        for s in watched:
            signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in watched}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
