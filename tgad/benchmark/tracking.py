"""Weights & Biases for a benchmark: one run with the config, per-row metrics, the results table, the
summary, the plots and the extra sets as artifacts.

Offline unless the user chose otherwise (``WANDB_MODE`` is set to ``offline`` only when unset; ``wandb sync``
uploads later). A W&B failure of any kind is logged once and turns tracking off: it never stops a benchmark.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)


def _safe(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.run is None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as err:  # W&B must never end a benchmark
            log.warning(
                "W&B %s failed (%s: %s); tracking is off for this run",
                method.__name__,
                type(err).__name__,
                err,
            )
            self.run = None
            return None

    return wrapper


class Tracker:
    """A W&B run, or nothing (``enabled=False``, ``WANDB_MODE=disabled``, wandb missing or failing)."""

    def __init__(self, enabled: bool, name: str, config: Mapping[str, object], out_dir: Path) -> None:
        self.run = None
        if not enabled or os.environ.get("WANDB_MODE") == "disabled":
            return
        try:
            os.environ.setdefault("WANDB_MODE", "offline")
            import wandb

            out_dir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "tgad"),
                name=name,
                dir=str(out_dir),
                config=dict(config),
                job_type="benchmark",
                reinit="finish_previous",
            )
            log.info("W&B run %s (mode %s) in %s", name, os.environ.get("WANDB_MODE"), out_dir)
        except Exception as err:
            log.warning("W&B could not start (%s: %s); continuing without it", type(err).__name__, err)
            self.run = None

    @_safe
    def log_row(self, row: Mapping[str, object], step: int) -> None:
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        variant = f"{row['condition']}[{row['scorer']}]" if row.get("scorer") else row["condition"]
        prefix = f"{row['category']}/{row['model']}/k{row['shots']}/{variant}"
        self.run.log({f"{prefix}/{k}": v for k, v in metrics.items()} | {"rows_done": step}, step=step)

    @_safe
    def log_results(
        self,
        rows: list[Mapping[str, str]],
        summary_md: Path,
        plots: Iterable[Path],
        extra_sets: Iterable[Path],
    ) -> None:
        import wandb

        if rows:
            columns = list(rows[0])
            self.run.log(
                {"results": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])}
            )
        self.run.summary["summary_markdown"] = summary_md.read_text()
        images = {f"plots/{p.stem}": wandb.Image(str(p)) for p in plots if p.is_file()}
        if images:
            self.run.log(images)
        for folder in extra_sets:
            name = f"extra_set-{folder.parent.parent.name}-{folder.parent.name}-{folder.name}"
            artifact = wandb.Artifact(name, type="extra_set")
            artifact.add_dir(str(folder))
            self.run.log_artifact(artifact)

    @_safe
    def finish(self) -> None:
        self.run.finish()
        self.run = None
