"""``defect_safe``: reward a candidate normal image for the variation it adds, penalise it for hiding defects.

A memory-bank detector flags a patch far from every bank patch; an extra image helps when its patches come
close to *normal* test patches and not to *defective* ones (METHOD.md section 5). In 1-shot the method may only
use the shots, so both sides are estimated from them:

* the shots' **internal radius** r: for every shot patch, the distance to its nearest patch elsewhere in the
  shots (outside its own neighbourhood), at the ``radius_quantile`` (internal patch statistics: how different
  the shots' own structures are from one another);
* ``novelty`` (B,): the mean over the candidate's patches of min(d, r) / r, d the nearest-patch distance to
  the shots' bank (the shots and mild views of them). 0 = a copy of the shots; 1 = every patch as new as
  the shots' own structures are from each other;
* ``implausible`` (B,): max(0, d - r) / r averaged over the candidate's worst 5 % of patches: patches further
  from the shots than anything inside the shots is from the rest (an invented defect, a rotated brick wall, a
  blur). The tail, not the mean: a defect is local, and PatchCore's image score is a maximum;
* ``defect_cover`` (B,): synthetic defects of the shots (the method family,
  ``tgad.features.synthetic_defects.METHOD_KINDS``, never the validation family) are scored by PatchCore's
  image score (largest nearest-patch distance) against the shots' bank, then against the bank plus the
  candidate; the mean relative drop. 0 = the candidate leaves every synthetic defect as visible as before.

score = novelty - outlier_weight * implausible - defect_weight * defect_cover. Every term is differentiable in
the candidate, so the same score drives selection and the Integrator's update (guidance = -score).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tgad.features.patches import PatchFeatures, judged_in_one_pass, nearest_distances, tail_mean
from tgad.features.synthetic_defects import METHOD_KINDS, make_defects

PARTS = ("novelty", "implausible", "defect_cover")
IMPLAUSIBLE_TAIL = 0.05  # implausible: the worst 5 % of a candidate's patches (a defect is local)
COVER_HEAD = 8  # defect_cover compares each synthetic defect's top 1/8 patches by distance first (exact)
EXCLUDE = 2  # internal statistics: a patch's own neighbourhood (+-2 grid cells) is not its "elsewhere"


@torch.no_grad()
def internal_radius(features: PatchFeatures, shots: torch.Tensor, quantile: float) -> float:
    """The shots' own patch variation: for every shot patch, the distance to its nearest patch *elsewhere* in
    the shots (outside its +-``EXCLUDE`` grid neighbourhood); the ``quantile`` of these distances.

    A periodic or aligned part (brick, a transistor) repeats its structures, so this radius is small and a
    rotated copy lies far outside it; an irregular or round part (gravel, a hazelnut) shows its structures in
    many forms, so variation of that size is what its normal images look like."""
    feats = features(shots)  # (k, P, C)
    k, p, _ = feats.shape
    side = int(round(p**0.5))
    grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(p // side), indexing="ij"), -1)
    grid = grid.reshape(-1, 2).to(feats.device)  # (P, 2) row, column of each patch
    near = (grid[:, None, :] - grid[None, :, :]).abs().amax(-1) <= EXCLUDE  # (P, P) own neighbourhood
    flat = feats.reshape(k * p, -1)
    distances = torch.cdist(flat, flat)  # (kP, kP)
    same_shot = torch.block_diag(*[torch.ones(p, p, dtype=torch.bool, device=feats.device)] * k)
    excluded = same_shot & near.repeat(k, k)
    nearest = distances.masked_fill(excluded, float("inf")).amin(1)  # (kP,)
    nearest = nearest[torch.isfinite(nearest)]
    if len(nearest) == 0:  # a grid too small to have an "elsewhere": any other patch will do
        nearest = distances.masked_fill(
            torch.eye(k * p, dtype=torch.bool, device=feats.device), float("inf")
        ).amin(1)
    return float(torch.quantile(nearest, quantile).clamp_min(1e-6))


class DefectSafe:
    """The defect-safe score of candidate images for given shots (module docstring).

    Args:
        features: PatchCore-style patch features (the Integrator's ImageNet backbone).
        bank: (N, C) the shots' reference patches (``scorers.view_bank``).
        shots: (k, 3, H, W) in [0, 1]; ``n_defects`` synthetic defects are made from them in turn.
        kinds: the synthetic-defect family (the method family; an analysis may compare another).
    """

    def __init__(
        self,
        features: PatchFeatures,
        bank: torch.Tensor,
        shots: torch.Tensor,
        n_defects: int = 8,
        defect_weight: float = 2.0,
        outlier_weight: float = 0.5,
        radius_quantile: float = 0.9,
        seed: int = 0,
        batch_size: int = 8,
        kinds: tuple[str, ...] = METHOD_KINDS,
    ) -> None:
        if n_defects < 1 or defect_weight < 0 or outlier_weight < 0 or not 0 < radius_quantile <= 1:
            raise ValueError(
                f"defect_safe: need n_defects >= 1, weights >= 0 and 0 < radius_quantile <= 1 (got {n_defects}, "
                f"{defect_weight}, {outlier_weight}, {radius_quantile})"
            )
        self.features, self.bank, self.batch_size = features, bank, batch_size
        self.defect_weight, self.outlier_weight = defect_weight, outlier_weight
        per_shot = math.ceil(n_defects / len(shots))
        defects = make_defects(shots.detach().float().cpu(), per_shot, kinds, seed)
        images = defects.images[:n_defects].to(bank.device)
        with torch.no_grad():
            self.defect_features = torch.cat(
                [features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
            )  # (J, P, C)
            self.defect_d0 = nearest_distances(self.defect_features, bank)  # (J, P)
        self.defect_scores = self.defect_d0.amax(1)  # (J,)
        # each defect's own patches: (J, H, W) pixel masks -> (J, P), a patch is inside when any pixel is
        side = int(round(self.defect_features.shape[1] ** 0.5))
        masks = defects.masks[:n_defects, None].float()
        self.defect_patches = (F.adaptive_max_pool2d(masks, side).flatten(1) > 0).to(bank.device)
        self.radius = internal_radius(features, shots.detach().float().to(bank.device), radius_quantile)

    def parts(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) -> the three (B,) parts; differentiable with respect to ``images``."""
        feats = self.features(images)  # (B, P, C)
        return self.parts_from(feats, nearest_distances(feats, self.bank))

    def parts_from(self, feats: torch.Tensor, nearest: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parts from the candidates' (B, P, C) patch features and their (B, P) nearest distances to
        ``bank``: a scorer that already searched the same bank for shot fidelity hands both in."""
        distances = nearest / self.radius  # (B, P), 1 = the shot's own radius
        novelty = distances.clamp(max=1).mean(1)
        implausible = tail_mean((distances - 1).clamp_min(0), IMPLAUSIBLE_TAIL)
        scores = self.defect_scores_with(feats)  # (J, B)
        covers = (1 - scores / self.defect_scores[:, None]).mean(0)
        return {"novelty": novelty, "implausible": implausible, "defect_cover": covers}

    def defect_scores_with(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, P, C) candidates -> (J, B): each synthetic defect's image score (its largest nearest-patch
        distance) once the candidate's patches join the bank.

        Exact, but pruned: a defect patch can only lower its own distance d0, so the score comes from the
        patches with the largest d0. Those (the top 1/``COVER_HEAD``) are compared with every candidate at once;
        a (defect, candidate) pair whose pruned score falls below the largest d0 left out is recomputed in full.
        The per-candidate loop this replaced was most of the final draw's time (issue 24's profile)."""
        j, p, c = self.defect_features.shape
        head = min(p, max(1, p // COVER_HEAD))
        order = self.defect_d0.argsort(dim=1, descending=True)  # (J, P)
        head_d0 = self.defect_d0.gather(1, order[:, :head])  # (J, T)
        head_feats = self.defect_features.gather(1, order[:, :head, None].expand(-1, -1, c))  # (J, T, C)
        flat = head_feats.reshape(j * head, c)  # (J*T, C)
        to_candidate = _nearest_in_each(flat, feats).reshape(j, head, -1)  # (J*T, B) -> (J, T, B)
        scores = torch.minimum(head_d0[..., None], to_candidate).amax(1)  # (J, B)
        if head < p:
            left_out = self.defect_d0.gather(1, order[:, head : head + 1])  # (J, 1) largest d0 not compared
            for dj, b in (scores < left_out).nonzero().tolist():
                full = nearest_distances(self.defect_features[dj : dj + 1], feats[b])[0]  # (P,)
                scores = scores.index_put((torch.tensor([dj]), torch.tensor([b])), (
                    torch.minimum(self.defect_d0[dj], full).amax()[None]
                ))  # fmt: skip
        return scores

    @torch.no_grad()
    def region_covers(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, P, C) candidates -> (B,): how much each candidate lowers the *mean* nearest-patch distance of the
        patches inside each synthetic defect (its mask), relative, averaged over the defects.

        ``defect_cover`` follows PatchCore's image score, the single largest distance, which a normal candidate
        almost never reaches: on MVTec AD transistor (k = 2) it is about 0.001 for plain augmentations and
        generated images alike, a term that moves no ranking. Over the defect's own patches the cover ranks
        candidates as the validation's held-out defects do (Spearman 0.41-0.76 over five seeds,
        ``experiments/results/issue23_selection_analysis``)."""
        inside = self.defect_patches  # (J, P)
        owner = inside.nonzero()[:, 0]  # (M,) the defect of each inside patch
        d0 = self.defect_d0[inside]  # (M,)
        d1 = torch.minimum(d0[:, None], _nearest_in_each(self.defect_features[inside], feats))  # (M, B)
        j = len(self.defect_d0)
        before = torch.zeros(j, dtype=d0.dtype, device=d0.device).index_add_(0, owner, d0)  # (J,)
        after = torch.zeros(j, len(feats), dtype=d1.dtype, device=d1.device).index_add_(0, owner, d1)
        counted = before > 0  # a defect too small to own a patch, or with nothing to lower, does not vote
        if not counted.any():
            return torch.zeros(len(feats), device=feats.device)
        return (1 - after[counted] / before[counted, None]).mean(0)

    def combine(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return (
            parts["novelty"]
            - self.outlier_weight * parts["implausible"]
            - self.defect_weight * parts["defect_cover"]
        )

    @torch.no_grad()
    def score_parts(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parts and ``defect_safe`` (their combination) of many images, batched, on CPU."""
        return self.score_parts_and_pooled(images)[0]

    @torch.no_grad()
    def score_parts_and_pooled(
        self, images: torch.Tensor, region: bool = False
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """:meth:`score_parts` and each image's mean patch feature (B, C), from the same backbone pass: the
        selection's diversity vectors, which had run the backbone over every candidate a second time.
        ``region``: the parts add ``region_cover`` (:meth:`region_covers`) from the same pass."""

        def judge(feats: torch.Tensor, nearest: torch.Tensor) -> dict[str, torch.Tensor]:
            parts = self.parts_from(feats, nearest)
            return parts | {"region_cover": self.region_covers(feats)} if region else parts

        out, pooled = judged_in_one_pass(
            self.features, self.bank, images, self.batch_size, judge, lambda _, p: p.mean(1)
        )
        out["defect_safe"] = self.combine(out)
        return out, pooled

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """-score, averaged over ``images``: the guidance term of the Integrator's update."""
        return -self.combine(self.parts(images)).mean()


def _nearest_in_each(patches: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(N, C) patches, (B, P, C) candidates -> (N, B): each patch's distance to its nearest patch of each
    candidate, all candidates in one product."""
    d2 = (
        patches.pow(2).sum(1)[:, None, None]
        - 2 * torch.einsum("nc,bpc->nbp", patches, candidates)
        + candidates.pow(2).sum(2)[None]
    )  # (N, B, P)
    return d2.clamp_min(0).amin(2).add(1e-12).sqrt()


def describe(defect_weight: float, outlier_weight: float, n_defects: int) -> str:
    return (
        f"novelty - {outlier_weight:g} * implausible - {defect_weight:g} * defect_cover (patch distances in "
        f"units of the shots' internal radius; {n_defects} synthetic defects of the shots: "
        f"{', '.join(METHOD_KINDS)})"
    )
