"""Named presets of the models' frozen config dataclasses, one lookup for all three (VarianceVQGAN, Integrator,
PromptSelector): a preset name plus field overrides, with one-line errors that name the class and its file;
and the range check every config runs in ``__post_init__``, so a NaN, an infinity or an out-of-range number is
refused wherever a config is built (``--set``, a LightningCLI YAML, Python) before any compute."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, fields, replace
from typing import Any, TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A setting's value is outside its range (or not a finite number); the message names the field, the
    range and the preset's value."""


def from_preset(cls: type[T], presets: Mapping[str, T], name: str, overrides: Mapping[str, Any]) -> T:
    """``presets[name]`` with fields replaced by ``overrides``; an unknown preset or field is a ValueError."""
    if name not in presets:
        raise ValueError(f"{cls.__name__}: unknown preset {name!r}; choose one of {sorted(presets)}")
    _known_fields(cls, overrides)
    return replace(presets[name], **overrides)


def from_plain(cls: type[T], data: T | Mapping[str, Any]) -> T:
    """``data`` as a ``cls``: the config itself, or its fields as plain data (a checkpoint's hyperparameters
    hold them so, as they load with ``weights_only=True``), lists read back as the tuples the configs hold."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{cls.__name__}: expected the config or a mapping of its fields, got {type(data).__name__}"
        )
    _known_fields(cls, data)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _known_fields(cls: type, names: Mapping[str, Any]) -> None:
    unknown = set(names) - {f.name for f in fields(cls)}
    if unknown:
        where = cls.__module__.replace(".", "/") + ".py"
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; see {where}")


def _bounds(rule: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` -> (0.0, 1.0, low open, high open); ``inf]`` allows infinity itself."""
    low, high = (part.strip() for part in rule[1:-1].split(","))
    return float(low), float(high), rule[0] == "(", rule[-1] == ")"


def check_ranges(config: object, rules: Mapping[str, str]) -> None:
    """Every number of ``config`` (int, float, or a tuple of them) in its interval of ``rules``, written as
    ``"[1, inf)"`` or ``"(0, 1]"``; a float field without a rule must still be finite. NaN is never in range.

    Raises:
        SettingError: naming the class, the field, its value, the range and the default.
    """
    cls = type(config)
    for field in fields(config):
        value = getattr(config, field.name)
        values = value if isinstance(value, tuple) else (value,)
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers:
            continue
        rule = rules.get(field.name, "[-inf, inf)" if isinstance(numbers[0], float) else "[-inf, inf]")
        low, high, low_open, high_open = _bounds(rule)
        for number in numbers:
            fine = not math.isnan(number) and (low < number if low_open else low <= number)
            fine = fine and (number < high if high_open else number <= high)
            fine = fine and (math.isfinite(number) or (number == math.inf and not high_open))
            if not fine:
                shown = f"{field.name}={value!r}" if len(values) == 1 else f"{field.name}={list(values)}"
                hint = (
                    "a finite number"
                    if isinstance(number, float) and not math.isfinite(number)
                    else "a value"
                )
                default = f"; the default is {field.default!r}" if field.default is not MISSING else ""
                raise SettingError(f"{cls.__name__}: {shown} is out of range; need {hint} in {rule}{default}")
