"""``--set KEY=VALUE`` overrides of the generator's settings (IntegratorConfig fields) for ``tgad generate`` and
``tgad benchmark``, so a researcher sweeps tau, patch fraction, rounds, M, q or the scorer's weights without
editing code. Values are read as YAML scalars (``2`` int, ``0.5`` float, ``true`` bool, else a string)."""

from __future__ import annotations

import argparse

import yaml

from tgad.cli.errors import UsageError
from tgad.models.integrator.config import IntegratorConfig


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a generator setting (an IntegratorConfig field: tau, patch_fraction, rounds, "
        "samples_per_round, keep_fraction, update_steps, defect_weight, calibrate_tau, ...); repeatable",
    )
    parser.add_argument(
        "--vqgan-iterations", type=int, default=None, metavar="N", help="VarianceVQGAN fit iterations"
    )


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """``["tau=2", "calibrate_tau=true"]`` -> ``{"tau": 2.0, "calibrate_tau": True}``. A bad pair is a
    ``UsageError`` naming it (unknown key, wrong type, or a value the settings refuse), before any compute."""
    defaults = IntegratorConfig()
    fields = defaults.flat()  # by flat name: tau, defect_weight, ... (config.py groups them)
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"--set {pair!r}: write KEY=VALUE, e.g. --set tau=2")
        if key not in fields:
            raise UsageError(
                f"--set {pair!r}: {key!r} is not a generator setting; choose from {sorted(fields)}"
            )
        value = yaml.safe_load(text) if text.strip() else None
        expected = type(fields[key])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(
                f"--set {pair!r}: {key} takes {'an' if expected is int else 'a'} {expected.__name__}, "
                f"e.g. {key}={fields[key]}"
            )
        out[key] = value
    try:
        defaults.override(**out)
    except ValueError as err:
        raise UsageError(f"--set {' '.join(pairs)}: {err}") from err
    return out
