"""Issue 26, items 9-16: bad values are refused before any compute, in one line; signals end a benchmark with
128 + signum and say how to resume; EXIF orientation is honoured. One test (or one parametrized test) per
item; each failed before its fix."""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.datasets import write_mvtec
from tgad.cli.main import main

REPO = Path(__file__).resolve().parents[1]
TINY_VQGAN = str(REPO / "conf" / "variance_vqgan" / "tiny.yaml")


def _one_line_error(capsys, culprit: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert err.startswith("error:") and "\n" not in err, err
    assert culprit in err, err
    return err


def _benchmark(root: Path, results: Path, *extra: str) -> list[str]:
    return ["benchmark", "--dataset", "mvtec", "--root", str(root), "--categories", "widget", "--preset",
            "tiny", "--n-gen", "2", "--results-dir", str(results), "--no-wandb", "--no-progress",
            "--allow-random-clip", "--keywords", "widget=metal nut", *extra]  # fmt: skip


# 9. Non-finite and out-of-range settings, at every entry point ------------------------------------------------
@pytest.mark.parametrize("value", [".nan", ".inf", "-1"])
def test_9_nonfinite_or_negative_tau_is_refused_before_any_compute(value, mvtec_root, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(_benchmark(mvtec_root, results, "--set", f"tau={value}")) == 2
    err = _one_line_error(capsys, f"--set tau={value}")
    assert "[0, inf)" in err
    assert not results.exists()


def test_9_every_config_refuses_nan_inf_and_out_of_range():
    from tgad.models.integrator.config import IntegratorConfig, UpdateSettings
    from tgad.models.presets import SettingError
    from tgad.models.variance_vqgan.config import VQGANConfig
    from tgad.recipe import Recipe

    bad = [
        lambda: IntegratorConfig(tau=math.nan),
        lambda: IntegratorConfig.preset("tiny", learning_rate=math.inf),  # the recipe and --set entry
        lambda: IntegratorConfig(patch_fraction=1.5),
        lambda: UpdateSettings(guidance_weight=-0.5),
        lambda: VQGANConfig().override(ema_decay=math.nan),  # in its group (training)
        lambda: VQGANConfig(channel_mult=(1, 0)),
        lambda: Recipe.build("tiny", run={"detector_image_size": 100_000}),
        lambda: Recipe.build("tiny", prompt={"text_batch_size": 0}),
    ]
    for make in bad:
        with pytest.raises(SettingError):
            make()
    limit = IntegratorConfig().override(max_implausible=math.inf).calibration.max_implausible
    assert limit == math.inf  # inf = "no limit" stays


def test_9_yaml_through_lightning_cli_is_one_line(capsys):
    integrator = str(REPO / "conf" / "integrator" / "tiny.yaml")
    assert main(["fit", "--config", integrator, "--model.init_args.config.tau=.nan"]) == 2
    assert "out of range" in _one_line_error(capsys, "IntegratorConfig: tau=nan")


@pytest.mark.parametrize(
    ("setting", "culprit"),
    [({"image_size": 100_000}, "image_size=100000"), ({"shot_seed": 2**32}, "shot_seed=4294967296"),
     ({"shots": 0}, "shots=0"), ({"eval_batch_size": 0}, "batch sizes")],
)  # fmt: skip
def test_9_datamodule_numbers_are_checked_where_it_is_built(setting, culprit, tmp_path):
    from tgad.data import DATAMODULES, DataError

    with pytest.raises(DataError, match=culprit):
        DATAMODULES["mvtec"](root=str(tmp_path), category="widget", **setting)


# 10. Values that failed late (after a fit, after an extra set was written, or allocating 120 GB) ------------
@pytest.mark.parametrize(
    ("extra", "culprit"),
    [
        (("--set", "patch_fraction=1.5"), "patch_fraction=1.5"),
        (("--seeds", "4294967296"), "--seeds 4294967296"),
        (("--image-size", "100000"), "--image-size 100000"),
        (("--image-size", "16", "--models", "efficient_ad"), "efficient_ad needs an image side >= 256"),
    ],
)
def test_10_late_failures_are_refused_before_any_row(extra, culprit, mvtec_root, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(_benchmark(mvtec_root, results, "--allow-random-backbone", *extra)) == 2
    _one_line_error(capsys, culprit)
    assert not (results / "mvtec" / "tiny" / "results.csv").exists()
    assert not (results / "mvtec" / "tiny" / "extra_sets").exists()


# 11. Every test image and mask is decoded before the first row; the verdict is cached ------------------------
def _truncated_jpeg(path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])


def test_11_truncated_test_jpeg_is_refused_before_any_row(mvtec_root, tmp_path, capsys):
    good = mvtec_root / "widget" / "test" / "good"
    (good / "000.png").unlink()
    _truncated_jpeg(good / "000.jpg")
    results = tmp_path / "results"
    assert main(_benchmark(mvtec_root, results, "--conditions", "shots", "tgad")) == 2
    assert "cannot decode" in _one_line_error(capsys, str(good / "000.jpg"))
    assert not (results / "mvtec" / "tiny" / "extra_sets").exists()


def test_11_decode_verdicts_are_cached_by_size_and_mtime(tmp_path):
    from tgad.data import DATAMODULES
    from tgad.data.deep_check import decode_all

    category = write_mvtec(tmp_path)
    samples = DATAMODULES["mvtec"](root=str(tmp_path), category="widget").index()
    assert decode_all(samples) == len(samples)  # first run: every image decoded
    assert decode_all(samples) == 0  # nothing changed: nothing decoded
    image = category / "test" / "good" / "001.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert decode_all(samples) == 1  # a touched file is decoded again


# 12. The final draw's memory is checked before any compute -----------------------------------------------------
def test_12_final_draw_larger_than_memory_is_refused(tmp_path, capsys):
    from tgad.generate.memory import GIB, final_draw_bytes, final_draw_problem
    from tgad.recipe import Recipe

    paper = Recipe.build("paper")
    assert final_draw_bytes(paper, 100_000) > 300 * GIB  # 4 x N candidates + N at 256 px, float32
    assert final_draw_problem(paper, 64, available=16 * GIB) is None
    assert "at most about" in final_draw_problem(paper, 100_000, available=16 * GIB)
    out = tmp_path / "out"
    argv = ["generate", "--dataset", "embedded", "--category", "brick", "--preset", "paper", "--n", "1000000",
            "--out", str(out), "--allow-random-clip"]  # fmt: skip
    assert main(argv) == 2
    assert "GiB of images in memory" in _one_line_error(capsys, "--n 1000000")
    assert not out.exists()


# 13. A file name that is not UTF-8 is named by the data check and the preflight --------------------------------
def test_13_non_utf8_file_name_is_refused(mvtec_root, tmp_path, capsys):
    train = mvtec_root / "widget" / "train" / "good"
    raw = os.fsencode(train) + b"/caf\xe9.png"
    with open(raw, "wb") as handle:
        handle.write((train / "000.png").read_bytes())
    check = ["data", "check", "--dataset", "mvtec", "--root", str(mvtec_root), "--category", "widget"]
    assert main(check) == 2
    assert "not UTF-8 (byte 0xe9)" in _one_line_error(capsys, "caf\\xe9.png")
    assert main(_benchmark(mvtec_root, tmp_path / "results", "--conditions", "shots")) == 2
    _one_line_error(capsys, "caf\\xe9.png")


# 14. SIGTERM and SIGINT: exit 128 + signum, and where the run stopped ------------------------------------------
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_14_signal_stops_with_128_plus_signum_and_says_how_to_resume(
    signum, code, mvtec_root, tmp_path, capsys, monkeypatch
):
    from lightning.pytorch.loops.fit_loop import _FitLoop

    run, fits = _FitLoop.run, []

    def run_then_signal(self):  # the signal arrives inside the second row's fit, under Lightning's handlers
        fits.append(1)
        if len(fits) == 2:
            os.kill(os.getpid(), signum)
        return run(self)

    monkeypatch.setattr(_FitLoop, "run", run_then_signal)
    argv = _benchmark(
        mvtec_root, tmp_path / "results", "--conditions", "shots", "--seeds", "0", "1", "2", "3"
    )
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert err.startswith(f"stopped: stopped by {name} during widget k=1 seed=1 shots patchcore"), err
    csv = tmp_path / "results" / "mvtec" / "tiny" / "results.csv"
    assert "1 of 4 rows finished this run" in err and str(csv) in err and "run the same command again" in err
    # the header and the one whole row: a re-run resumes after it
    assert len(csv.read_text().splitlines()) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.slow  # a fresh interpreter imports torch, Lightning and anomalib: ~40 s on a busy 2-core machine
def test_14_sigterm_ends_a_benchmark_with_143(mvtec_root, tmp_path):
    results = tmp_path / "results"
    argv = _benchmark(mvtec_root, results, "--conditions", "shots", "--seeds", *map(str, range(12)))
    env = os.environ | {"PYTHONPATH": str(REPO), "TGAD_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tgad.cli.main", *argv], stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)  # fmt: skip
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "rows to run" in line or not line:
            break
    time.sleep(1.0)  # into the rows
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, "".join(lines) + rest
    last = rest.strip().splitlines()[-1]
    assert "stopped by SIGTERM during" in last and "run the same command again" in last, rest
    csv = results / "mvtec" / "tiny" / "results.csv"
    assert str(csv) in last
    done = len(csv.read_text().splitlines()) - 1 if csv.exists() else 0
    assert done < 12  # it stopped; the rows written are whole (the next run resumes after them)


# 15. Messages that were not one clear line ---------------------------------------------------------------------
def test_15_lightning_cli_config_error_is_one_line(capsys):
    assert main(["fit", "--config", TINY_VQGAN, "--model.init_args.bogus", "3"]) == 2
    err = _one_line_error(capsys, "bogus")
    assert "--help" in err and "usage" not in err


def test_15_crafted_checkpoint_is_named_without_unsafe_advice(tmp_path, capsys):
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": argparse.Namespace(a=1)}, crafted)
    assert main(["test", "--config", TINY_VQGAN, "--ckpt_path", str(crafted)]) == 2
    err = _one_line_error(capsys, str(crafted))
    assert "argparse.Namespace" in err and "weights_only=False" not in err


@pytest.mark.parametrize(
    ("name", "make", "kind"),
    [
        ("plots", lambda p: p.write_text("mine"), "a file"),
        ("results.csv.lock", lambda p: p.mkdir(), "a folder"),
        ("results.csv", lambda p: os.mkfifo(p), "a FIFO"),
    ],
)
def test_15_something_in_the_way_is_named_before_any_row(name, make, kind, mvtec_root, tmp_path, capsys):
    out = tmp_path / "results" / "mvtec" / "tiny"
    out.mkdir(parents=True)
    make(out / name)
    assert main(_benchmark(mvtec_root, tmp_path / "results", "--conditions", "shots")) == 2
    err = _one_line_error(capsys, str(out / name))
    assert f"{out / name}: {kind}" in err
    assert not (out / "results.csv").is_file()  # no row was computed (and lost)


def test_15_mkdir_over_a_file_is_said_plainly():
    from tgad.cli.errors import describe

    err = FileExistsError(17, "File exists", "/r/plots")
    text = describe(err)
    assert "[Errno 17]" not in text and "/r/plots" in text and "move it away" in text


def test_15_results_csv_with_a_byte_order_mark_is_read(tmp_path):
    from tgad.benchmark.results import COLUMNS, ResultsCSV
    from tgad.benchmark.results_repair import repair_results

    path = tmp_path / "results.csv"
    row = {c: "" for c in COLUMNS} | {"dataset": "mvtec", "category": "widget", "model": "patchcore",
           "backbone": "b", "shots": "1", "seed": "0", "condition": "shots", "n_gen": "0", "preset": "tiny",
           "image_size": "64", "image_auroc": "0.9"}  # fmt: skip
    ResultsCSV(path).append(row)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))  # as a spreadsheet saves
    assert repair_results(path) is None  # whole, not "its header lacks dataset"
    assert ResultsCSV(path).rows()[0]["dataset"] == "mvtec"
    ResultsCSV(path).append(row | {"seed": "1"})
    assert [r["seed"] for r in ResultsCSV(path).rows()] == ["0", "1"]


# 16. EXIF orientation ---------------------------------------------------------------------------------------------
def test_16_exif_orientation_is_applied(tmp_path):
    from tgad.data.images import read_rgb
    from tgad.data.indexing import validate_samples

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20, 0] = 255  # stored 40 wide x 20 high, its left half red
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to show": upright it is 20 wide x 40 high, red on top
    path = tmp_path / "upright.jpg"
    image.save(path, exif=exif, quality=95)
    rgb = read_rgb(path)
    assert rgb.shape == (3, 40, 20)
    assert rgb[0, :15].mean() > 0.9 and rgb[0, 25:].mean() < 0.1
    import pandas as pd

    samples = pd.DataFrame([{"image_path": str(path), "mask_paths": (), "label_index": 0}])
    checked = validate_samples(samples)
    assert (checked.width[0], checked.height[0]) == (20, 40)  # the header check agrees with the reader
