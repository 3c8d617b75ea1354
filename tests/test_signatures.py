"""No class constructor in tgad takes over 20 arguments (issue 25).

Why: a constructor of 27 or 43 arguments (``BenchmarkConfig``, ``Integrator`` before issue 25) repeats a
config one field at a time, so a new setting has to be threaded through every copy and a reader cannot see
which arguments belong together; grouped, frozen configs passed whole replace them. The count is read from
the source with ``ast``: an explicit ``__init__``'s parameters (without ``self``; ``*args`` and ``**kwargs``
one each), or else a dataclass's or NamedTuple's fields, those of its tgad base classes included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tgad

PACKAGE = Path(tgad.__file__).parent
LIMIT = 20
# Over the limit, each with the reason (none today; the test below fails once an exemption is no longer needed).
EXEMPT: set[str] = set()


def _is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
            isinstance(target, ast.Attribute) and target.attr == "dataclass"
        ):
            return True
    return False


def _base_names(node: ast.ClassDef) -> list[str]:
    return [
        b.id if isinstance(b, ast.Name) else b.attr
        for b in node.bases
        if isinstance(b, ast.Name | ast.Attribute)
    ]


def _is_field(statement: ast.stmt) -> bool:
    """An annotated class attribute that is a constructor argument (not ClassVar, not ``field(init=False)``)."""
    if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
        return False
    if "ClassVar" in ast.unparse(statement.annotation):
        return False
    value = statement.value
    if isinstance(value, ast.Call) and ast.unparse(value.func).endswith("field"):
        for keyword in value.keywords:
            if (
                keyword.arg == "init"
                and isinstance(keyword.value, ast.Constant)
                and keyword.value.value is False
            ):
                return False
    return True


def _init_arguments(function: ast.FunctionDef) -> int:
    args = function.args
    count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) - 1  # without self
    return count + (args.vararg is not None) + (args.kwarg is not None)


def constructor_sizes(tree: ast.Module, module: str, fields_of: dict[str, list[str]]) -> dict[str, int]:
    """``module.Class`` -> how many arguments its constructor takes, for the classes of one parsed module.
    ``fields_of`` (class name -> its own fields, across tgad) resolves inherited dataclass fields."""
    sizes = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
        if init is not None:
            sizes[f"{module}.{node.name}"] = _init_arguments(init)
        elif _is_dataclass(node) or "NamedTuple" in _base_names(node):
            inherited = [f for base in _base_names(node) for f in fields_of.get(base, [])]
            sizes[f"{module}.{node.name}"] = len(dict.fromkeys(inherited + fields_of[node.name]))
    return sizes


def own_fields(tree: ast.Module) -> dict[str, list[str]]:
    return {
        node.name: [s.target.id for s in node.body if _is_field(s)]
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }


def all_constructor_sizes() -> dict[str, int]:
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        trees[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(
            path.read_text(), str(path)
        )
    fields_of: dict[str, list[str]] = {}
    for tree in trees.values():
        fields_of |= own_fields(tree)
    sizes = {}
    for module, tree in trees.items():
        sizes |= constructor_sizes(tree, module, fields_of)
    return sizes


def test_no_constructor_takes_over_20_arguments():
    sizes = all_constructor_sizes()
    assert "tgad.benchmark.plan.BenchmarkConfig" in sizes  # the walk reaches the classes it guards
    over = {name: n for name, n in sizes.items() if n > LIMIT and name not in EXEMPT}
    assert not over, f"constructors over {LIMIT} arguments (group them into frozen configs): {over}"


def test_each_exemption_is_still_needed():
    sizes = all_constructor_sizes()
    stale = sorted(name for name in EXEMPT if sizes.get(name, 0) <= LIMIT)
    assert not stale, f"{stale} no longer take over {LIMIT} arguments: remove them from EXEMPT"


def test_the_count_reads_init_dataclass_and_namedtuple_fields():
    """The counter itself, on a made-up module: a check that always passed would guard nothing."""
    many = "\n".join(f"    f{i}: int = {i}" for i in range(21))
    source = f"""
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

@dataclass(frozen=True)
class Wide:
{many}
    cached: dict = field(init=False, default_factory=dict)
    LIMIT: ClassVar[int] = 3

@dataclass
class Wider(Wide):
    extra: int = 0

class Plain:
    def __init__(self, a, b=1, *args, c, **kwargs):
        pass

class Pair(NamedTuple):
    x: int
    y: int
"""
    tree = ast.parse(source)
    sizes = constructor_sizes(tree, "m", own_fields(tree))
    assert sizes == {"m.Wide": 21, "m.Wider": 22, "m.Plain": 5, "m.Pair": 2}


def test_benchmark_config_groups_keep_a_flat_constructor():
    """``BenchmarkConfig.of`` sorts flat names into the groups, ``flat`` gives them back, and an unknown
    name fails as a constructor would."""
    from tgad.benchmark.plan import BenchmarkConfig

    config = BenchmarkConfig.of(
        categories=("brick",), seeds=(1, 1, 0), backbone="resnet18", prior="none", name="r"
    )
    assert (
        config.grid.seeds == (1, 0) and config.detectors.backbone == "resnet18" and config.output.name == "r"
    )
    assert config.detectors.image_size == config.recipe.run.detector_image_size  # resolved from the preset
    assert BenchmarkConfig.of(**config.flat()) == config
    assert config.replace(seeds=(2,)).grid.seeds == (2,) and config.grid.seeds == (1, 0)
    with pytest.raises(TypeError, match="'seed'"):
        BenchmarkConfig.of(categories=("brick",), seed=0)
