"""Records of an Integrator run: one per round, and the final N images with the rule that chooses them among
every candidate (a fresh draw plus each round's kept images)."""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import torch

from .scorers import random_choice
from .selection import PoolCheck, check_pool, select_diverse
from .torch_model import Pool

logger = logging.getLogger(__name__)


class RoundRecord(NamedTuple):
    round: int
    scores: list[float]  # (M,) the scorer's score of every sample of the round (zeros for ``none``)
    kept: list[int]  # pool indices kept, in pick order
    passed: list[bool]  # (M,) passed the score gate
    excluded: list[bool]  # (M,) never competed: constant, or an exact copy of its shot
    threshold: float
    kept_mean: float
    rejected_mean: float  # mean score of the images that failed the gate (nan if none)
    changed_mean: float  # mean fraction of latent codes changed
    pixel_spread: float
    novelty_mean: float  # mean feature distance of the round's samples to the nearest shot (drift watch)
    collapsed: bool
    losses: dict[str, float]  # update-step means: total, reconstruction, guidance, fidelity
    seconds: float
    scorer: str = ""  # the resolved scorer
    parts: dict[str, list[float]] = {}  # raw (M,) values of every part (shot_fidelity always)


class FinalSet(NamedTuple):
    images: torch.Tensor  # (N, 3, H, W) in [0, 1], on the 8-bit grid
    scores: torch.Tensor  # (N,) the scorer's score of each image (combined: z-scored over the candidates)
    rounds: torch.Tensor  # (N,) round that produced it (``rounds`` = the final draw)
    shot_index: torch.Tensor  # (N,) which shot it was drawn from
    changed: torch.Tensor  # (N,) fraction of latent codes changed
    novelty: torch.Tensor  # (N,) feature distance to the nearest shot
    threshold: float
    candidates: int  # size of the pool the N were chosen from
    check: PoolCheck  # guards of the final draw
    parts: dict[str, torch.Tensor] = {}  # raw (N,) part values of each image


class KeptBank:
    """Every round's kept images with their raw scorer parts: the final draw chooses among them too, and a
    checkpoint carries them so a resumed fit ends as an uninterrupted one."""

    def __init__(self, pools: list[Pool] | None = None, parts: list[dict] | None = None) -> None:
        self.pools, self.parts = list(pools or []), list(parts or [])

    def __len__(self) -> int:
        return len(self.pools)

    @property
    def images(self) -> int:
        return sum(len(pool.images) for pool in self.pools)

    def add(self, pool: Pool, kept: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        """Keep ``pool``'s images at indices ``kept`` (on the CPU) and their parts."""
        self.pools.append(Pool(pool.images[kept].cpu(), pool.shot_index[kept], pool.changed[kept]))
        self.parts.append({k: v[kept] for k, v in parts.items()})

    def candidates(
        self, fresh: Pool, fresh_parts: dict[str, torch.Tensor], fresh_round: int
    ) -> tuple[Pool, torch.Tensor, dict[str, torch.Tensor]]:
        """The final draw and every round's kept images as one candidate pool, with each image's round (the
        fresh draw counts as ``fresh_round``) and its raw scorer parts."""
        pools = [fresh, *self.pools]
        candidates = Pool(*(torch.cat(column) for column in zip(*pools, strict=True)))  # (C, ...) each
        rounds = torch.cat(
            [torch.full((len(fresh.images),), fresh_round)]
            + [torch.full((len(b.images),), i) for i, b in enumerate(self.pools)]
        )
        parts = {k: torch.cat([v, *[b[k] for b in self.parts]]) for k, v in fresh_parts.items()}
        return candidates, rounds, parts


def usable(check: PoolCheck) -> torch.Tensor:
    """(M,) which samples may be kept: neither constant nor an exact copy of their shot (copies only if
    nothing else is left)."""
    eligible = ~check.constant & ~check.copies
    return eligible if eligible.any() else ~check.constant


def choose(
    scores: torch.Tensor,
    features: torch.Tensor,
    anchors: torch.Tensor,
    eligible: torch.Tensor,
    keep: int,
    pass_fraction: float,
    random_generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(kept indices in pick order, (M,) passed the gate, the gate's threshold): the score gate then
    farthest-point diversity from the shots' ``anchors``, or a uniformly random choice among the eligible when
    ``random_generator`` is given (the ``none`` scorer: everything eligible passes, no threshold)."""
    if random_generator is not None:
        kept = random_choice(len(scores), keep, eligible, random_generator)
        return kept, eligible.clone(), math.nan
    sel = select_diverse(scores, features, keep, pass_fraction, anchors, eligible)
    return sel.kept, sel.passed, sel.threshold


def round_record(
    r: int,
    pool: Pool,
    check: PoolCheck,
    scores: torch.Tensor,
    parts: dict[str, torch.Tensor],
    chosen: tuple[torch.Tensor, torch.Tensor, float],
    eligible: torch.Tensor,
    novelty: torch.Tensor,
    losses: dict[str, float],
    seconds: float,
    scorer: str,
) -> RoundRecord:
    """The record of round ``r``: what was scored, kept (``chosen`` from :func:`choose`) and why; ``novelty``
    is each sample's feature distance to the nearest shot."""
    kept, passed, threshold = chosen
    rejected = scores[~passed & eligible]  # failed the gate (excluded images never competed)
    return RoundRecord(
        round=r,
        scores=scores.tolist(),
        kept=kept.tolist(),
        passed=passed.tolist(),
        excluded=(~eligible).tolist(),
        threshold=threshold,
        kept_mean=float(scores[kept].mean()),
        rejected_mean=float(rejected.mean()) if len(rejected) else math.nan,
        changed_mean=float(pool.changed.mean()),
        pixel_spread=check.pixel_spread,
        novelty_mean=float(novelty.mean()),
        collapsed=check.collapsed,
        losses=losses,
        seconds=seconds,
        scorer=scorer,
        parts={k: v.tolist() for k, v in parts.items()},
    )


def choose_final(
    candidates: Pool,
    rounds: torch.Tensor,
    scores: torch.Tensor,
    features: torch.Tensor,
    shots: torch.Tensor,
    anchors: torch.Tensor,
    n: int,
    pass_fraction: float,
    check: PoolCheck,
    parts: dict[str, torch.Tensor] | None = None,
    random_generator: torch.Generator | None = None,
) -> FinalSet:
    """Score gate then farthest-point diversity (seeded by the shots' ``anchors``) over all candidates, or a
    uniformly random choice when ``random_generator`` is given (the ``none`` scorer).

    Exact copies of a shot are used only when too few other images exist, constant images never.

    Raises:
        ValueError: fewer than ``n`` non-constant candidates.
    """
    full = check_pool(candidates.images, shots, candidates.shot_index)
    eligible = ~full.constant & ~full.copies
    if int(eligible.sum()) < n:
        logger.warning("Integrator: only %d non-copy candidates for %d images", int(eligible.sum()), n)
        eligible = ~full.constant
    if int(eligible.sum()) < n:
        raise ValueError(f"Integrator.generate: only {int(eligible.sum())} non-constant images for n={n}")
    k, _, threshold = choose(scores, features, anchors, eligible, n, pass_fraction, random_generator)
    novelty = torch.cdist(features[k], anchors).min(dim=1).values
    return FinalSet(
        candidates.images[k],
        scores[k],
        rounds[k],
        candidates.shot_index[k],
        candidates.changed[k],
        novelty,
        threshold,
        len(candidates.images),
        check,
        {name: values[k] for name, values in (parts or {}).items()},
    )


def round_logs(record: RoundRecord, pool_score: float, parts: dict[str, torch.Tensor]) -> dict[str, float]:
    """What a round logs to Lightning's logger: its losses, kept and pool scores, spread and each part's mean."""
    logs = {f"integrator/{k}": v for k, v in record.losses.items()}
    logs |= {
        "integrator/kept_score": record.kept_mean,
        "integrator/pool_score": pool_score,
        "integrator/pixel_spread": record.pixel_spread,
        "integrator/novelty": record.novelty_mean,
        "integrator/round": float(record.round),
    }
    logs |= {f"integrator/pool_{k}": float(v.mean()) for k, v in parts.items()}
    if not math.isnan(record.threshold):
        logs["integrator/threshold"] = record.threshold
    return logs


def pool_statistics(
    scores: torch.Tensor, parts: dict[str, torch.Tensor], features: torch.Tensor, check: PoolCheck
) -> dict[str, torch.Tensor]:
    """The ``test/*`` statistics of a fresh pool: score moments, feature and pixel spread, copies, collapse."""
    stats = {
        "test/score_mean": scores.mean(),
        "test/score_std": scores.std() if len(scores) > 1 else torch.tensor(0.0),
        "test/score_min": scores.min(),
        "test/score_max": scores.max(),
        "test/feature_spread": torch.pdist(features).mean() if len(features) > 1 else torch.tensor(0.0),
        "test/pixel_spread": torch.tensor(check.pixel_spread),
        "test/copy_fraction": check.copies.float().mean(),
        "test/collapsed": torch.tensor(float(check.collapsed)),
    }
    return stats | {f"test/{k}_mean": v.mean() for k, v in parts.items()}


def rounds_to_checkpoint(history: list[RoundRecord], bank: KeptBank) -> dict[str, Any]:
    """The round history and every round's kept images with their score parts, as plain checkpoint data
    (tensors, lists, numbers: loadable with ``weights_only=True``)."""
    return {
        "history": [r._asdict() for r in history],
        "bank": [pool._asdict() for pool in bank.pools],
        "bank_parts": list(bank.parts),
    }


def rounds_from_checkpoint(saved: dict[str, Any]) -> tuple[list[RoundRecord], KeptBank]:
    """The inverse of :func:`rounds_to_checkpoint` (empty for checkpoints written before it existed)."""
    history = [RoundRecord(**record) for record in saved.get("history", [])]
    pools = [Pool(**pool) for pool in saved.get("bank", [])]
    return history, KeptBank(pools, saved.get("bank_parts", []))
