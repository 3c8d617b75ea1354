"""Scoring and selection as pure functions: CLIP scores, a score gate, greedy farthest-point diversity, and
the guards that catch NaN, constant and collapsed generator output."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


def clip_scores(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each image embedding (B, D) with one text embedding (D,) or (1, D) -> (B,)."""
    return F.normalize(image_emb.float(), dim=-1) @ F.normalize(text_emb.float().reshape(-1), dim=0)


def quantize_uint8(images: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to the 8-bit grid, so what is scored is exactly what a PNG stores."""
    return images.clamp(0, 1).mul(255).round().div(255)


def farthest_point(
    features: torch.Tensor, candidates: torch.Tensor, k: int, anchors: torch.Tensor | None = None
) -> torch.Tensor:
    """Greedy farthest-point choice of ``k`` of ``candidates``: each pick maximises its distance to the
    nearest of (``anchors`` and earlier picks). Ties go to the earlier candidate (deterministic).

    Args:
        features: (N, F) feature vectors of the whole pool.
        candidates: (C,) indices into the pool that may be chosen.
        anchors: (A, F) points already "covered" (the shots): near-copies of them are chosen last.

    Returns:
        (min(k, C),) pool indices in pick order.
    """
    candidates = candidates.flatten()
    k = min(k, len(candidates))
    if k <= 0:
        return candidates[:0]
    cand = features[candidates].float()  # (C, F)
    picked: list[int] = []
    if anchors is not None and len(anchors):
        nearest = torch.cdist(cand, anchors.float()).min(dim=1).values  # (C,)
    else:  # nothing covered yet: start from the candidate farthest from the candidates' mean
        picked.append(int((cand - cand.mean(0, keepdim=True)).norm(dim=1).argmax()))
        nearest = (cand - cand[picked[0]]).norm(dim=1)
    taken = torch.zeros(len(cand), dtype=torch.bool)
    taken[picked] = True
    while len(picked) < k:
        j = int(torch.where(taken, torch.full_like(nearest, -math.inf), nearest).argmax())
        picked.append(j)
        taken[j] = True
        nearest = torch.minimum(nearest, (cand - cand[j]).norm(dim=1))
    return candidates[torch.tensor(picked)]


class Selection(NamedTuple):
    kept: torch.Tensor  # (q,) pool indices, in pick order
    passed: torch.Tensor  # (N,) bool: score at or above the threshold
    threshold: float  # the lowest score that passed


def select_diverse(
    scores: torch.Tensor,
    features: torch.Tensor,
    keep: int,
    pass_fraction: float,
    anchors: torch.Tensor | None = None,
    eligible: torch.Tensor | None = None,
) -> Selection:
    """Keep ``keep`` images: the best ``pass_fraction`` by score pass, farthest-point picks among them.

    Every kept image scores at least as high as every image that failed the gate (``~passed``); images that
    passed but were not picked were dropped for redundancy, not for their score.

    Args:
        scores: (N,) scores (higher is better; see scorers.py). features: (N, F). anchors: (A, F) of the shots.
        eligible: (N,) bool; False excludes an image entirely (e.g. constant output).
    """
    n = len(scores)
    eligible = torch.ones(n, dtype=torch.bool) if eligible is None else eligible.bool()
    pool = torch.nonzero(eligible).flatten()
    if len(pool) == 0:
        raise ValueError("select_diverse: no eligible image in the pool (all were rejected by the guards)")
    n_pass = min(len(pool), max(keep, math.ceil(pass_fraction * len(pool))))
    threshold = float(scores[pool].float().topk(n_pass).values[-1])
    passed = eligible & (scores >= threshold)
    kept = farthest_point(features, torch.nonzero(passed).flatten(), keep, anchors)
    return Selection(kept, passed, threshold)


class PoolCheck(NamedTuple):
    constant: torch.Tensor  # (N,) bool: an image with (almost) no pixel variation
    copies: torch.Tensor  # (N,) bool: identical to its own shot after 8-bit rounding
    distinct: int  # number of distinct images in the pool (8-bit)
    pixel_spread: float  # mean over shots of the per-pixel std across that shot's samples
    collapsed: bool
    reason: str


def check_pool(
    images: torch.Tensor,
    shots: torch.Tensor,
    shot_index: torch.Tensor,
    spread_eps: float = 0.5 / 255,
    constant_eps: float = 1e-3,
) -> PoolCheck:
    """Guards on generated images (N, 3, H, W) in [0, 1] drawn from ``shots[shot_index]``.

    Raises:
        FloatingPointError: NaN or inf in the images (never written anywhere).
    """
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise FloatingPointError(f"generator output holds NaN/inf in {bad} of {len(images)} images")
    q = quantize_uint8(images)
    constant = q.flatten(1).std(dim=1) < constant_eps
    copies = (q - quantize_uint8(shots)[shot_index]).abs().flatten(1).amax(1) == 0
    distinct = len({hash(row.numpy().tobytes()) for row in q.mul(255).to(torch.uint8).flatten(1)})
    spreads = [
        q[shot_index == s].std(dim=0).mean() for s in shot_index.unique() if (shot_index == s).sum() > 1
    ]
    spread = float(torch.stack(spreads).mean()) if spreads else 0.0
    reasons = []
    if constant.all():
        reasons.append("every image is constant")
    if copies.all():
        reasons.append("every sample is an exact copy of its shot (no latent code changed)")
    elif len(images) > 1 and (distinct <= len(shot_index.unique()) or (spreads and spread < spread_eps)):
        reasons.append(f"samples are near-identical (pixel spread {spread:.2e} < {spread_eps:.2e})")
    return PoolCheck(constant, copies, distinct, spread, bool(reasons), "; ".join(reasons))
