"""The report of ``experiments/first_run.sh``: wall time per stage of the main job, from its results folder.

Stages: the install, each extra set (and, for generated sets, the chain's own stages from their manifests:
data, prompt, generator, integrator, final, write) and each row (fit, test, the rest: validation and plots).
Writes ``first_run.json`` and ``first_run.md`` and copies the run's ``summary.md`` and ``results.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
from collections import defaultdict
from pathlib import Path


def _manifest_stages(results: Path) -> list[dict]:
    """The chain's stage timings of every generated set under ``results/extra_sets``."""
    out = []
    for manifest in sorted(results.glob("extra_sets/**/manifest.json")):
        data = json.loads(manifest.read_text())
        timings = data.get("timings", {})
        if data.get("kind") != "tgad" or "generator_seconds" not in timings:
            continue
        out.append(
            {
                "category": data.get("category"),
                "set": manifest.parent.name,
                **{k.removesuffix("_seconds"): v for k, v in timings.items()},
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--install-seconds", type=float, required=True)
    p.add_argument("--total-seconds", type=float, required=True)
    p.add_argument("--load-start", default="")
    p.add_argument("--commit", default="")
    p.add_argument("--reuse-venv", default="0")
    args = p.parse_args(argv)

    rows = list(csv.DictReader((args.results / "results.csv").open()))
    per_condition: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        cond = row["condition"] + (f"_{row['scorer']}" if row.get("scorer") else "")
        for column in ("extra_seconds", "fit_seconds", "test_seconds"):
            per_condition[cond][column] += float(row[column] or 0)
        per_condition[cond]["rows"] += 1
    benchmark_seconds = args.total_seconds - args.install_seconds
    accounted = sum(sum(v for k, v in c.items() if k != "rows") for c in per_condition.values())
    result = {
        "command": "experiments/first_run.sh" + (" (REUSE_VENV=1)" if args.reuse_venv == "1" else ""),
        "commit": args.commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_start": args.load_start,
        "total_seconds": round(args.total_seconds, 1),
        "install_seconds": round(args.install_seconds, 1),
        "benchmark_seconds": round(benchmark_seconds, 1),
        "rows": len(rows),
        "per_condition_seconds": {
            k: {c: round(v, 1) for c, v in d.items()} for k, d in per_condition.items()
        },
        "other_seconds": round(benchmark_seconds - accounted, 1),  # start-up, validation, plots, summary
        "generated_set_stages": _manifest_stages(args.results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "first_run.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# The main job on a fresh clone (`experiments/first_run.sh`)",
        "",
        f"commit {args.commit}, {result['machine']}, load average at start {args.load_start}",
        "",
        f"**{result['total_seconds'] / 60:.1f} min in total**: install {result['install_seconds']:.0f} s, "
        f"`make benchmark` {result['benchmark_seconds']:.0f} s ({len(rows)} rows).",
        "",
        "| condition | rows | extra set s | fit s | test s |",
        "|---|---|---|---|---|",
    ]
    for cond, d in result["per_condition_seconds"].items():
        lines.append(
            f"| {cond} | {d['rows']:.0f} | {d['extra_seconds']:.1f} | {d['fit_seconds']:.1f} | "
            f"{d['test_seconds']:.1f} |"
        )
    lines += [
        "",
        f"Not in a row (start-up, validation, plots, summary): {result['other_seconds']:.0f} s.",
        "",
    ]
    stages = result["generated_set_stages"]
    if stages:
        names = [k for k in stages[0] if k not in ("category", "set")]
        lines += ["| generated set | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for s in stages:
            lines.append(f"| {s['category']} | " + " | ".join(f"{s.get(n, 0):.1f}" for n in names) + " |")
    (args.out / "first_run.md").write_text("\n".join(lines) + "\n")
    for name in ("summary.md", "results.csv"):
        shutil.copyfile(args.results / name, args.out / name)
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
