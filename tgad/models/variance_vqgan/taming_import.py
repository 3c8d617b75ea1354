"""Start a VarianceVQGAN from a taming-transformers VQGAN checkpoint (``model.ckpt`` / ``last.ckpt``).

A taming ``VQModel`` checkpoint is a Lightning 1.x file whose ``state_dict`` holds ``encoder.*``,
``decoder.*``, ``quantize.embedding.weight``, ``quant_conv.*``, ``post_quant_conv.*`` and the loss module's
``loss.discriminator.*`` (PatchGAN) and ``loss.perceptual_loss.*`` (LPIPS VGG). With ``architecture="taming"``
(presets ``taming_f16_1024``, ``taming_tiny``) tgad's modules carry the same names, so the import is a renaming
plus a shape check: the encoder, quantiser and decoder reproduce taming's encode / quantise / decode, the
discriminator is loaded when it fits, LPIPS is skipped (tgad has its own perceptual distance), and the variance
head starts fresh (taming has none). Anything that does not fit is one line naming the file and the key.

The file is read with ``torch.load(weights_only=True)``. Lightning 1.x files also pickle bookkeeping objects
(callback classes as dict keys, numpy scalars, hyper-parameter containers); those known kinds are replaced by
inert stand-ins so only the tensors are read, and anything else is refused with the command that extracts the
weights on a machine where the user trusts the file.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from tgad.assets.cache import sha256_file
from tgad.assets.weights import AssetError, ResolvedWeights

from .config import VQGANConfig
from .torch_model import PatchDiscriminator, VarianceVQGANModel

logger = logging.getLogger(__name__)

# taming works on images in [-1, 1], i.e. (x - 0.5) / 0.5; recorded with the weights as their normalisation.
TAMING_MEAN = TAMING_STD = (0.5, 0.5, 0.5)
CODEBOOK_KEY = "quantize.embedding.weight"
DISC_PREFIX = "loss.discriminator.main."
SKIPPED_PREFIXES = ("loss.perceptual_loss.",)  # LPIPS: tgad's perceptual distance is its own
# Pickled globals of Lightning 1.x bookkeeping (never of the weights): replaced by inert stand-ins on load.
BOOKKEEPING_PREFIXES = (
    "pytorch_lightning.",
    "lightning.",
    "lightning_fabric.",
    "numpy.",
    "omegaconf.",
    "argparse.Namespace",
    "pathlib.",
    "typing.",
)


class TamingCheckpointError(AssetError, ValueError):
    """A taming checkpoint that cannot be read or does not fit the chosen layout; the message names the file,
    the first key that does not fit and what to change. A ValueError for callers, an AssetError for the CLI."""


@dataclass(frozen=True)
class TamingImport:
    """What an import took from the file: recorded with the model (``VarianceVQGAN`` checkpoints keep it)."""

    weights: ResolvedWeights  # name "taming_vqgan", source local_file, path, sha256, [-1, 1] normalisation
    tensors: int  # tensors copied into encoder, quantiser and decoder (codebook included)
    discriminator_loaded: bool
    skipped: int  # tensors of the file left out (LPIPS; the discriminator when not wanted)
    global_step: int | None

    def describe(self) -> str:
        disc = "discriminator loaded" if self.discriminator_loaded else "discriminator not loaded"
        return (
            f"{self.weights.describe()}: {self.tensors} generator tensors, {disc}, {self.skipped} tensors "
            f"skipped, variance head new (step {self.global_step})"
        )


class TamingCheckpoint(NamedTuple):
    model: VarianceVQGANModel  # in eval mode; the variance head newly initialised
    discriminator: PatchDiscriminator | None  # None when not asked for
    report: TamingImport


class _Inert:
    """Stands in for a bookkeeping object of the file: built and given state without running any code of it."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def _fail(path: Path | str, message: str) -> TamingCheckpointError:
    return TamingCheckpointError(" ".join(f"{path}: {message}".split()))


def read_taming_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The file's ``state_dict`` (or the file itself when it is a bare state dict) and its ``global_step``."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such checkpoint file; pass the path of a taming model.ckpt / last.ckpt")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError):  # not a zip checkpoint (legacy format): the plain load below decides
        unsafe = []
    refused = [name for name in unsafe if not name.startswith(BOOKKEEPING_PREFIXES)]
    if refused:
        raise _fail(path, _refusal(path, refused[0]))
    stand_ins = [(type(name.rsplit(".", 1)[-1], (_Inert,), {}), name) for name in unsafe]
    try:
        with torch.serialization.safe_globals(stand_ins):
            # mmap (zip files): a last.ckpt's optimiser states are never read into memory, only the weights.
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        raise _fail(path, _refusal(path, found.group(1) if found else str(err).splitlines()[0])) from err
    except (RuntimeError, EOFError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _fail(path, f"not a readable torch checkpoint ({first}); check the file is complete") from err
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not state:
        raise _fail(path, "holds no state_dict; expected a taming VQModel checkpoint or its state dict")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise _fail(path, f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
    step = obj.get("global_step") if isinstance(obj, Mapping) else None
    return dict(state), step if isinstance(step, int) else None


def _refusal(path: Path, name: str) -> str:
    return (
        f"pickles {name!r}, which tgad does not unpickle (torch.load weights_only=True); if you trust the file, "
        f"save its weights alone and import that file: python -c \"import torch; torch.save(torch.load('{path}', "
        f"map_location='cpu', weights_only=False)['state_dict'], 'taming_state_dict.pt')\""
    )


def _target_key(key: str) -> str | None:
    """tgad's name of a taming generator key (None: not a generator key)."""
    if key.startswith(("encoder.", "decoder.")):
        return key
    if key.startswith("quant_conv."):
        return "encoder." + key
    if key.startswith("post_quant_conv."):
        return "decoder." + key
    return None


def _taming_name(dst: str) -> str:
    """taming's name of one of tgad's keys (the inverse of ``_target_key`` and of the discriminator's renaming)."""
    for inner in ("encoder.quant_conv.", "decoder.post_quant_conv."):
        if dst.startswith(inner):
            return dst.split(".", 1)[1]
    return DISC_PREFIX + dst[len("net.") :] if dst.startswith("net.") else dst


def _copy_checked(
    path: Path | str,
    pairs: list[tuple[str, str]],
    state: Mapping[str, torch.Tensor],
    module: nn.Module,
    hint: str,
) -> None:
    """Copy ``state[src]`` into ``module``'s ``dst`` for every pair, after checking every shape and that no
    tensor of the module is left out (only then is anything written)."""
    own = module.state_dict()
    given = {dst for _, dst in pairs}
    for src, dst in pairs:
        if dst not in own:
            raise _fail(path, f"unexpected key {src!r}: the model has no {dst!r}; {hint}")
        if tuple(state[src].shape) != tuple(own[dst].shape):
            raise _fail(
                path,
                f"key {src!r} has shape {tuple(state[src].shape)} where the model expects "
                f"{tuple(own[dst].shape)}; {hint}",
            )
    missing = [dst for dst in own if dst not in given]
    if missing:
        raise _fail(path, f"key {_taming_name(missing[0])!r} is missing from the checkpoint; {hint}")
    module.load_state_dict({dst: state[src] for src, dst in pairs}, strict=True)


def _disc_layout(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``disc_channels`` and ``disc_layers`` of the file's PatchGAN (empty when it has none)."""
    convs = [k for k in state if k.startswith(DISC_PREFIX) and k.endswith(".weight") and state[k].dim() == 4]
    return {"disc_channels": int(state[convs[0]].shape[0]), "disc_layers": len(convs) - 2} if convs else {}


def _disc_hint(state: Mapping[str, torch.Tensor]) -> str:
    disc = _disc_layout(state)
    if not disc:
        return "skip the discriminator (with_discriminator=False, --no-discriminator)"
    return (
        f"the file's PatchGAN has disc_layers={disc['disc_layers']}, disc_channels={disc['disc_channels']}; set those or skip the "
        "discriminator (with_discriminator=False, --no-discriminator)"
    )


def import_taming_state(
    state: Mapping[str, torch.Tensor],
    model: VarianceVQGANModel,
    discriminator: PatchDiscriminator | None = None,
    path: Path | str = "<state dict>",
) -> tuple[int, bool, int]:
    """Copy a taming state dict into ``model`` (and ``discriminator`` when given and the file has one).

    Returns (generator tensors loaded, discriminator loaded, tensors skipped). Raises TamingCheckpointError,
    naming the first unexpected, missing or mis-shaped key, before anything is written.
    """
    cfg = model.config
    if cfg.architecture != "taming":
        raise _fail(
            path, "taming checkpoints load into architecture 'taming' (preset taming_f16_1024 or taming_tiny)"
        )
    hint = (
        "choose the preset that matches the checkpoint (taming_f16_1024 for vqgan_imagenet_f16_1024) or set "
        "base_channels, channel_mult, num_res_blocks, attn_levels, z_channels, latent_dim, codebook_size to its config"
    )
    generator: list[tuple[str, str]] = []
    disc: list[tuple[str, str]] = []
    skipped = 0
    for key in state:
        target = _target_key(key)
        if target is not None:
            generator.append((key, target))
        elif key.startswith(DISC_PREFIX):
            disc.append((key, "net." + key[len(DISC_PREFIX) :]))
        elif key.startswith(SKIPPED_PREFIXES):
            skipped += 1
        elif key != CODEBOOK_KEY:
            raise _fail(
                path, f"unexpected key {key!r}: not a taming VQModel (VectorQuantizer2) tensor; {hint}"
            )
    if CODEBOOK_KEY not in state:
        raise _fail(path, f"key {CODEBOOK_KEY!r} is missing: not a taming VQModel checkpoint")
    codes, want = state[CODEBOOK_KEY], (cfg.codebook_size, cfg.latent_dim)
    if tuple(codes.shape) != want:
        raise _fail(
            path,
            f"key {CODEBOOK_KEY!r} has shape {tuple(codes.shape)} where the model expects {want}; {hint}",
        )

    body = nn.ModuleDict({"encoder": model.encoder, "decoder": model.decoder})
    _copy_checked(path, generator, state, body, hint)
    model.quantizer.load_codebook(codes.float())
    disc_loaded = discriminator is not None and bool(disc)
    if disc_loaded:
        _copy_checked(path, disc, state, discriminator, _disc_hint(state))
    else:
        skipped += len(disc)
    return len(generator) + 1, disc_loaded, skipped


def import_taming_file(
    path: str | Path, model: VarianceVQGANModel, discriminator: PatchDiscriminator | None = None
) -> TamingImport:
    """Load the taming checkpoint at ``path`` into ``model`` (and ``discriminator``); say what was loaded."""
    state, step = read_taming_checkpoint(path)
    return _report(Path(path), step, *import_taming_state(state, model, discriminator, path))


def _report(path: Path, step: int | None, tensors: int, disc_loaded: bool, skipped: int) -> TamingImport:
    weights = ResolvedWeights(
        "taming_vqgan", "local_file", path, sha256_file(path), mean=TAMING_MEAN, std=TAMING_STD
    )
    report = TamingImport(weights, tensors, disc_loaded, skipped, step)
    logger.info("taming VQGAN imported: %s", report.describe())
    return report


def load_taming_checkpoint(
    path: str | Path, config: VQGANConfig | str = "taming_f16_1024", with_discriminator: bool = True
) -> TamingCheckpoint:
    """A VarianceVQGANModel (and taming's discriminator) started from a taming VQGAN checkpoint file.

    Args:
        path: taming ``model.ckpt`` / ``last.ckpt`` (Lightning 1.x) or a file holding only its state dict.
        config: a taming-architecture VQGANConfig, a preset name, or ``auto``: the file's own layout
            (``taming_architecture``) with the ``taming_f16_1024`` preset's training settings.
        with_discriminator: also build a ``PatchDiscriminator(norm="batch")`` and load ``loss.discriminator.*``
            into it (it stays new when the file has none; ``report.discriminator_loaded`` says which).
    """
    state, step = read_taming_checkpoint(path)  # first: a bad file fails before a large model is built
    if config == "auto":
        cfg = VQGANConfig.preset("taming_f16_1024").override(**taming_architecture(state, path))
    else:
        cfg = VQGANConfig.preset(config) if isinstance(config, str) else config
    model = VarianceVQGANModel(cfg)
    disc = (
        PatchDiscriminator(cfg.disc_channels, cfg.disc_layers, norm="batch") if with_discriminator else None
    )
    report = _report(Path(path), step, *import_taming_state(state, model, disc, path))
    return TamingCheckpoint(model.eval(), disc, report)


def is_taming_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is in taming's VQModel layout (a tgad VarianceVQGAN's names its codebook otherwise)."""
    return CODEBOOK_KEY in state and "encoder.conv_in.weight" in state


def taming_architecture(state: Mapping[str, torch.Tensor], path: Path | str = "<state dict>") -> dict:
    """The ``VQGANConfig`` architecture fields (flat names) of the taming VQModel whose tensors ``state`` holds,
    read from their names and shapes, so a checkpoint of any taming layout (``vqgan_imagenet_f16_1024``, an f8,
    a custom width) builds the model it fits without the user spelling its config. The discriminator's fields
    are read too when the file has one."""
    if not is_taming_state(state):
        raise _fail(
            path, f"key {CODEBOOK_KEY!r} or 'encoder.conv_in.weight' is missing: not a taming VQModel"
        )
    base = state["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
    blocks = {int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block.")}
    widths = [state[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in levels]  # out width per level
    if any(w % base for w in widths):
        raise _fail(
            path, f"level widths {widths} are not multiples of conv_in's {base}: not a taming encoder"
        )
    codes = state[CODEBOOK_KEY]
    fields = {
        "architecture": "taming",
        "base_channels": int(base),
        "channel_mult": tuple(int(w // base) for w in widths),
        "num_res_blocks": len(blocks),
        "attn_levels": tuple(i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state),
        "z_channels": int(state["encoder.conv_out.weight"].shape[0]),
        "latent_dim": int(codes.shape[1]),
        "codebook_size": int(codes.shape[0]),
    }
    return fields | _disc_layout(state)
