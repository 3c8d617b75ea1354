"""Label-free calibration of the generator's spread, from the shots alone.

The noise scale tau trades variety for safety: too small and the samples are copies of the shot (nothing for a
detector to learn), too large and they start to look like defects. tgad climbs a ladder of tau values, draws a
few samples at each, and keeps the largest tau whose samples hide synthetic defects of the shots
(``defect_safe``'s ``defect_cover``, on average) by at most ``max_defect_cover`` and, when ``max_implausible``
is finite, whose patches stay within the shots' own variation (``implausible``: patch distance beyond the
shots' internal radius, worst 5 %, on average) up to that limit. The defect limit alone rarely binds (a few
generated images seldom hide a synthetic defect, so tau ran to the top of the ladder and painted invented
texture); the implausibility limit binds where the samples start to show structures the shot does not have.
Only the shots and what is synthesised from them enter; no held-out image, no test image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .defect_safe import DefectSafe

TAU_LADDER = (0.5, 1.0, 2.0, 4.0, 8.0)


def calibrate_tau(
    draw: Callable[[float, int], torch.Tensor],
    safe: DefectSafe,
    max_defect_cover: float,
    max_implausible: float = float("inf"),
    ladder: tuple[float, ...] = TAU_LADDER,
    samples: int = 8,
) -> tuple[float, list[dict[str, float]]]:
    """(chosen tau, one record per tau tried). ``draw(tau, n)`` returns n samples (n, 3, H, W) in [0, 1].

    The ladder stops at the first tau over the limit (larger ones only hide more); the smallest tau is the
    answer when even it is over."""
    chosen, records = ladder[0], []
    for tau in sorted(ladder):
        parts = safe.score_parts(draw(tau, samples))
        record = {"tau": tau, **{k: float(v.mean()) for k, v in parts.items()}}
        records.append(record)
        if record["defect_cover"] > max_defect_cover or record["implausible"] > max_implausible:
            break
        chosen = tau
    return chosen, records
