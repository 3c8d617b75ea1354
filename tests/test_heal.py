"""Caches that heal: temporaries of killed runs are removed, an ExtraSet or generator fit that does not load is
moved aside with a warning and rebuilt, and nothing downstream lists a temporary or damaged folder."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import tgad.benchmark.row_task as row_task
import tgad.benchmark.runner as runner
from tests.helpers.benchmark_stub import stub_config, stub_run_row
from tests.helpers.datasets import write_mvtec
from tgad.assets.cache import atomic_dir
from tgad.benchmark.tracking import Tracker
from tgad.generate import load_manifest
from tgad.generate.heal import (
    complete_extra_sets,
    heal_extra_sets,
    heal_fit_file,
    remove_stale_partials,
)


def _dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _partial(folder, name: str, with_manifest: bool = True):
    path = folder / name
    (path / "train" / "good").mkdir(parents=True)
    if with_manifest:
        (path / "manifest.json").write_text("{}")
    return path


def test_stale_temporaries_go_and_a_live_writers_stay(tmp_path, caplog):
    sets = tmp_path / "extra_sets" / "plain_aug" / "widget"
    sets.mkdir(parents=True)
    stale = _partial(sets, f".k1_seed0_abc.pid{_dead_pid()}.x1.partial")
    legacy = _partial(sets, ".k1_seed1_abc.x2.partial")  # written before temporaries carried a pid
    live = _partial(sets, f".k1_seed2_abc.pid{os.getpid()}.x3.partial")
    stale_file = tmp_path / f".results.csv.pid{_dead_pid()}.x4.partial"
    stale_file.write_text("dataset,cat")
    with caplog.at_level(logging.WARNING):
        removed = remove_stale_partials(tmp_path)
    assert set(removed) == {stale, legacy, stale_file} and live.is_dir() and "removed 3" in caplog.text


def test_atomic_writes_name_their_writer(tmp_path):
    with atomic_dir(tmp_path / "set") as tmp:
        assert tmp.name.startswith(f".set.pid{os.getpid()}.") and tmp.name.endswith(".partial")
        assert remove_stale_partials(tmp_path) == []  # our own, still being written
    assert (tmp_path / "set").is_dir()


def test_a_killed_run_heals_and_lists_no_temporary(tmp_path, monkeypatch, caplog):
    """What ``kill -9`` leaves (a temporary ExtraSet, a set whose manifest is cut) is cleared at start; the set
    is rebuilt, and the W&B artifact list holds complete sets only."""
    write_mvtec(tmp_path / "data")
    config = stub_config(tmp_path / "data", tmp_path / "results", seeds=(0,))
    monkeypatch.setattr(row_task, "run_row", stub_run_row)
    runner.run_benchmark(config)
    (good,) = complete_extra_sets(config.out_dir / "extra_sets")
    manifest = (good / "manifest.json").read_text()
    (config.out_dir / "results.csv").unlink()  # the row is lost with the kill
    (good / "manifest.json").write_text(manifest[: len(manifest) // 2])  # and the set's manifest cut
    stale = _partial(good.parent, f".{good.name}.pid{_dead_pid()}.x.partial")
    (stale / "manifest.json").write_text(manifest)

    listed = []
    monkeypatch.setattr(
        Tracker, "log_results", lambda self, rows, summary, plots, extra_dirs: listed.extend(extra_dirs)
    )
    with caplog.at_level(logging.WARNING):
        runner.run_benchmark(config)
    assert not stale.exists() and "removed 1" in caplog.text
    assert "ExtraSet does not load" in caplog.text
    (damaged,) = good.parent.glob(f"{good.name}.damaged-*")
    assert (damaged / "manifest.json").read_text() == manifest[: len(manifest) // 2]
    assert load_manifest(good)["n"] == 3  # rebuilt under its own name
    assert listed == [good] == complete_extra_sets(config.out_dir / "extra_sets")


def test_heal_extra_sets_leaves_whole_sets_and_the_fit_cache(tmp_path):
    root = tmp_path / "extra_sets"
    fit = root / "generator" / "widget" / "k1_seed0_abc.pt"
    fit.parent.mkdir(parents=True)
    fit.write_bytes(b"not a fit")
    whole = root / "plain_aug" / "widget" / "k1_seed0_abc"
    whole.mkdir(parents=True)
    heal_extra_sets(root)
    assert fit.is_file() and not whole.exists() and list(whole.parent.glob("*.damaged-*"))


def test_a_fit_file_that_does_not_load_is_moved_aside(tmp_path, caplog):
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.zeros(8)}, "config": {"codebook_size": 8}}, good)
    assert heal_fit_file(good) is False and good.is_file()
    for name, content in (
        ("cut.pt", good.read_bytes()[:200]),
        ("garbage.pt", b"\x00" * 64),
        ("empty.pt", b""),
    ):
        bad = tmp_path / name
        bad.write_bytes(content)
        with caplog.at_level(logging.WARNING):
            assert heal_fit_file(bad) is True
        assert not bad.exists() and len(list(tmp_path.glob(f"{name}.damaged-*"))) == 1
    assert caplog.text.count("cached generator fit does not load") == 3


def _hazelnut(root):
    """A category the class table knows (no keyword needed), with textured shots the generator can fit."""
    write_mvtec(root, category="hazelnut", n_train=4)
    rng = np.random.default_rng(0)
    for path in sorted((root / "hazelnut" / "train" / "good").glob("*.png")):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return root


def test_a_corrupt_fit_cache_is_rebuilt(tmp_path, caplog, one_torch_thread):
    from tgad.generate.chain import generate_extra_set, request_from_flags

    root = _hazelnut(tmp_path / "data")
    cache = tmp_path / "fits"
    small = dict(
        vqgan_iterations=2,
        integrator_overrides={"rounds": 1, "samples_per_round": 2, "update_steps": 1},
        allow_random_clip=True,
    )
    request = request_from_flags("mvtec", root, "hazelnut", 1, 0, 2, "tiny", **small)
    first = generate_extra_set(request, tmp_path / "a", generator_cache=cache).path
    (fit,) = cache.glob("hazelnut/*.pt")
    fit.write_bytes(fit.read_bytes()[:300])  # a fit cut short (the OSError [Errno 22] of the issue)
    with caplog.at_level(logging.WARNING):
        second = generate_extra_set(request, tmp_path / "b", generator_cache=cache).path
    assert "cached generator fit does not load" in caplog.text
    assert "saved to" in load_manifest(second)["generator"]  # fitted again, not reused
    assert set(torch.load(fit, weights_only=True)) == {"state_dict", "config"}
    for a, b in zip(load_manifest(first)["images"], load_manifest(second)["images"], strict=True):
        same = np.asarray(Image.open(first / a["file"])) == np.asarray(Image.open(second / b["file"]))
        assert same.all()  # the refit is the same fit
    assert json.loads((second / "manifest.json").read_text())["n"] == 2


def test_a_real_kill_9_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    """A writer killed with SIGKILL inside ``atomic_dir``: its temporary stays until the next start clears it."""
    code = (
        "import sys, time\n"
        "from tgad.assets.cache import atomic_dir\n"
        "with atomic_dir(sys.argv[1]) as tmp:\n"
        "    (tmp / 'half.png').write_bytes(b'x')\n"
        "    print(tmp, flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    writer = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "set")], stdout=subprocess.PIPE, text=True, env=env
    )
    temporary = Path(writer.stdout.readline().strip())
    assert temporary.is_dir() and remove_stale_partials(tmp_path) == []  # its writer is alive
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert temporary.is_dir() and not (tmp_path / "set").exists()  # what kill -9 leaves
    assert remove_stale_partials(tmp_path) == [temporary] and not temporary.exists()


def test_generate_clears_the_temporaries_beside_its_out_folder(tmp_path):
    from tgad.generate.heal import remove_stale_partials_of

    out = tmp_path / "out"
    stale = _partial(tmp_path, f".out.pid{_dead_pid()}.x.partial")
    other = _partial(tmp_path, f".other.pid{_dead_pid()}.x.partial")  # not ours to remove
    assert remove_stale_partials_of(out) == [stale] and other.is_dir()
