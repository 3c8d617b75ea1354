"""``tgad generate`` end to end on a generated MVTec-layout folder: the ExtraSet and its manifest, scores that a
recomputation from the PNGs reproduces, reuse of a complete folder, atomic writes, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.helpers.datasets import write_mvtec
from tgad.assets.cache import sha256_file
from tgad.assets.clip import TINY_CLIP, resolve_clip
from tgad.cli.main import main
from tgad.data import read_rgb
from tgad.generate import is_complete, load_manifest
from tgad.generate.chain import generate_extra_set, request_from_flags
from tgad.text.clip_embed import encode_images, encode_text

N = 8


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("TGAD_THREADS", "1")
    yield
    torch.set_num_threads(old)


def _write_dataset(root: Path) -> Path:
    """MVTec layout, category hazelnut (in the class table), train images with texture so samples differ."""
    write_mvtec(root, category="hazelnut", size=32, n_train=3)
    g = torch.Generator().manual_seed(0)
    for path in sorted((root / "hazelnut" / "train" / "good").glob("*.png")):
        blobs = F.interpolate(
            torch.rand(1, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False
        )
        image = (blobs + 0.15 * torch.rand(1, 1, 32, 32, generator=g)).clamp(0, 1)[0]
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real `tgad generate` run (tiny preset) with a tiny CLIP given as a weight file."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("generate")
    root = _write_dataset(base / "data")
    torch.manual_seed(0)
    clip, _, _ = resolve_clip(TINY_CLIP, allow_random=True)
    weights = base / "tiny_clip.pt"
    torch.save(clip.state_dict(), weights)
    args = ["generate", "--dataset", "mvtec", "--root", str(root), "--category", "hazelnut", "--shots", "1",
            "--seed", "0", "--n", str(N), "--preset", "tiny", "--out", str(base / "out"),
            "--clip-weights", str(weights)]  # fmt: skip
    code = main(args)
    return code, base / "out", weights, args


def test_generate_writes_a_complete_extra_set(run):
    code, out, weights, _ = run
    assert code == 0
    manifest = load_manifest(out)  # validates the schema and that every file exists
    pngs = sorted((out / "train" / "good").glob("*.png"))
    assert len(pngs) == manifest["n"] == N and Image.open(pngs[0]).size == (32, 32)
    assert (
        manifest["kind"] == "tgad" and manifest["category"] == "hazelnut" and len(manifest["shot_ids"]) == 1
    )
    assert manifest["best_prompt"].startswith("a hazelnut") and manifest["random_clip"] is False
    clip = manifest["weights"]["clip"]
    assert clip["source"] == "local_file" and clip["sha256"] == sha256_file(weights)
    assert manifest["weights"]["backbone"]["is_random"] is False
    assert manifest["tau"] == 1.0 and manifest["patch_fraction"] == 1.0 and manifest["collapsed"] is False
    assert manifest["resources"]["torch_threads"] == 1
    stages = {"data", "prompt", "generator", "integrator", "final"}
    assert {f"{s}_seconds" for s in stages} <= set(manifest["timings"])
    assert len(manifest["rounds"]) == 3
    for r in manifest["rounds"]:
        scores = torch.tensor(r["scores"])
        rejected = scores[scores < r["threshold"]]
        assert len(r["kept"]) == 4 and scores[r["kept"]].min() >= r["threshold"]
        assert not len(rejected) or scores[r["kept"]].min() >= rejected.max()
    registration = manifest["registration"]  # one shot: the reference, nothing registered
    assert registration["mode"] == "auto" and registration["reference_shot"] == manifest["shot_ids"][0]
    assert [r["registered"] for r in registration["shots"]] == [False]
    for record in manifest["images"]:
        assert record["source_shot"] in manifest["shot_ids"] and 0 <= record["round"] <= 3
        assert record["codes_changed"] > 0  # no exact copy of the shot was written
    for name in ("grid.png", "scores_per_round.png", "prompt_table.csv", "prompt_selection.json"):
        assert (out / name).is_file(), name
    assert Image.open(out / "grid.png").size[0] > 300


def test_manifest_scores_match_a_recomputation_from_the_pngs(run):
    """CLIP came from a weight file (real weights as far as tgad knows), so ``auto`` chose ``combined``; both of
    its parts, as recorded per image, are recomputed here from the written PNGs and the shot."""
    from tgad.assets import create_backbone
    from tgad.models.integrator.lightning_model import PERCEPTUAL_OUT_INDICES
    from tgad.models.integrator.scorers import PatchFeatures, ShotFidelity

    _, out, weights, _ = run
    manifest = load_manifest(out)
    assert manifest["scorer"]["requested"] == "auto" and manifest["scorer"]["resolved"] == "combined"
    clip, tokenizer, _ = resolve_clip(TINY_CLIP, str(weights))
    text = encode_text(clip, tokenizer, [manifest["best_prompt"]], cache=False)[0]
    images = torch.stack([read_rgb(out / r["file"]) for r in manifest["images"]])
    with torch.no_grad():
        scores = encode_images(clip, images) @ text
    recorded = torch.tensor([r["clip_text"] for r in manifest["images"]])
    torch.testing.assert_close(scores, recorded, atol=1e-5, rtol=0)

    backbone, resolved = create_backbone(features_only=True, out_indices=PERCEPTUAL_OUT_INDICES)
    assert manifest["weights"]["backbone"]["mean"] == list(resolved.mean)  # the normalisation it was fed
    features = PatchFeatures(backbone, torch.tensor(resolved.mean), torch.tensor(resolved.std))
    shot = read_rgb(manifest["shot_paths"][0]).unsqueeze(0)  # 32 px, the tiny preset's size
    fidelity = ShotFidelity(features, shot, views=8, tail=0.01, seed=0).score(images)
    recorded = torch.tensor([r["shot_fidelity"] for r in manifest["images"]])
    torch.testing.assert_close(fidelity, recorded, atol=1e-4, rtol=1e-4)
    assert (fidelity < 0).all()  # generated images are never patch-for-patch copies of the shot


def test_rerun_with_the_same_arguments_reuses_the_folder(run):
    _, out, _, args = run
    before = (out / "manifest.json").stat().st_mtime_ns, json.loads((out / "manifest.json").read_text())
    assert main(args) == 0
    assert (out / "manifest.json").stat().st_mtime_ns == before[0]
    assert load_manifest(out)["created"] == before[1]["created"]


def test_interrupted_write_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    root = _write_dataset(tmp_path / "data")
    out = tmp_path / "sets" / "hazelnut"
    small = dict(
        vqgan_iterations=3, integrator_overrides={"rounds": 1, "samples_per_round": 4, "update_steps": 1}
    )

    def disk_full(*args, **kwargs):
        raise OSError("disk full while writing grid.png")

    monkeypatch.setattr("tgad.generate.figures.save_grid", disk_full)
    with pytest.raises(OSError, match="disk full"):
        generate_extra_set(
            request_from_flags("mvtec", root, "hazelnut", 1, 0, 4, "tiny", allow_random_clip=True, **small),
            out,
        )
    assert not out.exists() and not is_complete(out)
    assert list((tmp_path / "sets").iterdir()) == []  # no half-written temporary folder either
    monkeypatch.undo()
    generate_extra_set(
        request_from_flags("mvtec", root, "hazelnut", 1, 0, 4, "tiny", allow_random_clip=True, **small), out
    )
    # random CLIP: ``auto`` resolves to shot_fidelity, which reads no CLIP, so none was built (issue 24)
    manifest = load_manifest(out)
    assert is_complete(out) and manifest["clip_weights"] is None and manifest["weights"]["clip"] is None
    assert manifest["scorer"]["resolved"] == "shot_fidelity" and manifest["best_prompt"] is None


def test_refusals_random_clip_and_foreign_out_folder(tmp_path, capsys):
    root = _write_dataset(tmp_path / "data")
    base = ["generate", "--dataset", "mvtec", "--root", str(root), "--category", "hazelnut", "--n", "4",
            "--preset", "tiny"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "no CLIP weights" in capsys.readouterr().err and not (tmp_path / "a").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main([*base, "--out", str(foreign), "--allow-random-clip"]) == 2
    assert "not an ExtraSet" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "keep me"


def test_a_cached_generator_fit_gives_the_same_images_as_a_fresh_fit(tmp_path):
    """Requests that differ only after the fit share it through ``generator_cache``; a cached fit and a fresh
    one continue from the same random state, so the written images are byte-identical."""
    root = _write_dataset(tmp_path / "data")
    small = dict(
        vqgan_iterations=4, integrator_overrides={"rounds": 1, "samples_per_round": 4, "update_steps": 1}
    )
    cache = tmp_path / "fits"

    def run(name, **kwargs):
        request = request_from_flags(
            "mvtec", root, "hazelnut", 1, 0, 4, "tiny", allow_random_clip=True, **small
        )
        return generate_extra_set(request, tmp_path / name, **kwargs).path

    fresh, saved, reused = (
        run("fresh"),
        run("saved", generator_cache=cache),
        run("reused", generator_cache=cache),
    )
    (fit_file,) = cache.glob("hazelnut/k1_seed0_*.pt")
    assert (
        "saved to" in load_manifest(saved)["generator"]
        and "reused from" in load_manifest(reused)["generator"]
    )
    assert (
        load_manifest(reused)["timings"]["generator_seconds"]
        < load_manifest(saved)["timings"]["generator_seconds"]
    )
    for record in load_manifest(fresh)["images"]:
        images = [np.asarray(Image.open(d / record["file"])).astype(int) for d in (fresh, saved, reused)]
        diffs = [int(np.abs(images[0] - other).max()) for other in images[1:]]
        assert diffs == [0, 0], (record["file"], diffs)
    state = torch.load(fit_file, weights_only=True)
    assert set(state) == {"state_dict", "config"} and state["config"]["codebook_size"] > 0


def test_a_folder_made_by_another_tgad_version_is_rebuilt_not_reused(tmp_path, monkeypatch):
    """The same request reuses a complete ExtraSet; a new tgad version (part of the key) makes it again."""
    import tgad

    root = _write_dataset(tmp_path / "data")
    out = tmp_path / "set"
    small = dict(
        vqgan_iterations=3, integrator_overrides={"rounds": 1, "samples_per_round": 4, "update_steps": 1}
    )

    def make() -> tuple[dict, int]:
        generate_extra_set(
            request_from_flags("mvtec", root, "hazelnut", 1, 0, 4, "tiny", allow_random_clip=True, **small),
            out,
        )
        return load_manifest(out), (out / "manifest.json").stat().st_mtime_ns

    first, written = make()
    assert make() == (first, written)  # the same request: the folder is reused untouched
    monkeypatch.setattr(tgad, "__version__", "99.0.0")
    second, rewritten = make()
    assert second["cache_key"] != first["cache_key"] and rewritten != written
    assert is_complete(out, second["cache_key"]) and not is_complete(out, first["cache_key"])


def test_shots_handed_over_by_the_caller_make_the_same_request(tmp_path):
    """A benchmark hands the chain the shots its datamodule chose: the same request (key), so the folder made
    without them is reused untouched, and the chain says so."""
    from tgad.data import MVTecAD
    from tgad.generate.artifact import ChosenShots, extra_set_key
    from tgad.generate.chain import make_request, with_clip
    from tgad.recipe import Recipe

    root = _write_dataset(tmp_path / "data")
    out = tmp_path / "set"
    small = dict(
        vqgan_iterations=3, integrator_overrides={"rounds": 1, "samples_per_round": 4, "update_steps": 1}
    )
    flags = request_from_flags("mvtec", root, "hazelnut", 1, 0, 4, "tiny", allow_random_clip=True, **small)
    assert generate_extra_set(flags, out).reused is False
    before = load_manifest(out), (out / "manifest.json").stat().st_mtime_ns
    dm = MVTecAD(root=str(root), category="hazelnut", shots=1, shot_seed=0)
    dm.setup()
    recipe = Recipe.build("tiny", run={"vqgan_iterations": 3}, integrator=small["integrator_overrides"])
    handed = make_request(ChosenShots.from_datamodule("mvtec", dm), 0, 4, with_clip(recipe, None, True))
    assert extra_set_key(handed) == extra_set_key(flags) == before[0]["cache_key"]
    assert generate_extra_set(handed, out).reused is True
    assert (load_manifest(out), (out / "manifest.json").stat().st_mtime_ns) == before
