"""Try tgad as a new user would, with bad input of every kind the fail-fast issue lists, and write a table of
what each command answered (exit code and its last stderr line).

    python experiments/fail_fast_survey.py --out experiments/results/fail_fast

Every case runs ``tgad`` in a fresh process on small fixture folders under a temporary directory (tiny preset,
offline). Read-only and tiny file systems are tmpfs mounts; where this process may not mount, those cases say
so. Writes ``survey.md`` and ``survey.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers.datasets import write_mvtec  # noqa: E402
from tgad.assets.cache import atomic_file  # noqa: E402


@contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False):
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", str(where)], capture_output=True)


def fixtures(base: Path) -> dict[str, Path]:
    """Fixture folders and files the cases point at."""
    data = base / "data"
    write_mvtec(data)
    jpeg_root, mask_root = base / "jpeg", base / "mask"
    category = write_mvtec(jpeg_root)
    first = sorted((category / "train" / "good").glob("*.png"))[0]
    first.unlink()
    jpeg = first.with_suffix(".jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size * 2 // 3])
    category = write_mvtec(mask_root)
    mask = sorted((category / "ground_truth" / "hole").glob("*_mask.png"))[0]
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(mask)
    files = {"data": data, "jpeg_root": jpeg_root, "mask_root": mask_root}
    (base / "a_file").write_text("mine")
    files["a_file"] = base / "a_file"
    torch.save({"w": torch.zeros(4096)}, base / "whole.ckpt")
    (base / "truncated.ckpt").write_bytes((base / "whole.ckpt").read_bytes()[:3000])
    (base / "garbage.ckpt").write_bytes(b"this is not a checkpoint\n" * 40)
    torch.save({"state_dict": {}, "extra": Path("x")}, base / "pickled_clip.pt")
    (base / "broken.yaml").write_text("model:\n  class_path: x\n   init_args: [\n")
    for name, content in {
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00" * 20,
        "foreign": b"name,score\nwidget,0.5\n",
        "empty": b"",
    }.items():
        target = base / f"csv_{name}" / "mvtec" / "tiny" / "results.csv"
        target.parent.mkdir(parents=True)
        target.write_bytes(content)
        files[f"csv_{name}"] = base / f"csv_{name}"
    return files | {"base": base}


def cases(f: dict[str, Path]) -> list[tuple[str, list[str], dict[str, str]]]:
    """(label, tgad arguments, extra environment) per bad input."""
    b, d = f["base"], ["--dataset", "mvtec", "--root", str(f["data"])]
    gen = ["generate", *d, "--category", "widget", "--preset", "tiny", "--n", "2", "--allow-random-clip"]
    bench = ["benchmark", *d, "--categories", "widget", "--preset", "tiny", "--n-gen", "2", "--no-wandb",
             "--no-progress", "--allow-random-clip", "--keywords", "widget=metal nut"]  # fmt: skip
    res = ["--results-dir", str(b / "results")]
    vq = ["--config", str(REPO / "conf" / "variance_vqgan" / "tiny.yaml")]
    check = ["data", "check", "--dataset", "mvtec", "--category", "widget"]
    return [
        ("1 benchmark --results-dir is a file", [*bench, "--results-dir", str(f["a_file"])], {}),
        ("1 benchmark --results-dir under a file", [*bench, "--results-dir", str(f["a_file"] / "r")], {}),
        ("1 benchmark --results-dir read-only", [*bench, "--results-dir", str(b / "ro")], {}),
        ("1 generate --out under a file", [*gen, "--out", str(f["a_file"] / "out")], {}),
        ("1 generate --out is a file", [*gen, "--out", str(f["a_file"])], {}),
        ("1 generate --out read-only", [*gen, "--out", str(b / "ro" / "out")], {}),
        ("2 benchmark --shots 1 99", [*bench, *res, "--shots", "1", "99"], {}),
        ("2 benchmark --clip-weights missing", [*bench, *res, "--clip-weights", str(b / "nope.pt")], {}),
        ("2 benchmark --seeds -1", [*bench, *res, "--seeds", "-1"], {}),
        ("2 benchmark --image-size -8", [*bench, *res, "--image-size", "-8"], {}),
        ("2 benchmark --image-size 0", [*bench, *res, "--image-size", "0"], {}),
        ("2 benchmark --models typo", [*bench, *res, "--models", "patchcor"], {}),
        ("2 benchmark --n-gen 0", [*bench, *res, "--n-gen", "0"], {}),
        ("2 benchmark --keywords without =", [*bench, *res, "--keywords", "widget"], {}),
        ("2 benchmark --shots abc", [*bench, *res, "--shots", "abc"], {}),
        ("3 results.csv binary", [*bench, "--results-dir", str(f["csv_binary"])], {}),
        ("3 results.csv foreign CSV", [*bench, "--results-dir", str(f["csv_foreign"])], {}),
        (
            "3 results.csv empty (healed: warning, then runs)",
            [*bench, "--results-dir", str(f["csv_empty"]), "--conditions", "shots"],
            {},
        ),  # fmt: skip
        (
            "4 benchmark on a 256 KiB file system",
            [*bench, "--results-dir", str(b / "small"), "--n-gen", "64", "--image-size", "256"],
            {},
        ),  # fmt: skip
        ("4 generate on a 256 KiB file system", [*gen, "--n", "512", "--out", str(b / "small" / "out")], {}),
        ("6 generate --shots 0", [*gen, "--out", str(b / "o"), "--shots", "0"], {}),
        ("6 generate --n 0", [*gen, "--out", str(b / "o"), "--n", "0"], {}),
        ("6 generate --seed -1", [*gen, "--out", str(b / "o"), "--seed", "-1"], {}),
        ("6 generate --shots 99", [*gen, "--out", str(b / "o"), "--shots", "99"], {}),
        ("6 test --ckpt_path missing", ["test", *vq, "--ckpt_path", str(b / "missing.ckpt")], {}),
        ("6 test --ckpt_path truncated", ["test", *vq, "--ckpt_path", str(b / "truncated.ckpt")], {}),
        ("6 test --ckpt_path garbage", ["test", *vq, "--ckpt_path", str(b / "garbage.ckpt")], {}),
        ("6 TGAD_THREADS=abc generate", [*gen, "--out", str(b / "o")], {"TGAD_THREADS": "abc"}),
        ("6 TGAD_THREADS=abc benchmark", [*bench, *res], {"TGAD_THREADS": "abc"}),
        ("7 data check truncated JPEG", [*check, "--root", str(f["jpeg_root"])], {}),
        ("7 data check empty mask of a defect", [*check, "--root", str(f["mask_root"])], {}),
        (
            "8 benchmark typo'd embedded category",
            ["benchmark", "--dataset", "embedded", "--categories", "brik", "--no-wandb", *res],
            {},
        ),  # fmt: skip
        (
            "8 generate CLIP file with pickled objects",
            [*gen, "--out", str(b / "o"), "--clip-weights", str(b / "pickled_clip.pt")],
            {},
        ),  # fmt: skip
        ("8 generate without CLIP weights", [*gen[:-1], "--out", str(b / "o")], {}),
        ("8 data check missing --root", [*check, "--root", str(b / "nowhere")], {}),
        (
            "8 benchmark offline, dataset absent",
            [
                "benchmark",
                "--dataset",
                "mvtec",
                "--root",
                str(b),
                "--categories",
                "bottle",
                "--no-wandb",
                *res,
            ],
            {},
        ),  # fmt: skip
        ("8 fit --config with a YAML syntax error", ["fit", "--config", str(b / "broken.yaml")], {}),
        ("8 fit --config missing", ["fit", "--config", str(b / "nope.yaml")], {}),
    ]


def run_case(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    full_env = os.environ | {"TGAD_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"} | env
    done = subprocess.run([sys.executable, "-m", "tgad.cli.main", *argv], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=600)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    warnings = [line for line in lines if line.startswith("WARNING")]
    return done.returncode, (errors or warnings or lines or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "fail_fast")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tgad-survey-") as tmp, ExitStack() as stack:
        base = Path(tmp)
        os.environ["TGAD_CACHE"] = str(base / "cache")
        mounted = {
            "ro": stack.enter_context(tmpfs(base / "ro", "1m", read_only=True)),
            "small": stack.enter_context(tmpfs(base / "small", "256k")),
        }
        f = fixtures(base)
        for label, argv, env in cases(f):
            needs = next((m for m in mounted if f"{base}/{m}" in " ".join(argv)), None)
            if needs and not mounted[needs]:
                rows.append({"case": label, "exit": None, "message": "skipped: cannot mount a tmpfs here"})
                continue
            code, line = run_case(argv, env)
            rows.append({"case": label, "exit": code, "message": line.replace(tmp, "$TMP")})
            print(f"{code}  {label}: {rows[-1]['message'][:150]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "survey.json") as handle:
        json.dump(rows, handle, indent=2)
    table = ["| # | bad input | exit | message (stderr) |", "|---|---|---|---|"]
    for i, row in enumerate(rows, 1):
        message = row["message"].replace("|", "\\|")
        table.append(f"| {i} | {row['case']} | {row['exit']} | {message} |")
    with atomic_file(args.out / "survey.md") as handle:
        handle.write("# Fail-fast survey (issue 15)\n\n`python experiments/fail_fast_survey.py`\n\n")
        handle.write("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
