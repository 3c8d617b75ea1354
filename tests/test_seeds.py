"""Named seed streams (``tgad/seeds.py``): the values the Integrator once wrote inline, and no two streams of one
run share a seed for any round count the config accepts."""

from __future__ import annotations

import pytest

from tgad.models.integrator.config import IntegratorConfig
from tgad.models.presets import SettingError
from tgad.seeds import MAX_ROUNDS, seed_for

# the inline offsets of integrator/lightning_model.py before tgad/seeds.py (commit ab58e1e)
INLINE_PER_ROUND = {"draw": 0, "keep": 250, "update": 500}
INLINE_ONCE = {"calibrate": 333, "test": 777, "final": 999, "final_keep": 999 + 250}


def _inline(seed: int, rounds: int) -> dict[tuple[str, int], int]:
    """Every seed a run of ``rounds`` rounds drew from, by (purpose, round), as the inline formulas gave them."""
    per_round = {(p, r): seed * 1000 + o + r for p, o in INLINE_PER_ROUND.items() for r in range(rounds)}
    return per_round | {(p, 0): seed * 1000 + o for p, o in INLINE_ONCE.items()}


def _collisions(streams: dict[tuple[str, int], int]) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    first: dict[int, tuple[str, int]] = {}
    out = []
    for key, value in streams.items():
        if value in first:
            out.append((first[value], key))
        first.setdefault(value, key)
    return out


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_seed_for_gives_the_inline_values(seed):
    """Bit-identical results: every stream of every accepted round is the seed the inline formula gave."""
    assert {key: seed_for(seed, *key) for key in _inline(seed, MAX_ROUNDS)} == _inline(seed, MAX_ROUNDS)


def test_no_two_streams_meet_for_the_round_counts_the_config_accepts():
    """With the inline layout round 83's random keep (250 + 83) is the tau calibration's seed (333), so a run of
    84 rounds with ``scorer=none`` and ``calibrate_tau`` drew both from one stream. The config now stops at
    ``MAX_ROUNDS`` = 83 (before, it accepted any count and this test failed at ``rounds=84``)."""
    assert _collisions(_inline(0, MAX_ROUNDS)) == []
    assert _collisions(_inline(0, MAX_ROUNDS + 1)) == [(("keep", MAX_ROUNDS), ("calibrate", 0))]
    assert IntegratorConfig(rounds=MAX_ROUNDS).rounds == MAX_ROUNDS
    with pytest.raises(SettingError, match="rounds=84 is out of range"):
        IntegratorConfig(rounds=MAX_ROUNDS + 1)
    with pytest.raises(ValueError, match="round 83 outside"):
        seed_for(0, "keep", MAX_ROUNDS)
    with pytest.raises(ValueError, match="unknown purpose"):
        seed_for(0, "drawing")
