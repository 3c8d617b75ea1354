"""Names the command line and the benchmark plan need without importing torch: the Integrator's scorers."""

# How samples are judged (scorers.py); ``auto`` picks combined with real CLIP, shot_fidelity without.
SCORERS: tuple[str, ...] = ("auto", "clip_text", "shot_fidelity", "combined", "none")
