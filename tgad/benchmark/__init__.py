"""The main job: does generating normal images help a detector, per category, and by how much?

``tgad benchmark`` plans categories x shots x seeds x conditions x models (``plan``), runs each missing row
(``runner``), appends it to the results CSV (``results``) and writes the summary, plots (``report``,
``plots``) and a W&B run (``tracking``). Import the submodules; this package imports nothing heavy.
"""
