"""Named presets of the models' frozen config dataclasses, one lookup for all three (VarianceVQGAN, Integrator,
PromptSelector): a preset name plus field overrides, with one-line errors that name the class and its file;
and the range check every config runs in ``__post_init__``, so a NaN, an infinity or an out-of-range number is
refused wherever a config is built (``--set``, a LightningCLI YAML, Python) before any compute.

A config may nest frozen groups of settings (``VQGANConfig.training``, ``IntegratorConfig.update``) whose leaf
names are unique, so every setting keeps one flat name: ``flatten``, ``replace_flat`` and ``from_plain`` translate
between the flat names users write and the nested config."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from typing import Any, Self, TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A setting's value is outside its range (or not a finite number); the message names the field, the
    range and the preset's value."""


def from_preset(cls: type[T], presets: Mapping[str, T], name: str, overrides: Mapping[str, Any]) -> T:
    """``presets[name]`` with settings replaced by flat name (``replace_flat``); an unknown preset or setting is a
    ValueError."""
    if name not in presets:
        raise ValueError(f"{cls.__name__}: unknown preset {name!r}; choose one of {sorted(presets)}")
    return replace_flat(presets[name], overrides)


@functools.cache
def groups(cls: type) -> dict[str, type]:
    """The nested setting groups of a config class: its fields whose default is built by a dataclass
    (``field(default_factory=VQGANTraining)``), by field name."""
    return {f.name: f.default_factory for f in fields(cls) if is_dataclass(f.default_factory)}


@functools.cache
def flat_names(cls: type) -> dict[str, str | None]:
    """Every leaf setting's name -> its group (None: a field of ``cls`` itself). The names a user writes
    (``--set``, a recipe's overrides, ``preset(name, **flat)``) are these, so they must be unique."""
    out: dict[str, str | None] = {}
    for f in fields(cls):
        leaves = [g.name for g in fields(groups(cls)[f.name])] if f.name in groups(cls) else [f.name]
        for leaf in leaves:
            if leaf in out:
                raise TypeError(f"{cls.__name__}: the setting name {leaf!r} appears twice among its groups")
            out[leaf] = f.name if f.name in groups(cls) else None
    return out


def flatten(config: object) -> dict[str, Any]:
    """Every setting of ``config`` by its flat name, groups expanded in place (a config without groups: its
    fields)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out |= (
            {g.name: getattr(value, g.name) for g in fields(value)}
            if f.name in groups(type(config))
            else {f.name: value}
        )
    return out


def replace_flat(config: T, overrides: Mapping[str, Any]) -> T:
    """``config`` with settings replaced by flat name (``disc_start=0`` lands in its group).

    Raises:
        ValueError: an unknown name (the message names the class's file), or a value out of range.
    """
    cls = type(config)
    names = flat_names(cls)
    _known_fields(cls, overrides)
    top = {k: v for k, v in overrides.items() if names[k] is None}
    for group in groups(cls):
        given = {k: v for k, v in overrides.items() if names[k] == group}
        if given:
            top[group] = replace(getattr(config, group), **given)
    return replace(config, **top)


@dataclass(frozen=True)
class FlatSettings:
    """``flat()`` and ``override(**flat)`` for a frozen config whose settings sit in named groups: the flat
    names are what ``--set``, a recipe's overrides and ``preset(name, **flat)`` use. A (field-less) dataclass
    itself, because jsonargparse treats a dataclass with a plain base class as a subclass type and would print
    ``class_path``/``init_args`` into the Lightning CLI configs."""

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name."""
        return flatten(self)

    def override(self, **flat: Any) -> Self:
        """This config with settings replaced by flat name (``tau=2``, ``disc_start=0``).

        Raises:
            ValueError: an unknown name (the message names the config's file), or a value out of range.
        """
        return replace_flat(self, flat)


def from_plain(cls: type[T], data: T | Mapping[str, Any]) -> T:
    """``data`` as a ``cls``: the config itself, or its settings as plain data (a checkpoint's hyperparameters
    hold them so, as they load with ``weights_only=True``): groups as nested mappings (``dataclasses.asdict``)
    or by flat name (checkpoints written before the groups), lists read back as the tuples the configs hold."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{cls.__name__}: expected the config or a mapping of its fields, got {type(data).__name__}"
        )
    sub, names = groups(cls), flat_names(cls)
    _known_fields(cls, {k: v for k, v in data.items() if k not in sub})
    kwargs = {k: _tuple(v) for k, v in data.items() if names.get(k, "") is None}
    for group, group_cls in sub.items():
        leaves = {k: v for k, v in data.items() if names.get(k) == group}
        if group in data or leaves:
            base = from_plain(group_cls, data.get(group, {}))  # nested (or the group itself)
            kwargs[group] = replace(base, **{k: _tuple(v) for k, v in leaves.items()})  # by flat name
    return cls(**kwargs)


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _known_fields(cls: type, names: Mapping[str, Any]) -> None:
    unknown = set(names) - set(flat_names(cls))
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
