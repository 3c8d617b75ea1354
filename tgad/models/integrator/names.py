"""Names the command line and the benchmark plan need without importing torch: the Integrator's scorers."""

# How samples are judged (scorers.py); ``auto`` picks combined with real CLIP, shot_fidelity without;
# ``defect_safe`` (defect_safe.py) rewards added variation and penalises hiding synthetic defects of the shots.
SCORERS: tuple[str, ...] = ("auto", "clip_text", "shot_fidelity", "combined", "defect_safe", "none")
