"""`make install` hands uv the indexes pip is configured with (scripts/uv_args_from_pip.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "uv_args_from_pip.py"


def _module():
    spec = importlib.util.spec_from_file_location("uv_args_from_pip", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pip_config_becomes_uv_options_once_each(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    listed = "\n".join(
        [
            ":env:.find-links='/opt/wheels'",
            f"global.constraint='{constraints}'",
            "global.extra-index-url='file:///a/simple file:///b/simple'",
            "global.find-links='/opt/wheels'",  # the same value from two scopes: once
            "global.cert='/etc/ssl/certs/ca-certificates.crt'",  # not an index option: left out
            "global.index-url='https://example.org/simple'",
        ]
    )
    assert _module().uv_args(listed) == [
        "--find-links", "/opt/wheels",
        "--constraint", str(constraints),
        "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple",
        "--index-url", "https://example.org/simple",
    ]  # fmt: skip


def test_missing_constraint_file_is_left_out(tmp_path):
    listed = f"global.constraint='{tmp_path / 'gone.txt'}'"
    assert _module().uv_args(listed) == []
