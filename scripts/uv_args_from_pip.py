"""Print the uv options that reproduce pip's configuration (pip.conf files and PIP_* variables).

uv reads its own settings, not pip's: `make install` hands it the index URLs, find-links and constraint files pip
is configured with, so both installers see the same packages. Run with the venv's Python (any with pip).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


def uv_args(pip_config_list: str) -> list[str]:
    """``pip config list`` lines (``scope.key='v1 v2'``) -> uv options, each (option, value) once, in order."""
    pairs: list[tuple[str, str]] = []
    for line in pip_config_list.splitlines():
        name, sep, quoted = line.partition("=")
        key = name.rsplit(".", 1)[-1]
        if not sep or key not in OPTIONS:
            continue
        for value in shlex.split(shlex.split(quoted)[0] if quoted.strip() else ""):
            if key == "constraint" and not os.path.isfile(value):
                continue  # a stale constraint path would make uv fail where pip only warns
            if (OPTIONS[key], value) not in pairs:
                pairs.append((OPTIONS[key], value))
    return [part for pair in pairs for part in pair]


if __name__ == "__main__":
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    print(shlex.join(uv_args(listed)))
