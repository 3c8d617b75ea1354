"""CLIP through open_clip, with the weights' source recorded: a local file > the local cache > a download.

No package ships real CLIP weights, so offline the only real weights are the user's: a checkpoint file, or a
pretrained tag already in the Hugging Face / open_clip cache. Without them tgad refuses, unless the caller
explicitly allows random weights; then it warns loudly and the answer says ``source="random"``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from tgad.assets.cache import sha256_file
from tgad.assets.weights import AssetError, ResolvedWeights

log = logging.getLogger(__name__)

__all__ = [
    "TINY_CLIP",
    "CHECKPOINT_SUFFIXES",
    "clip_weight_sources",
    "clip_weights_available",
    "resolve_clip",
]

TINY_CLIP = "tgad-tiny-clip"  # 3.4 M parameters, for tests; no weights exist for it
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# The tag tried when the caller names none: CLIP's original weights, where open_clip has them.
DEFAULT_TAG = "openai"
_HF_DEFAULT_FILE = "open_clip_pytorch_model.bin"
_HF_SAFE_FILE = "open_clip_model.safetensors"
_BANNER = "!" * 78
# OpenAI CLIP's input statistics, for an open_clip model whose config records none
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocess_cfg(model: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input size, mean, std) of an open_clip model: its own preprocess config, OpenAI's stats if none."""
    visual = model.visual
    size = visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    cfg = getattr(visual, "preprocess_cfg", None) or {}
    return int(size), tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))


@functools.cache
def _register_configs() -> None:
    """Make tgad's own architectures (``clip_configs/*.json``) known to open_clip."""
    import open_clip

    open_clip.add_model_config(Path(__file__).with_name("clip_configs"))


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("TGAD_OFFLINE", "HF_HUB_OFFLINE")
    )


def _is_torchscript(path: Path) -> bool:
    """OpenAI's original ``ViT-B-32.pt`` files are TorchScript archives, which ``torch.load`` cannot open safely."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("constants.pkl") for name in zf.namelist())


def _load_into(model: nn.Module, path: Path) -> None:
    import open_clip

    if _is_torchscript(path):
        # TorchScript loading builds modules from the archive's code, not from arbitrary pickles.
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
        # metadata entries, and buffers the archive saved that open_clip keeps non-persistent (attn_mask)
        extra = {"input_resolution", "context_length", "vocab_size"} | {n for n, _ in model.named_buffers()}
        state = {k: v for k, v in state.items() if k not in extra or k in model.state_dict()}
        model.load_state_dict(state, strict=True)
    else:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)


def _load_checked(model: nn.Module, path: Path, model_name: str, what: str) -> nn.Module:
    try:
        _load_into(model, path)
    except Exception as err:  # wrong architecture, truncated or not a checkpoint: name the file and setting
        raise AssetError(f"{what} {path} does not load into {model_name}: {_load_failure(err)}") from err
    return model


def _load_failure(err: Exception) -> str:
    """Why a checkpoint did not load, in one line; torch's advice to retry with ``weights_only=False`` (run
    arbitrary pickled code) is not repeated: tgad never does that."""
    text = str(err)
    if "Weights only load failed" in text or "weights_only" in text:
        return (
            "it holds pickled Python objects besides tensors, which tgad does not unpickle; save its "
            "state_dict (torch.save(model.state_dict(), 'clip.pt')) or use a .safetensors file"
        )
    return (text.strip().splitlines() or [type(err).__name__])[0][:200]


def _pretrained_cfg(model_name: str, tag: str) -> dict:
    from open_clip.pretrained import get_pretrained_cfg

    return get_pretrained_cfg(model_name, tag) or {}


def _cached_file(cfg: dict, cache_dir: str | None) -> Path | None:
    """The checkpoint of a pretrained tag if it is already on disk (HF hub cache, then open_clip's URL cache)."""
    if hub := cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)  # "org/repo/" names the repo's default file
        filename = filename or _HF_DEFAULT_FILE
        # open_clip prefers a .safetensors twin when the hub has one; look for it first.
        twin = _HF_SAFE_FILE if filename == _HF_DEFAULT_FILE else filename.rsplit(".", 1)[0] + ".safetensors"
        names = [twin, filename] if filename.endswith((".bin", ".pth")) else [filename]
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if url := cfg.get("url"):
        path = Path(cache_dir or Path.home() / ".cache" / "clip") / os.path.basename(url)
        if path.is_file():
            return path
    return None


def clip_weight_sources(model_name: str) -> str:
    """One line saying how to provide real weights for ``model_name`` (used in errors and warnings)."""
    from open_clip import list_pretrained_tags_by_model

    tags = list_pretrained_tags_by_model(model_name)
    shown = ", ".join(tags[:4]) + (", ..." if len(tags) > 4 else "")
    tag_hint = f", or a pretrained tag ({shown}) in the HF cache or with internet access" if tags else ""
    return (
        f"set clip_weights to a {model_name} checkpoint file ({'/'.join(CHECKPOINT_SUFFIXES)}){tag_hint}; "
        "or set allow_random_clip: true for a smoke run (outputs are then marked clip_weights RANDOM)"
    )


class _DropOpenClipRandomNotice(logging.Filter):
    """open_clip logs "initialized randomly" on the root logger before tgad loads the weights itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def _create(model_name: str, cfg: dict | None = None) -> nn.Module:
    import open_clip

    cfg = cfg or {}
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    quiet = _DropOpenClipRandomNotice()
    logging.getLogger().addFilter(quiet)
    try:
        return open_clip.create_model(
            model_name,
            pretrained=None,
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess or None,
        )
    finally:
        logging.getLogger().removeFilter(quiet)


def _finish(model: nn.Module, model_name: str, resolved: ResolvedWeights):
    import open_clip

    model.eval().requires_grad_(False)  # CLIP is a frozen judge everywhere in tgad
    _, mean, std = preprocess_cfg(model)  # what ``prepare_images`` normalises with, recorded with the weights
    resolved = dataclasses.replace(resolved, mean=mean, std=std)
    return model, open_clip.get_tokenizer(model_name), resolved


def clip_weights_available(
    model_name: str = "ViT-B-32", weights: str | Path | None = None, cache_dir: str | None = None
) -> bool:
    """Whether ``resolve_clip`` would find real weights, without building the model: a checkpoint file, a
    pretrained tag in the local cache, or (online) a tag it can download. Plans use it to resolve choices
    that depend on it (the ``auto`` scorer) before any model is loaded."""
    text = str(weights) if weights is not None else None
    if text and Path(text).expanduser().is_file():
        return True
    if text and (text.endswith(CHECKPOINT_SUFFIXES) or os.sep in text):
        return False
    _register_configs()
    cfg = _pretrained_cfg(model_name, text or DEFAULT_TAG)
    return bool(cfg) and (_cached_file(cfg, cache_dir) is not None or not _offline())


def resolve_clip(
    model_name: str = "ViT-B-32",
    weights: str | Path | None = None,
    allow_random: bool = False,
    cache_dir: str | None = None,
) -> tuple[nn.Module, object, ResolvedWeights]:
    """An eval-mode, frozen open_clip model, its tokenizer, and where its weights came from.

    Order: (1) ``weights`` is an existing checkpoint file -> loaded (``weights_only``) [local_file];
    (2) ``weights`` (default ``"openai"``) is an open_clip pretrained tag found in the local HF / open_clip
    cache [cache]; (3) the tag downloaded, unless ``HF_HUB_OFFLINE`` / ``TGAD_OFFLINE`` is set [download];
    (4) random weights, only with ``allow_random`` and a loud warning [random].

    Raises:
        AssetError: no real weights and ``allow_random`` is False; or ``weights`` names a missing file or
            an unknown tag.
    """
    import open_clip

    _register_configs()
    if model_name not in open_clip.list_models():
        raise AssetError(
            f"clip_model={model_name!r} is not an open_clip architecture (e.g. ViT-B-32, {TINY_CLIP})"
        )
    text = str(weights) if weights is not None else None
    if text and (Path(text).expanduser().is_file()):
        path = Path(text).expanduser().resolve()
        model = _load_checked(_create(model_name), path, model_name, "--clip-weights (clip_weights)")
        log.info("CLIP %s: weights from local file %s", model_name, path)
        return _finish(model, model_name, ResolvedWeights(model_name, "local_file", path, sha256_file(path)))
    if text and (text.endswith(CHECKPOINT_SUFFIXES) or os.sep in text):
        raise AssetError(f"clip_weights={text} is not a file; fix the path or use a pretrained tag")

    tag = text or DEFAULT_TAG
    cfg = _pretrained_cfg(model_name, tag)
    why = f"{model_name} has no pretrained tag {tag!r}" if text else f"{model_name} has no default weights"
    if cfg:
        if (path := _cached_file(cfg, cache_dir)) is not None:
            model = _load_checked(_create(model_name, cfg), path, model_name, f"cached {model_name}/{tag}")
            log.info("CLIP %s/%s: weights from the local cache %s", model_name, tag, path)
            return _finish(
                model, model_name, ResolvedWeights(model_name, "cache", path, sha256_file(path), tag)
            )
        why = f"{model_name}/{tag} is not in the local cache"
        if not _offline():
            try:
                model = open_clip.create_model(
                    model_name,
                    pretrained=tag,
                    cache_dir=cache_dir,
                    force_quick_gelu=bool(cfg.get("quick_gelu")),
                )
            except Exception as err:  # no network, hub errors: fall through to the one-line error below
                why += f" and the download failed ({str(err).splitlines()[0][:120]})"
            else:
                path = _cached_file(cfg, cache_dir)
                log.info("CLIP %s/%s: downloaded to %s", model_name, tag, path)
                digest = sha256_file(path) if path else None
                return _finish(model, model_name, ResolvedWeights(model_name, "download", path, digest, tag))
        else:
            why += " and downloads are off (HF_HUB_OFFLINE/TGAD_OFFLINE)"
    elif text:
        raise AssetError(
            f"clip_weights={text!r} is neither a file nor a pretrained tag of {model_name}; "
            + clip_weight_sources(model_name)
        )

    if not allow_random:
        raise AssetError(f"no CLIP weights: {why}; " + clip_weight_sources(model_name))
    log.warning(
        "\n%s\n!! CLIP %s: RANDOM WEIGHTS (%s).\n!! Prompt scores are meaningless as text guidance; every output "
        "records clip_weights=%s:RANDOM.\n%s",
        _BANNER,
        model_name,
        why,
        model_name,
        _BANNER,
    )
    return _finish(_create(model_name), model_name, ResolvedWeights(model_name, "random"))
