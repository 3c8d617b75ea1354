"""experiments/validation_correlation.py on generated results CSVs: a known Spearman rho, pairing only within
one CSV, and rows hard-linked into two folders counted once."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from tgad.benchmark.results import COLUMNS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import validation_correlation as vc  # noqa: E402


def _row(category: str, seed: int, condition: str, val: float, test: float, commit: str = "abc") -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        dataset="embedded", category=category, model="patchcore", backbone="b", shots=1, seed=seed,
        condition=condition, scorer="defect_safe" if condition == "tgad" else "", n_gen=64, preset="cpu",
        image_size=64, val_auroc=val, val_auroc_shots=0.5, image_auroc=test, git_commit=commit, date=f"d{seed}",
    )  # fmt: skip
    return row


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _protocol() -> list[dict]:
    """Five seeds; tgad's val deltas 0.1..0.5 and test deltas ranked 1, 2, 3, 5, 4: rho = 1 - 6*2/120 = 0.9."""
    rows = []
    for seed, (d_val, d_test) in enumerate(
        zip([0.1, 0.2, 0.3, 0.4, 0.5], [0.01, 0.02, 0.03, 0.05, 0.04], strict=True)
    ):
        rows += [
            _row("grass", seed, "plain_aug", 0.4, 0.8),
            _row("grass", seed, "tgad", 0.4 + d_val, 0.8 + d_test),
        ]
    return rows


def test_known_rho_counts_linked_rows_once_and_never_pairs_across_csvs(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "results.csv", _protocol())
    _write(tmp_path / "a_linked" / "results.csv", _protocol())  # the same rows hard-linked: no new pair
    # another protocol with tgad rows but no plain_aug: nothing to pair with (not a.csv's plain_aug)
    _write(
        tmp_path / "b" / "results.csv", [_row("grass", s, "tgad", 0.9, 0.1, commit="other") for s in range(5)]
    )
    out = tmp_path / "out"
    assert vc.main([str(tmp_path / "*" / "results.csv"), "--out", str(out)]) == 0

    rows = vc.read_results(sorted(tmp_path.glob("*/results.csv")))
    pairs = vc.pair_with_baseline(rows)
    assert len(pairs) == 5 and set(pairs["source"]) == {str(tmp_path / "a" / "results.csv")}
    result = vc.spearman(pairs["d_val"], pairs["d_test"])
    assert result["n"] == 5 and result["rho"] == pytest.approx(0.9)
    assert result["ci_low"] <= 0.9 <= result["ci_high"]
    readme = (out / "README.md").read_text()
    assert "| all | 5 | 0.900 |" in readme and "other" in readme  # b's commit listed among the inputs
    assert len((out / "pairs.csv").read_text().splitlines()) == 6


def test_constant_test_delta_gives_nan_not_a_number(tmp_path: Path) -> None:
    """A class whose test AUROC is saturated (delta 0 everywhere) has no rank order: rho is NaN, n still counted."""
    result = vc.spearman([0.1, 0.2, 0.3], [0.0, 0.0, 0.0])
    assert result["n"] == 3 and result["rho"] != result["rho"]


def test_two_baselines_for_one_key_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "results.csv", [_row("grass", 0, "plain_aug", 0.5, 0.8)] * 2)
    with pytest.raises(SystemExit, match="two plain_aug rows"):
        vc.pair_with_baseline(vc.read_results([path]))


def test_val_auroc_own_takes_the_gaussian_for_padim_rows_and_the_nearest_patch_for_the_rest(
    tmp_path: Path,
) -> None:
    rows = []
    for model, gaussian in (("patchcore", 0.1), ("padim", 0.7)):
        row = _row("a", 0, "plain_aug", 0.5, 0.9) | {"model": model, "val_auroc_gaussian": gaussian}
        rows.append(row)
    frame = vc.read_results([_write(tmp_path / "results.csv", rows)], vc.OWN).set_index("model")
    assert frame.loc["patchcore", vc.OWN] == 0.5 and frame.loc["padim", vc.OWN] == 0.7
