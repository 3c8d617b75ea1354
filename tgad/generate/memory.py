"""Whether a generation's final draw fits in this machine's memory, asked before any compute.

The final stage holds every candidate image at once (about ``final_pool_factor * N`` fresh draws plus the
rounds' kept images, then the chosen N), as float32 at the generator's side: ``--preset paper --n 100000``
would need hundreds of GB and used to pass every check, to fail (or swap) only after the generator's fit.
"""

from __future__ import annotations

import math
import os

from tgad.recipe import Recipe

GIB = 1 << 30


def final_draw_bytes(recipe: Recipe, n: int) -> int:
    """About the bytes the final draw of ``n`` images holds: the candidates and the chosen N, float32."""
    cfg, side = recipe.integrator, recipe.run.generator_image_size
    bank = cfg.keep * cfg.rounds  # every round's kept images compete in the final draw
    candidates = max(math.ceil(cfg.final_pool_factor * n), n + bank)
    return (candidates + n) * 3 * side * side * 4


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def final_draw_problem(recipe: Recipe, n: int, available: int | None = None) -> str | None:
    """Why ``n`` final images do not fit in memory (None when they do, or when memory is unknown)."""
    available = available_memory() if available is None else available
    need = final_draw_bytes(recipe, n)
    if available is None or need <= available:
        return None
    per_image = final_draw_bytes(recipe, 1000) / 1000
    most = max(1, int(available / per_image))
    side, factor = recipe.run.generator_image_size, recipe.integrator.final_pool_factor
    return (
        f"the final draw holds about {need / GIB:.1f} GiB of images in memory ({factor:g} x N candidates and the "
        f"N chosen, {side} px, float32) and {available / GIB:.1f} GiB are available; ask for at most about "
        f"{most} images per run (several seeds give more)"
    )
