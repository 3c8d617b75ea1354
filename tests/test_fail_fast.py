"""Issue 15: every bad input is one line on stderr (exit code 2) naming the culprit, before any compute, and
leaves nothing half-written. One parametrized test per kind of failure the issue lists."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.datasets import write_mvtec
from tgad.cli.main import main

REPO = Path(__file__).resolve().parents[1]
TINY_VQGAN = str(REPO / "conf" / "variance_vqgan" / "tiny.yaml")


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size: a snapshot to compare before and after a refused command."""
    if not root.exists():
        return {}
    if root.is_file():
        return {str(root): root.stat().st_size}
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(capsys, culprit: str, after_progress: bool = False) -> str:
    """The error line; stderr holds nothing else (but the progress lines of a run that had started)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    if after_progress:
        assert [line.startswith("error:") for line in err.splitlines()].count(True) == 1, err
        err = err.splitlines()[-1]
    assert err.startswith("error:") and "\n" not in err, err
    assert culprit in err, err
    return err


@contextmanager
def mounted_tmpfs(where: Path, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs at ``where`` (skips the test where this process may not mount one)."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'mount failed'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)


def _benchmark(root: Path, results: Path, *extra: str) -> list[str]:
    return ["benchmark", "--dataset", "mvtec", "--root", str(root), "--categories", "widget", "--preset",
            "tiny", "--n-gen", "2", "--results-dir", str(results), "--no-wandb", "--no-progress",
            "--allow-random-clip", "--keywords", "widget=metal nut", *extra]  # fmt: skip


def _generate(root: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--dataset", "mvtec", "--root", str(root), "--category", "widget", "--preset", "tiny",
            "--n", "2", "--out", str(out), "--allow-random-clip", *extra]  # fmt: skip


# 1. Output locations are checked before any compute --------------------------------------------------------
@pytest.mark.parametrize("command", ["benchmark", "generate"])
def test_1_output_under_a_file_is_refused_at_once(command, mvtec_root, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    argv = (
        _benchmark(mvtec_root, blocker) if command == "benchmark" else _generate(mvtec_root, blocker / "out")
    )
    assert main(argv) == 2
    _one_line_error(capsys, str(blocker))
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize("command", ["benchmark", "generate"])
def test_1_read_only_output_is_refused_at_once(command, mvtec_root, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "ro", read_only=True) as ro:
        argv = _benchmark(mvtec_root, ro) if command == "benchmark" else _generate(mvtec_root, ro / "out")
        assert main(argv) == 2
        assert "cannot write" in _one_line_error(capsys, str(ro))
        assert _files(ro) == {}


# 2. The benchmark preflight checks every (k, seed), the image size and the CLIP weights --------------------
@pytest.mark.parametrize(
    ("extra", "culprit"),
    [
        (("--shots", "1", "99"), "--shots 99"),
        (("--seeds", "0", "-1"), "--seeds -1"),
        (("--image-size", "-8"), "--image-size -8"),
        (("--image-size", "0"), "--image-size 0"),
        (("--clip-weights", "missing/clip.pt"), "--clip-weights missing/clip.pt"),
        (("--models", "patchcore", "no_such_model"), "no_such_model"),
    ],
)
def test_2_benchmark_preflight_refuses_before_any_row(extra, culprit, mvtec_root, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(_benchmark(mvtec_root, results, *extra)) == 2
    _one_line_error(capsys, culprit)
    assert not results.exists()  # no row ran, no folder was made


# 3. A results.csv that is not tgad's is one line naming it (damaged rows heal: test_results_repair.py) -----
@pytest.mark.parametrize(
    ("content", "culprit"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00garbage" * 10, "binary data"),
        ("catégorie;Größe\nwidget;0,5\n".encode("latin-1"), "not UTF-8"),
        (b"name,score\nwidget,0.5\n", "not a tgad results CSV"),
    ],
)
def test_3_foreign_results_csv_is_one_line(content, culprit, mvtec_root, tmp_path, capsys):
    results = tmp_path / "results"
    csv_path = results / "mvtec" / "tiny" / "results.csv"
    csv_path.parent.mkdir(parents=True)
    csv_path.write_bytes(content)
    before = _files(results)
    assert main(_benchmark(mvtec_root, results, "--conditions", "shots")) == 2
    err = _one_line_error(capsys, str(csv_path))
    assert culprit in err and "--name" in err
    assert _files(results) == before


# 4. Disk full: refused when the plan does not fit; a full disk mid-run is one line and nothing half-written --
def test_4_too_little_space_is_refused_before_any_row(mvtec_root, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "small", size="256k") as small:
        argv = _benchmark(
            mvtec_root, small, "--n-gen", "64", "--image-size", "256", "--conditions", "plain_aug"
        )
        assert main(argv) == 2
        assert "free on its device" in _one_line_error(capsys, str(small))
        assert _files(small) == {}


def test_4_disk_full_mid_run_is_one_line_and_keeps_only_whole_rows(mvtec_root, tmp_path, capsys, monkeypatch):
    import tgad.cli.preflight as preflight
    from tgad.benchmark.results import ResultsCSV
    from tgad.benchmark.results_repair import repair_results

    monkeypatch.setattr(preflight, "benchmark_bytes", lambda config, rows: 0)  # let the run meet a full disk
    with mounted_tmpfs(tmp_path / "small", size="96k") as small:
        argv = _benchmark(mvtec_root, small, "--conditions", "shots", "plain_aug", "--seeds", "0", "1")
        assert main(argv) == 2
        assert "no space left" in _one_line_error(capsys, str(small), after_progress=True)
        out = small / "mvtec" / "tiny"
        assert repair_results(out / "results.csv") is None  # absent or whole, never cut
        for row in ResultsCSV(out / "results.csv").rows():  # a row is there only with its files
            if row["seed"] == "0":
                assert (out / "plots" / f"maps_patchcore_widget_k1_{row['condition']}.png").is_file()
        assert not list(out.rglob(".*.partial"))


# 6. Tracebacks that became one line --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "culprit"),
    [(("--shots", "0"), "--shots 0"), (("--n", "0"), "--n 0"), (("--seed", "-1"), "--seed -1")],
)
def test_6_generate_numbers(extra, culprit, mvtec_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*_generate(mvtec_root, out), *extra]) == 2
    _one_line_error(capsys, culprit)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def _checkpoint(kind: str, path: Path) -> Path:
    if kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(4096)}}, path)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 40)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["missing", "truncated", "garbage", "empty", "folder"])
def test_6_lightning_checkpoint_is_checked_first(kind, tmp_path, capsys):
    ckpt = _checkpoint(kind, tmp_path / "last.ckpt")
    assert main(["test", "--config", TINY_VQGAN, "--ckpt_path", str(ckpt)]) == 2
    _one_line_error(capsys, f"--ckpt_path {ckpt}")


@pytest.mark.parametrize("command", ["benchmark", "generate"])
def test_6_bad_thread_count(command, mvtec_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TGAD_THREADS", "abc")
    argv = (
        _benchmark(mvtec_root, tmp_path / "r")
        if command == "benchmark"
        else _generate(mvtec_root, tmp_path / "o")
    )
    assert main(argv) == 2
    _one_line_error(capsys, "TGAD_THREADS='abc'")
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_6_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("TGAD_DEBUG", "1")
    with pytest.raises(ValueError, match="--ckpt_path"):
        main(["test", "--config", TINY_VQGAN, "--ckpt_path", str(tmp_path / "missing.ckpt")])


# 7. data check decodes every image and flags empty masks -----------------------------------------------------
def _truncated_jpeg(category: Path) -> Path:
    first = sorted((category / "train" / "good").glob("*.png"))[0]
    rng = np.random.default_rng(0)
    jpeg = first.with_suffix(".jpg")
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size * 2 // 3])  # header intact: verify() passes
    return jpeg


def _empty_mask(category: Path) -> Path:
    mask = sorted((category / "ground_truth" / "hole").glob("*_mask.png"))[0]
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(mask)
    return mask


@pytest.mark.parametrize(("damage", "words"), [(_truncated_jpeg, "cannot decode"), (_empty_mask, "is empty")])
def test_7_data_check_decodes_fully(damage, words, tmp_path, capsys):
    culprit = damage(write_mvtec(tmp_path))
    before = _files(tmp_path)
    assert main(["data", "check", "--dataset", "mvtec", "--root", str(tmp_path), "--category", "widget"]) == 2
    assert words in _one_line_error(capsys, str(culprit))
    assert _files(tmp_path) == before


# 8. Messages that point the right way ---------------------------------------------------------------------
def test_8_typo_in_an_embedded_category_is_named_as_such(tmp_path, capsys):
    argv = ["benchmark", "--dataset", "embedded", "--categories", "brik", "--preset", "tiny",
            "--results-dir", str(tmp_path / "r"), "--no-wandb", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = _one_line_error(capsys, "'brik'")
    assert "not an embedded category" in err and "keyword" not in err
    assert not (tmp_path / "r").exists()


def test_8_clip_file_with_pickled_objects_does_not_repeat_torchs_advice(mvtec_root, tmp_path, capsys):
    weights = tmp_path / "clip.pt"
    torch.save({"state_dict": {}, "extra": Path("not/a/tensor")}, weights)
    assert main([*_generate(mvtec_root, tmp_path / "out"), "--clip-weights", str(weights)]) == 2
    err = _one_line_error(capsys, f"--clip-weights (clip_weights) {weights}")
    assert "weights_only" not in err and "state_dict" in err
    assert not (tmp_path / "out").exists()


def test_8_missing_root_names_the_option(tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    assert main(["data", "check", "--dataset", "mvtec", "--root", str(nowhere), "--category", "widget"]) == 2
    err = _one_line_error(capsys, str(nowhere))
    assert "--root" in err and "root=" not in err


def test_8_offline_is_said_as_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TGAD_OFFLINE", "1")
    argv = ["benchmark", "--dataset", "mvtec", "--root", str(tmp_path), "--categories", "bottle", "--preset",
            "tiny", "--conditions", "shots", "--results-dir", str(tmp_path / "r"), "--no-wandb"]  # fmt: skip
    assert main(argv) == 2
    err = _one_line_error(capsys, str(tmp_path / "bottle"))
    assert "downloads are off" in err and "download=False" not in err


def test_8_yaml_syntax_error_names_the_file(tmp_path, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  class_path: x\n   init_args: [\n")
    assert main(["fit", "--config", str(config)]) == 2
    err = _one_line_error(capsys, str(config))
    assert "line 3" in err and "<unicode string>" not in err


def _checkpoint_dir(trainer: dict) -> str | None:
    """Where Lightning writes ModelCheckpoint files for a trainer config: the callback's dirpath, else below
    the logger's folder (``ModelCheckpoint`` joins save_dir, name and version)."""
    from lightning.pytorch.loggers import CSVLogger

    for callback in trainer.get("callbacks") or []:
        if callback["class_path"].endswith("ModelCheckpoint") and callback["init_args"].get("dirpath"):
            return callback["init_args"]["dirpath"]
    logger = trainer.get("logger") or {}
    if logger.get("class_path", "").endswith("CSVLogger"):
        return str(Path(CSVLogger(**logger["init_args"]).log_dir) / "checkpoints")
    if logger.get("class_path", "").endswith("WandbLogger"):  # <save_dir>/<project>/<run id>/checkpoints
        return f"{logger['init_args']['save_dir']}/{logger['init_args']['project']}/<run id>/checkpoints"
    return None


def test_8_config_comments_name_the_checkpoint_lightning_writes():
    """Every ``runs/...ckpt`` path in conf/ (``<run id>`` stands for W&B's) (a ``--ckpt_path`` or ``generator_checkpoint`` in a comment or a
    value) is a file some config's trainer writes, and a ``--config X ... --ckpt_path P`` line names X's own."""
    import yaml

    configs = {
        f"conf/{c.parent.name}/{c.name}": c.read_text() for c in sorted((REPO / "conf").glob("*/*.yaml"))
    }
    written = {
        name: _checkpoint_dir(yaml.safe_load(text).get("trainer") or {}) for name, text in configs.items()
    }
    lightning_writes = {f"{folder}/last.ckpt" for folder in written.values() if folder}
    named, own = [], []
    for name, text in configs.items():
        for number, line in enumerate(text.splitlines(), 1):
            named += [
                (f"{name}:{number}", path)
                for path in re.findall(r"(?<![\w/.])runs/(?:[^\s<]|<[^>]*>)+?\.ckpt", line)
            ]
            command = re.search(r"--config (conf/\S+\.yaml)\b.*--ckpt_path ((?:[^\s<]|<[^>]*>)+)", line)
            if command:
                own.append((f"{name}:{number}", command[2], f"{written[command[1]]}/last.ckpt"))
    assert len(named) >= 8 and len(own) >= 4  # what conf/ held when this was written: it found them all
    assert [(where, path) for where, path in named if path not in lightning_writes] == []
    assert [(where, path, want) for where, path, want in own if path != want] == []


def test_8_full_shot_plots_are_named_kfull(mvtec_root, tmp_path, monkeypatch):
    import tgad.benchmark.row_task as row_task
    import tgad.benchmark.runner as runner
    from tests.helpers.benchmark_stub import stub_config, stub_run_row

    monkeypatch.setattr(row_task, "run_row", stub_run_row)
    config = stub_config(mvtec_root, tmp_path / "r", shots=(None,), seeds=(0,))
    runner.run_benchmark(config)
    plots = sorted(p.name for p in (config.out_dir / "plots").glob("*.png"))
    assert "extra_plain_aug_widget_kfull.png" in plots and not [p for p in plots if "kNone" in p]
