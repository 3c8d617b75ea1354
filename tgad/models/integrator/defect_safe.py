"""``defect_safe``: reward a candidate normal image for the variation it adds, penalise it for hiding defects.

A memory-bank detector flags a patch far from every bank patch; an extra image helps when its patches come
close to *normal* test patches and not to *defective* ones (METHOD.md section 5). In 1-shot the method may only
use the shots, so both sides are estimated from them:

* ``novelty`` (B,): the mean over the candidate's patches of its nearest-patch distance to the shots' bank (the
  shots and mild views of them), each capped at ``s`` and divided by ``s``, where ``s`` is the median image
  score of synthetic defects of the shots. 0 = a copy of the shots; 1 = every patch as new as a typical defect.
* ``defect_cover`` (B,): synthetic defects of the shots (the method family,
  ``tgad.features.synthetic_defects.METHOD_KINDS``, never the validation family) are scored by PatchCore's
  image score (largest nearest-patch distance) against the shots' bank, then against the bank plus the
  candidate; the mean relative drop. 0 = the candidate leaves every synthetic defect as visible as before.
* ``defect_tail`` (B,): the mean of the candidate's largest 1 % patch distances, divided by ``s``: above 1, the
  candidate itself holds patches as unusual as a synthetic defect (an invented defect).

score = novelty - defect_weight * defect_cover - tail_weight * max(0, defect_tail - 1). Every term is
differentiable, so the same score drives selection and the Integrator's update (guidance = -score).
"""

from __future__ import annotations

import math

import torch

from tgad.features.patches import PatchFeatures, nearest_distances, tail_mean
from tgad.features.synthetic_defects import METHOD_KINDS, make_defects

PARTS = ("novelty", "defect_cover", "defect_tail")


class DefectSafe:
    """The defect-safe score of candidate images for given shots (module docstring).

    Args:
        features: PatchCore-style patch features (the Integrator's ImageNet backbone).
        bank: (N, C) the shots' reference patches (``scorers.view_bank``).
        shots: (k, 3, H, W) in [0, 1]; ``n_defects`` synthetic defects are made from them in turn.
    """

    def __init__(
        self,
        features: PatchFeatures,
        bank: torch.Tensor,
        shots: torch.Tensor,
        n_defects: int = 8,
        defect_weight: float = 2.0,
        tail_weight: float = 1.0,
        tail: float = 0.01,
        seed: int = 0,
        batch_size: int = 8,
    ) -> None:
        if n_defects < 1 or defect_weight < 0 or tail_weight < 0:
            raise ValueError(
                f"defect_safe: need n_defects >= 1 and weights >= 0 (got {n_defects}, {defect_weight}, {tail_weight})"
            )
        self.features, self.bank, self.tail, self.batch_size = features, bank, tail, batch_size
        self.defect_weight, self.tail_weight = defect_weight, tail_weight
        per_shot = math.ceil(n_defects / len(shots))
        defects = make_defects(shots.detach().float().cpu(), per_shot, METHOD_KINDS, seed)
        images = defects.images[:n_defects].to(bank.device)
        with torch.no_grad():
            self.defect_features = torch.cat(
                [features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
            )  # (J, P, C)
            self.defect_d0 = nearest_distances(self.defect_features, bank)  # (J, P)
        self.defect_scores = self.defect_d0.amax(1)  # (J,)
        self.scale = float(self.defect_scores.median().clamp_min(1e-8))

    def parts(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) -> the three (B,) parts; differentiable with respect to ``images``."""
        feats = self.features(images)  # (B, P, C)
        distances = nearest_distances(feats, self.bank)  # (B, P)
        novelty = distances.clamp(max=self.scale).mean(1) / self.scale
        defect_tail = tail_mean(distances, self.tail) / self.scale
        covers = []
        for candidate in feats:  # (P, C): its patches join the bank
            to_candidate = nearest_distances(self.defect_features, candidate)  # (J, P)
            scores = torch.minimum(self.defect_d0, to_candidate).amax(1)  # (J,)
            covers.append((1 - scores / self.defect_scores).mean())
        return {"novelty": novelty, "defect_cover": torch.stack(covers), "defect_tail": defect_tail}

    def combine(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return (
            parts["novelty"]
            - self.defect_weight * parts["defect_cover"]
            - self.tail_weight * (parts["defect_tail"] - 1).clamp_min(0)
        )

    @torch.no_grad()
    def score_parts(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parts and ``defect_safe`` (their combination) of many images, batched, on CPU."""
        rows = [self.parts(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        out = {name: torch.cat([r[name] for r in rows]).cpu() for name in PARTS}
        out["defect_safe"] = self.combine(out)
        return out

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """-score, averaged over ``images``: the guidance term of the Integrator's update."""
        return -self.combine(self.parts(images)).mean()


def describe(defect_weight: float, tail_weight: float, n_defects: int) -> str:
    return (
        f"novelty - {defect_weight:g} * defect_cover - {tail_weight:g} * max(0, defect_tail - 1), against "
        f"{n_defects} synthetic defects of the shots ({', '.join(METHOD_KINDS)})"
    )
