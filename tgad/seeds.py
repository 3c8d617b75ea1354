"""Named seed streams: every random draw of a run takes its seed from (run seed, purpose, round), here.

The Integrator's streams, as ``seed * 1000 + offset`` (the values earlier versions wrote inline, so every
result stays the same):

=============  =================  ==========================================================================
purpose        seed                what it draws
=============  =================  ==========================================================================
``draw``       ``+ r``             round r's pool of ``samples_per_round`` samples
``keep``       ``+ 250 + r``       round r's kept subset when the scorer is ``none`` (the draw's seed + 250)
``update``     ``+ 500 + r``       round r's update steps (crops, differentiable samples)
``calibrate``  ``+ 333``           the samples of the tau calibration (every tau on the ladder)
``test``       ``+ 777``           the fresh batch ``Integrator.test`` scores
``final``      ``+ 999``           the final draw
``final_keep`` ``+ 1249``          the final random choice with ``none`` (the final draw's seed + 250)
=============  =================  ==========================================================================

Round streams live in ``[0, 1000)`` beside the once-per-run ones, so they meet one when rounds run long: the
first meeting is round 83's ``keep`` (250 + 83) with ``calibrate`` (333). ``MAX_ROUNDS`` = 83 rounds (r < 83)
keeps every stream of a run distinct; ``IntegratorConfig`` refuses more rounds (``tests/test_seeds.py``).
"""

from __future__ import annotations

KEEP_OFFSET = 250  # a random choice among a draw's images: the draw's seed + 250
MAX_ROUNDS = 83  # rounds r = 0..82: round 83's keep stream would be the calibration's (250 + 83 = 333)
_PER_ROUND = {"draw": 0, "keep": KEEP_OFFSET, "update": 500}
_ONCE = {"calibrate": 333, "test": 777, "final": 999, "final_keep": 999 + KEEP_OFFSET}
PURPOSES = (*_PER_ROUND, *_ONCE)


def seed_for(seed: int, purpose: str, round: int = 0) -> int:  # noqa: A002 - the stream's round, by name
    """The seed of ``purpose``'s stream in round ``round`` of a run seeded ``seed`` (table above).

    Raises:
        ValueError: an unknown purpose, or a round outside ``[0, MAX_ROUNDS)``.
    """
    if purpose in _ONCE:
        return seed * 1000 + _ONCE[purpose]
    if purpose not in _PER_ROUND:
        raise ValueError(f"seed_for: unknown purpose {purpose!r}; choose one of {list(PURPOSES)}")
    if not 0 <= round < MAX_ROUNDS:
        raise ValueError(
            f"seed_for: round {round} outside [0, {MAX_ROUNDS}); more rounds would reuse another stream's seed"
        )
    return seed * 1000 + _PER_ROUND[purpose] + round
