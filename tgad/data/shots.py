"""Deterministic k-shot choice: everyone who has a dataset draws the same shots for the same (k, seed).

Rule: order the training file names by the SHA-256 of the name (a fixed permutation that depends on nothing
but the names: no RNG implementation, platform or Python hash seed), then seed ``s`` takes the ``k`` names of
block ``s`` (positions ``s*k .. s*k+k-1``, wrapping around). So seeds draw *different* shots as long as the
train set allows (``random.Random(seed).sample`` often repeats images across seeds on real classes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tgad.data.errors import DataError

# Seeds reach numpy and Lightning's ``seed_everything``, which take 0 .. 2**32 - 1 (a larger one failed only
# after the first extra set was written).
MAX_SEED = 2**32 - 1


def shot_order(names: Sequence[str]) -> list[str]:
    """The fixed permutation of the sorted names that every seed's block is cut from."""
    unique = sorted(set(names))
    return sorted(unique, key=lambda name: (hashlib.sha256(name.encode("utf-8")).hexdigest(), name))


def choose_shots(names: Sequence[str], k: int | None, seed: int = 0) -> list[str]:
    """The ``k`` names for ``seed`` (all names, sorted, when ``k`` is None). Returned in block order."""
    unique = sorted(set(names))
    if k is None:
        return unique
    if k < 1:
        raise DataError(f"shots={k}: must be a positive number of images (or None for the full train set)")
    if k > len(unique):
        raise DataError(
            f"shots={k} is larger than the train set ({len(unique)} images); use shots <= {len(unique)}"
        )
    if not 0 <= seed <= MAX_SEED:
        raise DataError(f"shot_seed={seed}: must be in 0 .. {MAX_SEED}")
    order = shot_order(unique)
    start = (seed * k) % len(order)
    return [order[(start + i) % len(order)] for i in range(k)]


def resolve_shot_ids(names: Sequence[str], shot_ids: Sequence[str], where: str) -> list[str]:
    """Check an explicit shot list against the train set: names may be given with or without extension."""
    by_name = {n: n for n in names}
    by_stem = {n.rsplit(".", 1)[0]: n for n in names}
    chosen = []
    for shot in shot_ids:
        match = by_name.get(shot) or by_stem.get(shot)
        if match is None:
            raise DataError(
                f"shot_ids: {shot!r} is not a training image of {where}; use file names from train/good"
            )
        chosen.append(match)
    if len(set(chosen)) != len(chosen):
        raise DataError(f"shot_ids: {list(shot_ids)} names an image twice; give each shot once")
    return chosen
