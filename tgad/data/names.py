"""Names that become one folder: a category under a dataset root, a results name under ``--results-dir``.

Such a value is joined to a path (``root / category``, ``results / dataset / name``), so a separator, ``..`` or
an absolute path would walk out of the folder it is meant to stay in (``--categories ../../tmp/x`` wrote
outside the results folder and into the dataset). Only a single, plain folder name passes.
"""

from __future__ import annotations

import os


def folder_name_problem(name: str) -> str | None:
    """Why ``name`` is not one plain folder name (None when it is)."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return f"is {name!r}"
    separators = {"/", "\\", os.sep, *(c for c in (os.altsep,) if c)}
    if any(s in name for s in separators):
        return "holds a path separator (absolute paths and '../' are refused)"
    if "\x00" in name:
        return "holds a NUL byte"
    if name != name.strip():
        return "starts or ends with white space"
    return None
