"""Names the command line and the benchmark plan need without importing torch: the Integrator's scorers."""

from typing import Literal, get_args

# How samples are judged (scorers.py); ``auto`` picks combined with real CLIP, shot_fidelity without;
# ``defect_safe`` (defect_safe.py) rewards added variation and penalises hiding synthetic defects of the shots.
# The one list: the Literal is what LightningCLI validates ``conf/*.yaml`` against, SCORERS what argparse offers.
ScorerName = Literal["auto", "clip_text", "shot_fidelity", "combined", "defect_safe", "none"]
SCORERS: tuple[str, ...] = get_args(ScorerName)
