"""Does the synthetic-defect validation predict the test? (issue 23 part 3)

Every benchmark row carries ``val_auroc`` (held-out *train* normals vs synthetic defects of them,
``tgad.evaluation.validation``) and ``image_auroc`` (the real test split). If the validation is to stand in for
the test when choosing between conditions, a condition's validation gain over ``plain_aug`` must rank like its
test gain. This script pairs every row with the ``plain_aug`` row of the same dataset, category, model,
backbone, shots, seed, preset and image size **in the same results.csv** (each CSV is its own protocol: never
paired across CSVs, which may differ in normalisation, commit or settings), takes both deltas and reports
Spearman's rho with its n, a p-value and a bootstrap 95% CI, per category, per condition and pooled, plus the
level view (``val_auroc`` vs ``image_auroc`` over all rows) and the seed-mean view (one point per protocol,
category and condition).

Rows hard-linked into several folders (``experiments/link_control_rows.py``) appear in several CSVs: a pair
whose two rows are identical (key, metrics, commit, date) is counted once.

``--column val_paired`` takes the deltas of another validation column (issue 23: the paired score of
``experiments/revalidate.py``); the predictors table always lists every validation column the CSVs have, so
one run gives the pooled and per-category rho of ``val_auroc`` and ``val_paired`` side by side. ``--label``
names the synthetic-defect family (or anything else) in the README's title. ``--column val_auroc_own`` ranks
each row by its own detector's kind of bank: ``val_auroc_gaussian`` (a Gaussian per position) for PaDiM rows,
``val_auroc`` (PatchCore's nearest patch) for the others, derived where a CSV has both.

Usage: python experiments/validation_correlation.py [--out DIR] [--column COL] [--label TEXT] CSV_OR_GLOB...
  e.g. python experiments/validation_correlation.py 'experiments/results/**/results.csv'
       python experiments/validation_correlation.py --label v2 --out DIR path/results_val_v2.csv
"""

from __future__ import annotations

import argparse
import glob
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

PAIR_KEY = ("dataset", "category", "model", "backbone", "shots", "seed", "preset", "image_size")
ROW_ID = (*PAIR_KEY, "condition", "scorer", "n_gen", "val_auroc", "image_auroc", "git_commit", "date")
BASELINE = "plain_aug"
OWN = "val_auroc_own"  # derived where a CSV has val_auroc_gaussian (benchmark rows since issue 23)


def read_results(paths: list[Path], column: str = "val_auroc") -> pd.DataFrame:
    """The rows with a ``column`` value of every CSV, with a ``source`` column (the CSV's path); CSVs without
    that column are skipped."""
    frames = []
    for path in paths:
        frame = pd.read_csv(path, dtype={"scorer": str, "git_commit": str, "validation_family": str})
        if column == OWN and OWN not in frame.columns and "val_auroc_gaussian" in frame.columns:
            # each row by its own detector's kind of bank: PaDiM rows by the Gaussian, the others by PatchCore
            frame[OWN] = frame["val_auroc"].where(frame["model"] != "padim", frame["val_auroc_gaussian"])
        if column not in frame.columns:
            continue
        frame = frame[frame[column].notna() & frame["image_auroc"].notna()].copy()
        frame["scorer"] = frame["scorer"].fillna("")
        frame["source"] = str(path)
        frames.append(frame)
    if not frames:
        raise SystemExit(f"validation_correlation: no results.csv with {column} among the given files")
    return pd.concat(frames, ignore_index=True)


def pair_with_baseline(rows: pd.DataFrame, column: str = "val_auroc") -> pd.DataFrame:
    """One line per non-baseline row: its deltas (``d_val`` of ``column``) against the ``plain_aug`` row of the
    same PAIR_KEY in the same CSV (rows without one are dropped); pairs duplicated across CSVs are kept once,
    first source wins."""
    base = rows[rows["condition"] == BASELINE]
    other = rows[rows["condition"] != BASELINE]
    keys = ["source", *PAIR_KEY]
    if base.duplicated(keys).any():
        dup = base[base.duplicated(keys, keep=False)].iloc[0]
        raise SystemExit(
            f"{dup['source']}: two {BASELINE} rows for one {PAIR_KEY}; split that CSV by protocol"
        )
    pairs = other.merge(base, on=keys, suffixes=("", "_base"))
    pairs["d_val"] = pairs[column] - pairs[f"{column}_base"]
    pairs["d_test"] = pairs["image_auroc"] - pairs["image_auroc_base"]
    identity = [*ROW_ID, *(f"{c}_base" for c in ROW_ID if c not in PAIR_KEY)]
    return pairs.drop_duplicates(identity).reset_index(drop=True)


def spearman(x: np.ndarray, y: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Spearman's rho (ties at average ranks), its n, scipy's two-sided p-value and a percentile bootstrap 95%
    CI over the points; rho is NaN when either side is constant (e.g. a class whose test AUROC is 1.0 everywhere).
    The points are not independent (pairs share a plain_aug row and seeds), so the p and CI are optimistic."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    out = {"n": n, "rho": np.nan, "p": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    rho, p = stats.spearmanr(x, y)
    out.update(rho=float(rho), p=float(p))
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, (n_boot, n))  # (B, n) resampled point indices
    keep = (np.ptp(x[i], axis=1) > 0) & (np.ptp(y[i], axis=1) > 0)
    rx, ry = stats.rankdata(x[i][keep], axis=1), stats.rankdata(y[i][keep], axis=1)  # (B', n) average ranks
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    boots = (rx * ry).sum(1) / np.sqrt((rx**2).sum(1) * (ry**2).sum(1))  # Pearson of ranks = Spearman
    if len(boots):
        out.update(ci_low=float(np.percentile(boots, 2.5)), ci_high=float(np.percentile(boots, 97.5)))
    return out


def table(frame: pd.DataFrame, by: str | None, x: str, y: str) -> pd.DataFrame:
    """Spearman of ``x`` vs ``y`` per value of ``by`` and over everything (``all``)."""
    groups = [] if by is None else list(frame.groupby(by, sort=True))
    lines = [{"group": str(name), **spearman(g[x], g[y])} for name, g in groups]
    lines.append({"group": "all", **spearman(frame[x], frame[y])})
    return pd.DataFrame(lines)


PREDICTORS = (
    "val_auroc",
    "val_auroc_gaussian",
    "val_paired",
    "val_normal_cov",
    "val_defect_cov",
    "val_margin",
    "val_spread",
)


def predictors(rows: pd.DataFrame) -> pd.DataFrame:
    """Each validation column's delta against plain_aug as a predictor of the test delta, pooled and per
    category (``val_margin`` = normal_cov - defect_cov, the validation's own "useful set" criterion): is a
    better summary of the same validation enough, or must the synthetic defects change?"""
    rows = rows.assign(val_margin=rows["val_normal_cov"] - rows["val_defect_cov"])
    pairs = pair_with_baseline(rows)
    lines = []
    for column in [c for c in PREDICTORS if c in pairs]:  # val_paired: revalidated CSVs only
        delta = pairs[column] - pairs[f"{column}_base"]
        ok = delta.notna()  # spread is empty for the shots (no extra set)
        line = {"column": column, **spearman(delta[ok], pairs["d_test"][ok])}
        for cat, g in pairs[ok].groupby("category"):
            line[f"rho {cat}"] = spearman(g[column] - g[f"{column}_base"], g["d_test"], n_boot=0)["rho"]
        lines.append(line)
    return pd.DataFrame(lines)


def seed_means(pairs: pd.DataFrame) -> pd.DataFrame:
    """One point per (protocol, category, condition, scorer): the deltas averaged over seeds."""
    keys = ["source", "dataset", "category", "condition", "scorer"]
    return pairs.groupby(keys, as_index=False).agg(d_val=("d_val", "mean"), d_test=("d_test", "mean"))


def levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Per category: the validation and the test level of shots and plain_aug, how often the validation of
    plain_aug saturates (>= 0.99) and how often a test delta is exactly 0 (the test saturates)."""
    lines = []
    for cat, g in rows.drop_duplicates(list(ROW_ID)).groupby("category"):
        shots, plain = g[g["condition"] == "shots"], g[g["condition"] == BASELINE]
        lines.append(
            {
                "category": cat,
                "val_auroc_shots": g["val_auroc_shots"].mean(),
                "test_shots": shots["image_auroc"].mean(),
                "val_plain_aug": plain["val_auroc"].mean(),
                "test_plain_aug": plain["image_auroc"].mean(),
                "val_saturated": (plain["val_auroc"] >= 0.99).mean(),
                "test_saturated": (g["image_auroc"] >= 0.999).mean(),
            }
        )
    return pd.DataFrame(lines)


def signal(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per category: how large the deltas are, how often the test delta is exactly 0 (ties that no validation
    can rank), and the share of the test delta's variance that lies between conditions rather than between seeds
    (a low share caps any rank correlation of single pairs)."""
    lines = []
    for cat, g in pairs.groupby("category"):
        cells = ["source", "condition", "scorer"]
        multi = g[g.groupby(cells)["d_test"].transform("size") > 1]  # one-seed cells have no within variance
        within = (multi["d_test"] - multi.groupby(cells)["d_test"].transform("mean")).var()
        total = multi["d_test"].var()
        lines.append(
            {
                "category": cat,
                "n": len(g),
                "mean_abs_d_val": g["d_val"].abs().mean(),
                "mean_abs_d_test": g["d_test"].abs().mean(),
                "d_test_zero": (g["d_test"] == 0).mean(),
                "between_condition_share": 1 - within / total if total > 0 else np.nan,
            }
        )
    return pd.DataFrame(lines)


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (no tabulate dependency)."""
    cells = frame.map(lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()]
    return "\n".join(lines)


def report(rows: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table of the README, by title."""
    means = seed_means(pairs)
    return {
        "Deltas against plain_aug, per category": table(pairs, "category", "d_val", "d_test"),
        "Deltas against plain_aug, per condition": table(pairs, "condition", "d_val", "d_test"),
        "Deltas against plain_aug, per preset": table(pairs, "preset", "d_val", "d_test"),
        "Deltas against plain_aug, per detector and k": table(
            pairs.assign(cell=pairs["model"] + " k=" + pairs["shots"].astype(str)), "cell", "d_val", "d_test"
        ),
        "Deltas against plain_aug, per category and preset": table(
            pairs.assign(cell=pairs["category"] + " / " + pairs["preset"]), "cell", "d_val", "d_test"
        ),
        "Deltas against plain_aug, per results.csv (protocol)": table(pairs, "source", "d_val", "d_test"),
        "Seed-mean deltas (one point per protocol, category, condition)": table(
            means, "category", "d_val", "d_test"
        ),
        "Levels: val_auroc vs image_auroc over all rows, per category": table(
            rows.drop_duplicates(list(ROW_ID)), "category", "val_auroc", "image_auroc"
        ),
        "Every validation column's delta as a predictor of the test delta": predictors(rows),
        "Validation and test levels per category": levels(rows),
        "Size and noise of the deltas per category": signal(pairs),
    }


def readme(
    rows: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    argv: list[str] | None,
    out: Path,
    column: str = "val_auroc",
    label: str = "",
) -> str:
    """The command, the inputs with their commits, every table, then ``interpretation.md`` of the output folder
    (hand-written: what the numbers mean) when it exists, so a re-run keeps it."""
    words = sys.argv[1:] if argv is None else argv
    command = " ".join(["python experiments/validation_correlation.py", *map(shlex.quote, words)])
    lines = [
        "# Does the synthetic-defect validation predict the test? (issue 23 part 3)"
        + (f": {label}" if label else ""),
        "",
        "Generated by `experiments/validation_correlation.py` (its docstring says how rows are paired). Command:",
        "",
        f"    {command}",
        "",
        f"Spearman's rho of ({column} - {column} of plain_aug) vs (image_auroc - image_auroc of plain_aug), "
        "paired within each results.csv; n = distinct pairs; p from scipy, CI from 2000 bootstrap resamples of "
        "the points (optimistic: pairs share seeds and plain_aug rows). Pairs: `pairs.csv`.",
        "",
    ]
    notes = out / "interpretation.md"
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    for title, frame in tables.items():
        frame = (
            frame.assign(group=frame["group"].str.replace("experiments/results/", ""))
            if "group" in frame
            else frame
        )
        lines += [f"## {title}", "", markdown(frame), ""]
    lines += [
        "## Inputs",
        "",
        "| results.csv | rows with val_auroc | git_commit of its rows |",
        "|---|---|---|",
    ]
    for source, g in rows.groupby("source"):
        lines.append(f"| {source} | {len(g)} | {', '.join(sorted(set(g['git_commit'].astype(str))))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("globs", nargs="+", help="results.csv paths or globs (quote them; ** is recursive)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/validation_correlation"))
    parser.add_argument("--column", default="val_auroc", help="the validation column whose delta is ranked")
    parser.add_argument("--label", default="", help="named in the README's title, e.g. the family: v2")
    args = parser.parse_args(argv)
    paths = sorted({Path(p) for g in args.globs for p in glob.glob(g, recursive=True)})
    if not paths:
        raise SystemExit(
            f"validation_correlation: no file matches {args.globs}; give results.csv paths or globs"
        )
    rows = read_results(paths, args.column)
    pairs = pair_with_baseline(rows, args.column)
    tables = report(rows, pairs)
    args.out.mkdir(parents=True, exist_ok=True)
    cols = ["source", *PAIR_KEY, "condition", "scorer", args.column, f"{args.column}_base", "image_auroc"]
    pairs[[*cols, "image_auroc_base", "d_val", "d_test"]].to_csv(args.out / "pairs.csv", index=False)
    (args.out / "README.md").write_text(readme(rows, tables, argv, args.out, args.column, args.label))
    for title, frame in tables.items():
        print(f"## {title}\n{frame.to_string(index=False)}\n")
    label = f"{args.label}: " if args.label else ""
    print(f"{label}{len(pairs)} distinct pairs from {rows['source'].nunique()} CSVs; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
