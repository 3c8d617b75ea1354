"""Profile one generated ExtraSet: wall and CPU seconds per chain stage, and cProfile's top functions.

    python experiments/profile_generate.py --label before --category transistor_256 \
        --set scorer=defect_safe --set calibrate_tau=true --vqgan-iterations 300

Runs ``generate_extra_set`` in this process (a fresh folder, no fit cache) so cProfile sees every stage, and
writes ``experiments/results/first_run/generate_profile_<label>.{json,txt}``: the stage times (wall, and the
process's CPU seconds, which a busy machine inflates far less than wall time), the load average at start and
end, the recipe, and the 40 functions with the largest cumulative time. Issue 24 asks for a generated set in
<= 120 s at the ``cpu`` preset on two uncontended cores.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "results" / "first_run"


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _fingerprint(folder: Path) -> str:
    """sha256 over the set's PNGs (name and bytes, sorted): equal digests, the same generated images."""
    digest = hashlib.sha256()
    for png in sorted(folder.rglob("*.png")):
        digest.update(png.relative_to(folder).as_posix().encode() + b"\0" + png.read_bytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> dict:
    from tgad.generate.chain import generate_extra_set, request_from_flags
    from tgad.generate.stages import StageReporter
    from tgad.recipe import Recipe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", required=True, help="names the output files (e.g. before, after)")
    p.add_argument("--dataset", default="mvtec")
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "mvtec_ad"))
    p.add_argument("--category", default="transistor_256")
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vqgan-iterations", type=int, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="IntegratorConfig field")
    p.add_argument("--run", action="append", default=[], metavar="KEY=VALUE", help="RunSettings field")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    overrides = dict(kv.split("=", 1) for kv in args.set)
    recipe = Recipe.build(
        args.preset,
        run={"vqgan_iterations": args.vqgan_iterations}
        | {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.run)},
        integrator={k: _value(v) for k, v in overrides.items()},
    )

    class Timed(StageReporter):
        def __init__(self) -> None:
            self.cpu: dict[str, float] = {}
            self._start: dict[str, float] = {}

        def start(self, stage: str, total: int | None = None) -> None:
            self._start[stage] = time.process_time()

        def finish(self, stage: str, seconds: float) -> None:
            self.cpu[stage] = round(time.process_time() - self._start[stage], 2)

    reporter = Timed()
    work = Path(tempfile.mkdtemp(prefix="tgad-profile-"))
    load_start, wall_start, cpu_start = os.getloadavg(), time.perf_counter(), time.process_time()
    profile = cProfile.Profile()
    try:
        profile.enable()
        where = [getattr(args, name) for name in ("dataset", "root", "category", "shots", "seed", "n")]
        request = request_from_flags(*where, recipe, allow_random_clip=True)
        out_dir = generate_extra_set(request, work / "set", threads=args.threads, reporter=reporter).path
        profile.disable()
        manifest = json.loads((out_dir / "manifest.json").read_text())
        images = _fingerprint(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stats = io.StringIO()
    pstats.Stats(profile, stream=stats).sort_stats("cumulative").print_stats(40)
    pstats.Stats(profile, stream=stats).sort_stats("tottime").print_stats(25)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "recipe": recipe.to_dict(),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "stage_wall_seconds": {
            k.removesuffix("_seconds"): v for k, v in manifest["timings"].items() if k.endswith("_seconds")
        },
        "stage_cpu_seconds": reporter.cpu,
        "torch_threads": torch.get_num_threads(),
        "load_average_start_end": [load_start, os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "mean_abs_diff_to_shot": manifest.get("collapse", {}).get("mean_abs_diff_to_shot"),
        "tau": manifest.get("tau"),
        "images_sha256": images,
        "generator": manifest.get("generator"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"generate_profile_{args.label}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".txt").write_text(json.dumps(result, indent=2) + "\n\n" + stats.getvalue())
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
