"""Issue 26, items 1-8: nothing read or written outside the given folders, no row twice, no test image trained
on. One test per item (named after it); the refusals are tested on the refusing function or through the CLI's
preflight (seconds), and one killed-then-resumed tiny benchmark in subprocesses checks the temporaries and the
filesystem roots a run may touch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tgad.benchmark.row_task as row_task
import tgad.benchmark.runner as runner
from tests.helpers.benchmark_stub import stub_config, stub_run_row
from tests.helpers.datasets import write_mvtec
from tgad.benchmark.plan import BenchmarkConfig, BenchmarkError, full_plan
from tgad.benchmark.results import ResultsCSV
from tgad.cli.main import main
from tgad.data import DataError, MVTecAD
from tgad.generate.artifact import ExtraSetError, is_complete, load_manifest
from tgad.generate.augment import make_plain_aug_set
from tgad.generate.heal import DAMAGED_TAG, heal_extra_sets

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with size and mtime: a snapshot to compare before and after."""
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if not p.is_dir() or not any(p.iterdir())  # files, links and empty folders
    }


def _one_line_error(capsys, culprit: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.startswith("error:") and "\n" not in err, err
    assert culprit in err, err
    return err


def _benchmark(root: Path, results: Path, *extra: str) -> list[str]:
    return ["benchmark", "--dataset", "mvtec", "--root", str(root), "--preset", "tiny", "--n-gen", "2",
            "--results-dir", str(results), "--no-wandb", "--no-progress", "--conditions", "shots", "plain_aug",
            *extra]  # fmt: skip


def _plain_set(root: Path, out: Path) -> Path:
    """A real two-image plain_aug ExtraSet of the fixture's first shot."""
    shot = root / "widget" / "train" / "good" / "000.png"
    return make_plain_aug_set(
        out, [shot], ["000.png"], n=2, seed=0, dataset="mvtec", category="widget", image_size=32, key="k"
    )


# 1. A category is a folder name under the root ------------------------------------------------------------
@pytest.mark.parametrize("category", ["../elsewhere/widget", "/abs/widget", "..", "a/b"])
def test_1_a_traversing_category_is_refused(category, tmp_path, capsys):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    write_mvtec(data)
    write_mvtec(elsewhere)  # a real category the traversal would reach
    before = _files(tmp_path)
    with pytest.raises(BenchmarkError, match="--categories"):
        BenchmarkConfig.of(categories=(category,))
    with pytest.raises(DataError, match="folder name under the dataset root"):
        MVTecAD(root=str(data), category=category)
    results = tmp_path / "results"
    assert main(_benchmark(data, results, "--categories", category)) == 2
    _one_line_error(capsys, f"--categories {category!r}")
    out = tmp_path / "gen"
    argv = ["generate", "--dataset", "mvtec", "--root", str(data), "--category", category, "--preset", "tiny",
            "--n", "2", "--out", str(out), "--allow-random-clip"]  # fmt: skip
    assert main(argv) == 2
    _one_line_error(capsys, "a category is a folder name")
    assert _files(tmp_path) == before  # nothing written: not in the data, not beside it, no results


# 2. --name is a name under --results-dir -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../escape", "/tmp/tgad-escape", "a/b", ".."])
def test_2_a_name_that_is_a_path_is_refused(name, mvtec_root, tmp_path, capsys):
    with pytest.raises(BenchmarkError, match="--name"):
        BenchmarkConfig.of(categories=("widget",), name=name)
    before = _files(tmp_path)
    results = tmp_path / "r" / "esc" / "rd"
    assert main(_benchmark(mvtec_root, results, "--categories", "widget", "--name", name)) == 2
    _one_line_error(capsys, f"--name {name!r}")
    assert _files(tmp_path) == before and not Path("/tmp/tgad-escape").exists()
    assert BenchmarkConfig.of(categories=("widget",), name="run1", results_dir="rd").out_dir == Path(
        "rd/embedded/run1"
    )


# 3. A manifest's paths stay inside its set ------------------------------------------------------------------
@pytest.mark.parametrize("craft", ["dotdot", "absolute", "link"])
def test_3_a_manifest_path_leading_out_marks_the_set_damaged(craft, mvtec_root, tmp_path):
    outside = tmp_path / "outside.png"
    shutil.copy(mvtec_root / "widget" / "test" / "good" / "000.png", outside)
    root = tmp_path / "extra_sets"
    folder = _plain_set(mvtec_root, root / "plain_aug" / "widget" / "k1_seed0_k")
    assert is_complete(folder, "k")
    manifest = json.loads((folder / "manifest.json").read_text())
    if craft == "link":  # a file inside the set that is a link to one outside it
        (folder / manifest["images"][0]["file"]).unlink()
        (folder / manifest["images"][0]["file"]).symlink_to(outside)
    else:
        manifest["images"][0]["file"] = (
            os.path.relpath(outside, folder) if craft == "dotdot" else str(outside)
        )
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExtraSetError, match="images\\[0\\] file"):
        load_manifest(folder)
    assert not is_complete(folder, "k")  # so the benchmark makes the set again instead of reading it
    heal_extra_sets(root)  # what the next run does first: the damaged set is moved aside
    assert not folder.exists()
    assert [p.name.startswith(folder.name + DAMAGED_TAG) for p in folder.parent.iterdir()] == [True]


def test_3_the_grid_never_opens_a_manifests_shot_paths(mvtec_root, tmp_path, monkeypatch):
    """``shot_paths`` is a record of where the shots were: the benchmark's grid draws the shots it was given."""
    import tgad.benchmark.plots as plots

    folder = _plain_set(mvtec_root, tmp_path / "set")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shot_paths"] = ["../../../../etc/passwd"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    opened: list[str] = []
    real = plots.read_rgb
    monkeypatch.setattr(plots, "read_rgb", lambda p: opened.append(str(p)) or real(p))
    shot = mvtec_root / "widget" / "train" / "good" / "000.png"
    plots.save_extra_grid(folder, [shot], tmp_path / "grid.png")
    assert opened[0] == str(shot) and all(
        Path(p).resolve().is_relative_to(folder.resolve()) for p in opened[1:]
    )
    assert (tmp_path / "grid.png").stat().st_size > 0


# 4. --out replaces only tgad's own files -------------------------------------------------------------------
def test_4_out_holding_a_users_file_is_refused_and_kept(mvtec_root, tmp_path, capsys):
    from tgad.generate.chain_writer import check_out_dir, foreign_files

    out = _plain_set(mvtec_root, tmp_path / "gen" / "note")
    assert foreign_files(out) == [] and check_out_dir(out) is None  # tgad's own set may be replaced
    (out / "NOTES.txt").write_text("mine")
    (out / "train" / "good" / "extra.png").write_bytes(b"also mine")
    assert foreign_files(out) == ["NOTES.txt", "train/good/extra.png"]
    before = _files(tmp_path)
    argv = ["generate", "--dataset", "mvtec", "--root", str(mvtec_root), "--category", "widget", "--preset",
            "tiny", "--n", "2", "--out", str(out), "--allow-random-clip"]  # fmt: skip
    assert main(argv) == 2
    _one_line_error(capsys, "NOTES.txt, train/good/extra.png")
    assert _files(tmp_path) == before and (out / "NOTES.txt").read_text() == "mine"


# 5. The commit is read once per process, without git's index lock -------------------------------------------
def test_5_git_commit_is_read_once_and_never_writes_the_index(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.skip("no git here")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = os.environ | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    for command in (["init", "-q"], ["add", "f.txt"], ["commit", "-q", "-m", "x"]):
        if command[0] == "add":
            (repo / "f.txt").write_text("same")
        subprocess.run([git, *command], cwd=repo, env=env, check=True, capture_output=True)
    (repo / "f.txt").write_text("same")  # same content, new mtime: a plain `git status` rewrites the index
    future = time.time() + 5
    os.utime(repo / "f.txt", (future, future))
    index = repo / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    misses = runner.git_commit.cache_info().misses
    first = runner.git_commit(repo)
    assert first and first != "unknown" and not first.endswith("-dirty")
    assert runner.git_commit(repo) is first  # the second row asks git nothing
    assert runner.git_commit.cache_info().misses == misses + 1
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before  # no lock taken, nothing written
    assert not (repo / ".git" / "index.lock").exists()


# 7. No row twice -------------------------------------------------------------------------------------------
def test_7_repeated_arguments_plan_each_row_once():
    config = BenchmarkConfig.of(
        categories=("brick", "brick"), shots=(1, 1), seeds=(0, 0), conditions=("shots", "plain_aug", "shots")
    )
    assert config.grid.seeds == (0,) and config.grid.shots == (1,) and config.grid.categories == ("brick",)
    rows = full_plan(config)
    assert len(rows) == 2 and len({r.key() for r in rows}) == 2


def _append_same_keys(path: Path, worker: int) -> None:
    table = ResultsCSV(path)
    for seed in range(10):
        table.append(
            {"dataset": "d", "category": "c", "seed": seed, "condition": "shots", "image_auroc": worker}
        )


def test_7_two_processes_appending_the_same_keys_write_each_key_once(tmp_path):
    import multiprocessing

    path = tmp_path / "results.csv"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_same_keys, args=(path, w)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert sorted(int(r["seed"]) for r in ResultsCSV(path).rows()) == list(range(10))


def test_7_a_row_another_run_finished_meanwhile_is_not_appended(mvtec_root, tmp_path, monkeypatch):
    """Two benchmarks started together plan the same rows; the second to finish one appends nothing."""
    config = stub_config(mvtec_root, tmp_path / "results", seeds=(0,))
    csv = ResultsCSV(config.out_dir / "results.csv")

    def raced(row, *args):
        out, evaluation, dm = stub_run_row(row, *args)
        assert csv.append(out)  # the other process, a moment earlier
        return out, evaluation, dm

    monkeypatch.setattr(row_task, "run_row", raced)
    result = runner.run_benchmark(config)
    rows = csv.rows()
    assert len(rows) == 2 and len({(r["condition"], r["seed"]) for r in rows}) == 2
    assert result.new_rows == 0 and not result.failures


# 8. A test image is never a shot, not even under another name ----------------------------------------------
@pytest.mark.parametrize("how", ["hardlink", "copy"])
def test_8_a_test_image_linked_or_copied_into_train_is_refused(how, tmp_path, capsys):
    root = tmp_path / "data"
    category = write_mvtec(root, n_train=1)  # the leak is the only other training image: it is drawn
    leak = category / "train" / "good" / "leak21.png"
    test_image = category / "test" / "good" / "000.png"
    os.link(test_image, leak) if how == "hardlink" else shutil.copy(test_image, leak)
    dm = MVTecAD(root=str(root), category="widget", shots=2, image_size=32)
    with pytest.raises(DataError, match="same content as the test image"):
        dm.setup()
    results = tmp_path / "results"
    assert main(_benchmark(root, results, "--categories", "widget", "--shots", "1", "--seeds", "0", "1")) == 2
    err = _one_line_error(capsys, "leak21.png")
    assert str(test_image) in err and not results.exists()


# 6. + the roots a run may touch -----------------------------------------------------------------------------
def _roots(base: Path) -> dict[str, dict]:
    return {name: _files(base / name) for name in ("systmp", "home", "cwd", "data")}


def _finished_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_6_a_run_writes_only_in_its_results_folder_and_the_cache(tmp_path, monkeypatch):
    """A tiny benchmark (every argument twice) in this process: $TMPDIR, $HOME, the working folder and the
    dataset are unchanged after it; its temporaries lay in the results folder and the tgad cache, and what a
    killed run (a dead process id) left there is removed."""
    import tempfile

    base = tmp_path
    for name in ("systmp", "home", "cwd"):
        (base / name).mkdir()
    write_mvtec(base / "data")
    results, cache = base / "results", base / "cache"
    out = results / "mvtec" / "tiny"
    dead = _finished_pid()
    stale = [out / f".tgad-row.pid{dead}.x.partial", cache / "tmp" / f".benchmark.pid{dead}.y.partial"]
    for folder in stale:
        (folder / "lightning").mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(base / "systmp"))
    monkeypatch.setenv("HOME", str(base / "home"))
    monkeypatch.setenv("TGAD_CACHE", str(cache))
    monkeypatch.chdir(base / "cwd")
    works: list[Path] = []
    real = row_task.run_row
    monkeypatch.setattr(
        row_task, "run_row", lambda row, c, e, work: works.append(Path(work)) or real(row, c, e, work)
    )
    before = _roots(base)
    argv = _benchmark(base / "data", results, "--categories", "widget", "widget", "--seeds", "0", "0", "--shots",
                      "1", "1")  # fmt: skip
    assert main(argv) == 0
    assert _roots(base) == before
    assert len(works) == 2 and all(w.parent == out and w.name.startswith(".tgad-row.pid") for w in works)
    assert not any(p.exists() for p in [*stale, *works]) and list((cache / "tmp").iterdir()) == []
    rows = ResultsCSV(out / "results.csv").rows()
    assert sorted(r["condition"] for r in rows) == ["plain_aug", "shots"]  # one row per key


@pytest.mark.slow  # two fresh processes import everything: ~2 min on a busy 2-core machine
def test_6_a_killed_run_leaves_no_temporaries_and_nothing_outside_its_folders(tmp_path):
    """$TMPDIR, $HOME, the working folder and the dataset are the same after a kill -9 and a resumed run
    (with every argument given twice: one row per key); the killed run's temporaries (the row's fit folder,
    wandb's import-time folders) lay in the results folder and the tgad cache, and the next run removed them."""
    base = tmp_path
    for name in ("systmp", "home", "cwd"):
        (base / name).mkdir()
    write_mvtec(base / "data")
    results, cache = base / "results", base / "cache"
    out = results / "mvtec" / "tiny"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB", "TGAD_CACHE", "TMP"))}
    env |= {"TMPDIR": str(base / "systmp"), "HOME": str(base / "home"), "TGAD_CACHE": str(cache),
            "PYTHONPATH": str(REPO), "MPLCONFIGDIR": str(cache / "mpl"), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    argv = [sys.executable, "-m", "tgad.cli.main", *_benchmark(base / "data", results, "--categories", "widget",
            "widget", "--seeds", "0", "0", "--shots", "1", "1")]  # fmt: skip
    before = _roots(base)

    killed = subprocess.Popen(
        argv, cwd=base / "cwd", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while not list(out.glob(".tgad-row.pid*.partial")) and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert killed.poll() is None, killed.stderr.read().decode()[-2000:]
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = list(out.glob(f".tgad-row.pid{killed.pid}.*.partial")) + list(
        (cache / "tmp").glob(f".benchmark.pid{killed.pid}.*.partial")
    )
    assert len(left) == 2 and any((cache / "tmp").glob("*/*wandb-media"))  # where they went
    assert _roots(base) == before  # nothing loose in $TMPDIR, $HOME, the working folder or the data

    done = subprocess.run(argv, cwd=base / "cwd", env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not any(p.exists() for p in left)  # healed by the next run
    assert list(out.glob(".*.partial")) == [] and list((cache / "tmp").iterdir()) == []
    assert _roots(base) == before
    rows = ResultsCSV(out / "results.csv").rows()
    assert sorted(r["condition"] for r in rows) == ["plain_aug", "shots"]  # one row per key


@pytest.mark.parametrize("command", ["benchmark", "generate"])
def test_1_an_output_inside_the_category_folder_is_refused(command, mvtec_root, tmp_path, capsys):
    inside = mvtec_root / "widget" / "train" / "good" / "out"
    before = _files(mvtec_root)
    if command == "benchmark":
        argv = _benchmark(mvtec_root, inside, "--categories", "widget")
    else:
        argv = ["generate", "--dataset", "mvtec", "--root", str(mvtec_root), "--category", "widget", "--preset",
                "tiny", "--n", "2", "--out", str(inside), "--allow-random-clip"]  # fmt: skip
    assert main(argv) == 2
    _one_line_error(capsys, "never writes into a dataset")
    assert _files(mvtec_root) == before
