"""Shared pieces of issue 23's candidate-pool analyses (``cross_shot_analysis.py``, ``defect_signal.py``,
``selection_rules.py``, ``cross_shot_transplants.py``): the committed row a seed's pool comes from, its shots,
the row's cached validator, each candidate's coverage judged alone, a rank correlation and the CSV writer."""

from __future__ import annotations

import csv
from pathlib import Path

import torch


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rho by ordinal ranks (ties broken by position, as every committed analysis figure was)."""
    ra, rb = a.argsort().argsort().float(), b.argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12))


def zscore(values: torch.Tensor, among: torch.Tensor | None = None) -> torch.Tensor:
    """z-scores with the mean and std of ``values[among]`` (all of them by default)."""
    ref = values if among is None else values[among]
    return (values - ref.mean()) / ref.std().clamp_min(1e-12)


def read_rows(results_dir: Path) -> list[dict]:
    with open(results_dir / "results.csv") as handle:
        return list(csv.DictReader(handle))


def tgad_row(rows: list[dict], seed: int, shots: int) -> dict:
    """The ``tgad`` row of ``seed`` at ``shots`` (its shots, its generated set)."""
    return next(
        r for r in rows if int(r["seed"]) == seed and r["shots"] == str(shots) and r["condition"] == "tgad"
    )


def shot_images(root: Path, category: str, shot_ids: list[str], size: int = 256) -> torch.Tensor:
    from tgad.data.images import read_resized

    return read_resized([Path(root) / category / "train" / "good" / s for s in shot_ids], size)


def cached_validator(features, results_dir: Path, category: str, shots: int, seed: int):
    """The benchmark's validator of (category, shots, seed), from the state its rows cached."""
    from tgad.evaluation.validation import ExtraSetValidator, ValidationSettings

    path = results_dir / "extra_sets" / "validation" / f"shots_{category}_k{shots}_seed{seed}.pt"
    state = torch.load(path, weights_only=True)["state"]
    return ExtraSetValidator.from_state(features, state, ValidationSettings())


@torch.no_grad()
def single_image_covers(validator, candidate_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C,) normal and (C,) defect cover of each candidate (C, P, D) when it alone joins the shots' bank: the
    relative drop of the held-out normals' / synthetic defects' mean PatchCore image score."""
    from tgad.evaluation.validation import image_scores

    normal0 = validator.normal_d0.amax(1).mean()
    defect0 = validator.defect_d0.amax(1).mean()
    normal, defect = [], []
    for bank in candidate_features:
        normal.append(1 - image_scores(validator.normal_features, validator.normal_d0, bank).mean() / normal0)
        defect.append(1 - image_scores(validator.defect_features, validator.defect_d0, bank).mean() / defect0)
    return torch.stack(normal), torch.stack(defect)


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
