"""Try tgad as a new user would, with bad input of every kind the fail-fast issues (15, 26) list, and write a
table of what each command answered (exit code and its last stderr line).

    python experiments/fail_fast_survey.py --out experiments/results/fail_fast

Every case runs ``tgad`` in a fresh process on small fixture folders under a temporary directory (tiny preset,
offline). Read-only and tiny file systems are tmpfs mounts; where this process may not mount, those cases say
so. Writes ``survey.md`` and ``survey.json`` atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
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
    files = {"data": data, "jpeg_root": jpeg_root, "mask_root": mask_root} | issue_26_fixtures(base)
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


def issue_26_fixtures(base: Path) -> dict[str, Path]:
    """Issue 26's inputs: a truncated test JPEG, a file name that is not UTF-8, a checkpoint with a pickled
    object, and results folders with a BOM CSV, a FIFO, a lock folder and a file named plots."""
    test_jpeg = write_mvtec(base / "test_jpeg")
    good = test_jpeg / "test" / "good"
    (good / "000.png").unlink()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(good / "000.jpg", quality=95)
    (good / "000.jpg").write_bytes((good / "000.jpg").read_bytes()[:400])
    train = write_mvtec(base / "latin1") / "train" / "good"
    with open(os.fsencode(train) + b"/caf\xe9.png", "wb") as handle:
        handle.write((train / "000.png").read_bytes())
    torch.save({"state_dict": {}, "payload": argparse.Namespace(a=1)}, base / "crafted.ckpt")
    from tgad.benchmark.results import COLUMNS

    made = {"test_jpeg": base / "test_jpeg", "latin1": base / "latin1"}
    for name in ("bom", "fifo", "lock", "plots"):
        out = base / f"r_{name}" / "mvtec" / "tiny"
        out.mkdir(parents=True)
        made[f"r_{name}"] = base / f"r_{name}"
    (base / "r_bom/mvtec/tiny/results.csv").write_bytes(
        b"\xef\xbb\xbf" + ",".join(COLUMNS).encode() + b"\r\n"
    )
    os.mkfifo(base / "r_fifo/mvtec/tiny/results.csv")
    (base / "r_lock/mvtec/tiny/results.csv.lock").mkdir()
    (base / "r_plots/mvtec/tiny/plots").write_text("mine")
    # items 4 and 8: an --out folder holding a user's note beside a set, a test image hard-linked into train
    notes = base / "o4"
    notes.mkdir()
    (notes / "manifest.json").write_text("{}")
    (notes / "NOTES.txt").write_text("mine")
    leak = write_mvtec(base / "leak")
    os.link(leak / "test" / "good" / "000.png", leak / "train" / "good" / "leak21.png")
    return made | {"o4": notes, "leak": base / "leak"}


def issue_26_cases(f: dict[str, Path], bench: list[str], res: list[str]) -> list[tuple[str, list[str], dict]]:
    """Issue 26: items 1-2, 4, 7-8 and 9-15 (3, a crafted manifest, and 5-6 need a finished run first, and 16,
    EXIF orientation, is not an error: tests/test_security.py and tests/test_bad_values.py)."""
    b = f["base"]
    traversing = [*bench[:6], "../../../../tmp/x/widget", *bench[7:]]
    security = [
        ("1 benchmark --categories ../../../../tmp/x/widget", [*traversing, *res], {}),
        ("1 benchmark --results-dir inside the category", [*bench, "--results-dir", str(f["data"] / "widget")], {}),
        ("2 benchmark --name ../../escape", [*bench, *res, "--name", "../../escape"], {}),
        ("2 benchmark --name /tmp/absolute", [*bench, *res, "--name", "/tmp/absolute"], {}),
        ("4 generate --out holding a user's file", ["generate", *bench[1:5], "--category", "widget", "--preset",
            "tiny", "--n", "2", "--allow-random-clip", "--out", str(f["o4"])], {}),
        ("7 benchmark --seeds 0 0 --shots 1 1 (one row)", [*bench, "--results-dir", str(b / "r7"), "--conditions",
            "shots", "--seeds", "0", "0", "--shots", "1", "1"], {}),
        ("8 benchmark a test image hard-linked into train", [*bench[:4], str(f["leak"]), *bench[5:], *res,
            "--conditions", "shots"], {}),
    ]  # fmt: skip
    vq = ["--config", str(REPO / "conf" / "variance_vqgan" / "tiny.yaml")]
    at = {name: ["--results-dir", str(f[name])] for name in ("r_bom", "r_fifo", "r_lock", "r_plots")}
    shots = ["--conditions", "shots"]
    return (
        security
        + [
            ("9 benchmark --set tau=.nan", [*bench, *res, "--set", "tau=.nan"], {}),
            ("9 benchmark --set tau=.inf", [*bench, *res, "--set", "tau=.inf"], {}),
            ("9 benchmark --set tau=-1", [*bench, *res, "--set", "tau=-1"], {}),
            (
                "9 fit integrator YAML with --model.init_args.tau=.nan",
                [
                    "fit",
                    "--config",
                    str(REPO / "conf" / "integrator" / "tiny.yaml"),
                    "--model.init_args.tau=.nan",
                ],
                {},
            ),  # fmt: skip
            ("10 benchmark --set patch_fraction=1.5", [*bench, *res, "--set", "patch_fraction=1.5"], {}),
            ("10 benchmark --seeds 4294967296", [*bench, *res, "--seeds", "4294967296"], {}),
            ("10 benchmark --image-size 100000", [*bench, *res, "--image-size", "100000"], {}),
            (
                "10 benchmark --image-size 16 --models efficient_ad",
                [*bench, *res, "--image-size", "16", "--models", "efficient_ad", "--allow-random-backbone"],
                {},
            ),  # fmt: skip
            ("11 benchmark truncated test JPEG", [*bench[:4], str(f["test_jpeg"]), *bench[5:], *res], {}),
            (
                "12 generate --preset paper --n 100000",
                [
                    "generate",
                    "--dataset",
                    "embedded",
                    "--category",
                    "brick",
                    "--preset",
                    "paper",
                    "--n",
                    "100000",
                    "--out",
                    str(b / "o12"),
                    "--allow-random-clip",
                ],
                {},
            ),  # fmt: skip
            (
                "13 data check non-UTF-8 file name",
                ["data", "check", "--dataset", "mvtec", "--root", str(f["latin1"]), "--category", "widget"],
                {},
            ),  # fmt: skip
            (
                "13 benchmark non-UTF-8 file name",
                [*bench[:4], str(f["latin1"]), *bench[5:], *res, *shots],
                {},
            ),
            (
                "14 benchmark SIGTERM 1 s into the rows",
                [*bench, "--results-dir", str(b / "r14"), *shots, "--seeds", *map(str, range(8))],
                {"SIGNAL": "SIGTERM"},
            ),  # fmt: skip
            (
                "14 benchmark SIGINT 1 s into the rows",
                [*bench, "--results-dir", str(b / "r14i"), *shots, "--seeds", *map(str, range(8))],
                {"SIGNAL": "SIGINT"},
            ),  # fmt: skip
            ("15 fit --model.init_args.bogus 3", ["fit", *vq, "--model.init_args.bogus", "3"], {}),
            (
                "15 test --ckpt_path with a pickled object",
                ["test", *vq, "--ckpt_path", str(b / "crafted.ckpt")],
                {},
            ),
            ("15 benchmark plots is a file", [*bench, *at["r_plots"], *shots], {}),
            ("15 results.csv with a BOM and CRLF (runs)", [*bench, *at["r_bom"], *shots], {}),
            ("15 results.csv is a FIFO", [*bench, *at["r_fifo"], *shots], {}),
            ("15 results.csv.lock is a folder", [*bench, *at["r_lock"], *shots], {}),
        ]
    )


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
        *issue_26_cases(f, bench, res),
    ]


def run_case(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    env = dict(env)
    stop = env.pop("SIGNAL", None)
    full_env = os.environ | {"TGAD_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"} | env
    if stop:
        code, stderr = _signalled([sys.executable, "-m", "tgad.cli.main", *argv], full_env, stop)
    else:
        done = subprocess.run([sys.executable, "-m", "tgad.cli.main", *argv], capture_output=True, text=True,
                              env=full_env, cwd=REPO, timeout=600)  # fmt: skip
        code, stderr = done.returncode, done.stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "stopped:"))]
    warnings = [line for line in lines if line.startswith("WARNING")]
    return code, (errors or warnings or lines or [""])[-1]


def _signalled(command: list[str], env: dict[str, str], name: str) -> tuple[int, str]:
    """Start ``command``, send it signal ``name`` one second after its rows start; (exit code, stderr)."""
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    seen = []
    while line := proc.stderr.readline():
        seen.append(line)
        if "rows to run" in line:
            time.sleep(1.0)
            proc.send_signal(getattr(signal, name))
            break
    rest = proc.stderr.read()
    return proc.wait(timeout=600), "".join(seen) + rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "fail_fast")
    parser.add_argument(
        "--only",
        default=None,
        metavar="TEXT",
        help="re-run the cases whose label holds TEXT; keep the others' rows",
    )
    args = parser.parse_args()
    rows = []
    kept = {r["case"]: r for r in json.loads((args.out / "survey.json").read_text())} if args.only else {}
    with tempfile.TemporaryDirectory(prefix="tgad-survey-") as tmp, ExitStack() as stack:
        base = Path(tmp)
        os.environ["TGAD_CACHE"] = str(base / "cache")
        mounted = {
            "ro": stack.enter_context(tmpfs(base / "ro", "1m", read_only=True)),
            "small": stack.enter_context(tmpfs(base / "small", "256k")),
        }
        f = fixtures(base)
        for label, argv, env in cases(f):
            if args.only and args.only not in label and label in kept:
                rows.append(kept[label])
                continue
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
        handle.write("# Fail-fast survey (issues 15 and 26)\n\n`python experiments/fail_fast_survey.py`\n\n")
        handle.write("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
