"""Named presets of the models' frozen config dataclasses, one lookup for all three (VarianceVQGAN, Integrator,
PromptSelector): a preset name plus field overrides, with one-line errors that name the class and its file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, TypeVar

T = TypeVar("T")


def from_preset(cls: type[T], presets: Mapping[str, T], name: str, overrides: Mapping[str, Any]) -> T:
    """``presets[name]`` with fields replaced by ``overrides``; an unknown preset or field is a ValueError."""
    if name not in presets:
        raise ValueError(f"{cls.__name__}: unknown preset {name!r}; choose one of {sorted(presets)}")
    unknown = set(overrides) - {f.name for f in fields(cls)}
    if unknown:
        where = cls.__module__.replace(".", "/") + ".py"
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; see {where}")
    return replace(presets[name], **overrides)
