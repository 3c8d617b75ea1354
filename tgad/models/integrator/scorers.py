"""How the Integrator judges a generated image: one small interface, four scorers, chosen by config.

Every scorer answers in *parts*, raw per-image values where higher is better, and combines them into one
score per image. The update step uses a differentiable form of the same parts (``guidance``), scaled by the
pool the round scored, so the generator is pushed toward what the selection rewards.

* ``clip_text``: cos(CLIP(image), CLIP(P*)), the paper's score, unchanged. Guidance 1 - cos.
* ``shot_fidelity``: needs no CLIP. Every patch of the image is compared with its nearest patch among the
  shots' augmented views in the features of an ImageNet backbone; the score is minus the mean of the largest
  1 % of those distances (at least one patch), so an image with any patch unlike the shots (an artifact, an
  invented defect, a blur) ranks low. Guidance: the part of that tail mean above the first round's gate.
* ``combined``: w * z(clip_text) + (1 - w) * z(shot_fidelity), each part z-scored over the pool being
  scored (a round's M samples, or the final candidates). Guidance: the same sum with the pool's stds.
* ``defect_safe``: the variation a candidate adds minus how much it hides synthetic defects of the shots
  (``defect_safe.py``). Guidance: minus the same score, differentiable.
* ``none``: no scorer; selection is uniformly random (the ablation). shot_fidelity is still computed for the
  record, never used.
* ``auto`` (default) resolves to ``combined`` when real CLIP weights were resolved and to ``shot_fidelity``
  when CLIP is random (random CLIP scores carry no guidance).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from tgad.features.patches import PatchFeatures, judged_in_one_pass, nearest_distances, tail_mean
from tgad.models.variance_vqgan.augment import AugmentConfig, make_views

from .defect_safe import PARTS as SAFE_PARTS
from .defect_safe import DefectSafe
from .defect_safe import describe as describe_defect_safe
from .names import SCORERS
from .selection import clip_scores
from .torch_model import clip_image_embeddings

Parts = dict[str, torch.Tensor]  # part name -> (B,) raw values, higher is better


def resolve_scorer(requested: str, clip_is_random: bool) -> tuple[str, str]:
    """(the scorer to use, why): ``auto`` becomes ``combined`` with real CLIP, ``shot_fidelity`` without."""
    if requested not in SCORERS:
        raise ValueError(f"scorer={requested!r}: choose one of {list(SCORERS)}")
    if requested != "auto":
        return requested, "chosen explicitly"
    if clip_is_random:
        return "shot_fidelity", "auto: CLIP weights are RANDOM, so its text score carries no guidance"
    return "combined", "auto: real CLIP weights, so the text score and shot fidelity are combined"


def _zscore(values: torch.Tensor) -> torch.Tensor:
    if len(values) < 2:
        return torch.zeros_like(values)
    return (values - values.mean()) / values.std().clamp_min(1e-8)


@torch.no_grad()
def view_bank(
    features: PatchFeatures, shots: torch.Tensor, views: int, seed: int, batch_size: int = 8
) -> torch.Tensor:
    """(k*V*P, C): patch features of every shot and of ``views - 1`` mildly augmented views of it (the
    VarianceVQGAN's view augmentation), so natural variation of that size is not mistaken for change."""
    generator = torch.Generator().manual_seed(seed)
    shots = shots.detach().float()
    bank_images = make_views(shots.cpu(), views, cfg=AugmentConfig(), generator=generator)
    bank_images = bank_images.flatten(0, 1).to(shots.device)  # (k, V, 3, H, W) -> (k*V, 3, H, W)
    return torch.cat(
        [
            features(bank_images[i : i + batch_size]).flatten(0, 1)
            for i in range(0, len(bank_images), batch_size)
        ]
    )


class ShotFidelity:
    """Distances of generated patches to the shots' patches: the CLIP-free part (see the module docstring).

    The reference bank holds the patch features of every shot and of ``views - 1`` mildly augmented views
    of it (photometric jitter, sensor noise, a shift of a few pixels, a small rotation: the VarianceVQGAN's
    view augmentation), so natural variation of that size is not penalised. Flips and 90-degree turns are
    not in the bank: on aligned objects they are themselves defects.
    """

    def __init__(
        self,
        features: PatchFeatures,
        shots: torch.Tensor,
        views: int = 8,
        tail: float = 0.01,
        seed: int = 0,
        batch_size: int = 8,
    ) -> None:
        if views < 1 or not 0 < tail <= 1:
            raise ValueError(f"shot_fidelity: need views >= 1 and 0 < tail <= 1 (got {views}, {tail})")
        self.features, self.tail, self.batch_size = features, tail, batch_size
        self.bank = view_bank(features, shots, views, seed, batch_size)

    def distances(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B,) tail-mean nearest-patch distance; differentiable."""
        return self.tail_of(nearest_distances(self.features(images), self.bank))

    def tail_of(self, nearest: torch.Tensor) -> torch.Tensor:
        """(B, P) nearest-patch distances to ``bank`` -> (B,) their tail mean."""
        return tail_mean(nearest, self.tail)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        out = [
            -self.distances(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(out)


class ClipText:
    """cos(CLIP(image), CLIP(P*)): the paper's score."""

    def __init__(self, clip: nn.Module, text_embedding: torch.Tensor) -> None:
        self.clip, self.text = clip, text_embedding

    def similarity(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) cosine similarity; gradients reach ``images`` when they require them."""
        return clip_scores(clip_image_embeddings(self.clip, images), self.text)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        return self.similarity(images)


class Scorer:
    """One of ``clip_text``, ``shot_fidelity``, ``combined``, ``none`` over its parts.

    Args:
        name: the resolved scorer (never ``auto``; see :func:`resolve_scorer`).
        clip: the ``ClipText`` part (needed by ``clip_text`` and ``combined``).
        fidelity: the ``ShotFidelity`` part (needed by ``shot_fidelity`` and ``combined``; with ``none`` or
            ``clip_text`` it is computed for the record when given).
        clip_weight: w of ``combined``.
        safe: the ``DefectSafe`` part (needed by ``defect_safe``).
    """

    def __init__(
        self,
        name: str,
        clip: ClipText | None = None,
        fidelity: ShotFidelity | None = None,
        clip_weight: float = 0.5,
        safe: DefectSafe | None = None,
    ) -> None:
        if name not in SCORERS or name == "auto":
            raise ValueError(
                f"Scorer: {name!r} is not a resolved scorer ({[s for s in SCORERS if s != 'auto']})"
            )
        if name in ("clip_text", "combined") and clip is None:
            raise ValueError(f"scorer {name} needs CLIP")
        if name in ("shot_fidelity", "combined") and fidelity is None:
            raise ValueError(f"scorer {name} needs the shots' patch features (a backbone)")
        if name == "defect_safe" and safe is None:
            raise ValueError("scorer defect_safe needs the shots' patch features and synthetic defects")
        if not 0 <= clip_weight <= 1:
            raise ValueError(f"combined_clip_weight must be in [0, 1], got {clip_weight}")
        self.name, self.clip, self.fidelity, self.clip_weight = name, clip, fidelity, clip_weight
        self.safe = safe

    @property
    def random(self) -> bool:
        """True for ``none``: selection ignores every score."""
        return self.name == "none"

    @property
    def weights(self) -> dict[str, float]:
        """Part -> weight in the score (parts with weight 0 are recorded only)."""
        return {
            "clip_text": {"clip_text": 1.0},
            "shot_fidelity": {"shot_fidelity": 1.0},
            "combined": {"clip_text": self.clip_weight, "shot_fidelity": 1.0 - self.clip_weight},
            "defect_safe": {"defect_safe": 1.0},
            "none": {},
        }[self.name]

    @property
    def patch_features(self) -> PatchFeatures | None:
        """The network behind shot fidelity and defect_safe when one pass can serve both (same features, same
        bank, same batches), else None."""
        judges = [j for j in (self.fidelity, self.safe) if j is not None]
        if not judges:
            return None
        first = judges[0]
        if any(
            j.features is not first.features or j.bank is not first.bank or j.batch_size != first.batch_size
            for j in judges[1:]
        ):
            return None
        return first.features

    @torch.no_grad()
    def parts(self, images: torch.Tensor) -> Parts:
        """Raw (B,) values of every available part, on CPU: what is selected on and what is recorded."""
        return self.parts_and_vectors(images)[0]

    @torch.no_grad()
    def parts_and_vectors(
        self, images: torch.Tensor, vectors: Callable[[list[torch.Tensor]], torch.Tensor] | None = None
    ) -> tuple[Parts, torch.Tensor | None]:
        """:meth:`parts`, and ``vectors`` of the backbone's maps of the same images (the diversity features)
        when :attr:`patch_features` runs that backbone, else None.

        Each batch goes through the backbone once: its maps give the patch features, whose one nearest-patch
        search against the shots' bank gives shot fidelity and the defect_safe parts alike. Each had run the
        backbone and the search on its own, and the diversity features the backbone a third time (issue 24's
        profile). The values are the ones the separate passes give: the same batches, the same functions."""
        out: Parts = {}
        if self.clip is not None and self.name in ("clip_text", "combined"):
            out["clip_text"] = self.clip.score(images).cpu()
        features = self.patch_features
        if features is None:
            if self.fidelity is not None:
                out["shot_fidelity"] = self.fidelity.score(images).cpu()
            if self.safe is not None:
                out.update(self.safe.score_parts(images))
            return out, None

        def judge(patches: torch.Tensor, nearest: torch.Tensor) -> Parts:
            row = {} if self.fidelity is None else {"shot_fidelity": -self.fidelity.tail_of(nearest)}
            return row | ({} if self.safe is None else self.safe.parts_from(patches, nearest))

        first = self.fidelity or self.safe
        describe = None if vectors is None else (lambda maps, _: vectors(maps))
        values, described = judged_in_one_pass(
            features, first.bank, images, first.batch_size, judge, describe
        )
        out |= values
        if self.safe is not None:
            out["defect_safe"] = self.safe.combine(out)
        return out, described

    def combine(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B,) scores from the parts: the one part as is, or the z-scored weighted sum for ``combined``.
        ``none`` returns zeros (its selection is random)."""
        n = len(next(iter(parts.values()))) if parts else 0
        if self.name == "combined":
            return sum(w * _zscore(parts[p].float()) for p, w in self.weights.items())
        if self.name == "none":
            return torch.zeros(n)
        if self.name == "defect_safe":
            return self.safe.combine({p: parts[p].float() for p in SAFE_PARTS})
        return parts[self.name].float()

    def score(self, images: torch.Tensor) -> torch.Tensor:
        return self.combine(self.parts(images))

    def guidance(
        self, images: torch.Tensor, pool: Mapping[str, torch.Tensor], fidelity_gate: float | None = None
    ) -> torch.Tensor | None:
        """A differentiable loss (lower is better) for the update step, or None (``none``).

        ``clip_text``: 1 - cos, the paper's term. ``shot_fidelity``: only the tail distance *above*
        ``fidelity_gate`` (the distance at the selection gate of the first round) is penalised, relative to
        that gate: pulling every sample toward the shots would reward copies of them (measured: with the
        plain tail distance as loss, a tiny run's rounds 1 and 2 drew nothing but near-copies), while the
        hinge only pushes back what the gate would reject. ``combined``: both, each in units of the
        standard deviation of its part over ``pool`` (the round's scored samples), as the score z-scores.
        """
        if self.random:
            return None
        if self.name == "defect_safe":
            return self.safe.loss(images)
        loss = images.new_zeros(())
        for part, weight in self.weights.items():
            if weight == 0:
                continue
            if part == "clip_text":
                cos = self.clip.similarity(images)
                scale = _pool_std(pool[part]) if self.name == "combined" else 1.0
                loss = loss + weight * (1 - cos).mean() / scale
            else:
                gate = fidelity_gate if fidelity_gate is not None else float(-pool[part].median())
                excess = (self.fidelity.distances(images) - gate).clamp_min(0)  # (B,)
                scale = _pool_std(pool[part]) if self.name == "combined" else max(gate, 1e-8)
                loss = loss + weight * excess.mean() / scale
        return loss


def fidelity_gate(shot_fidelity: torch.Tensor, pass_fraction: float) -> float:
    """The tail distance of the weakest sample that a pure shot-fidelity gate would pass (``pass_fraction``
    of ``shot_fidelity``, the (M,) scores of a pool): the hinge of the shot-fidelity guidance."""
    distances = (-shot_fidelity.float()).sort().values
    return float(distances[max(0, math.ceil(pass_fraction * len(distances)) - 1)])


def _pool_std(values: torch.Tensor) -> float:
    return float(values.float().std().clamp_min(1e-8)) if len(values) > 1 else 1.0


def random_choice(n: int, keep: int, eligible: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``keep`` indices drawn uniformly without replacement among the ``eligible`` of ``n`` (the ``none``
    scorer's selection)."""
    pool = torch.nonzero(eligible[:n]).flatten()
    if len(pool) == 0:
        raise ValueError("random selection: no eligible image in the pool (all were rejected by the guards)")
    order = torch.randperm(len(pool), generator=generator)
    return pool[order[: min(keep, len(pool))]]


def scorer_description(
    name: str, clip_weight: float, tail: float, views: int, safe: tuple[float, float, int] = (2.0, 0.5, 8)
) -> str:
    """One line for manifests and reports: the formula the resolved scorer used (``safe``: defect_weight,
    outlier_weight and defect_count of ``defect_safe``)."""
    fidelity = (
        f"-mean of the top {tail:.0%} patch distances to the shots ({views} views each) in PatchCore-style "
        "backbone features"
    )
    return {
        "clip_text": "cos(CLIP(image), CLIP(P*))",
        "shot_fidelity": fidelity,
        "combined": f"{clip_weight:g} * z(cos(CLIP(image), CLIP(P*))) + {1 - clip_weight:g} * z({fidelity})",
        "defect_safe": describe_defect_safe(*safe),
        "none": "none: kept images drawn uniformly at random",
    }[name]


__all__ = [
    "SCORERS",
    "ClipText",
    "DefectSafe",
    "PatchFeatures",
    "Scorer",
    "ShotFidelity",
    "fidelity_gate",
    "nearest_distances",
    "random_choice",
    "resolve_scorer",
    "scorer_description",
    "tail_mean",
    "view_bank",
]
