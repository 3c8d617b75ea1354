"""The leave-one-category-out generator prior: its corpus never holds the target category, it is fitted once
and cached by its inputs, the chain starts from it and records it, and benchmark rows carry it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.helpers.datasets import write_mvtec
from tgad.assets.cache import cache_dir
from tgad.benchmark import runner
from tgad.benchmark.plan import BenchmarkConfig, full_plan
from tgad.benchmark.results import COLUMNS, LEGACY_LAYOUTS, ResultsCSV
from tgad.benchmark.row_task import variant
from tgad.generate import load_manifest, prior
from tgad.generate.chain import generate_extra_set, request_from_flags
from tgad.recipe import Recipe

CATEGORIES = ("hazelnut", "bottle", "screw")  # in the class table: no keyword needed


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def root(tmp_path):
    """Three MVTec-layout categories of 32 px textured images (distinct per category)."""
    base = tmp_path / "data"
    for i, category in enumerate(CATEGORIES):
        write_mvtec(base, category=category, size=32, n_train=3, seed=i)
        g = torch.Generator().manual_seed(i)
        for path in sorted((base / category / "train" / "good").glob("*.png")):
            blobs = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=32, mode="bilinear")
            image = blobs.clamp(0, 1)[0].permute(1, 2, 0).numpy()  # (3, 32, 32) -> (32, 32, 3)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return base


def _recipe(**run) -> Recipe:
    settings = {"vqgan_iterations": 3, "prior_iterations": 3, "prior_batch_size": 2} | run
    return Recipe.build(
        "tiny", run=settings, integrator={"rounds": 1, "samples_per_round": 4, "update_steps": 1}
    )


def test_the_corpus_never_holds_the_target_category(root):
    corpus = prior.prior_corpus("mvtec", root, "hazelnut")
    assert corpus.names == ["bottle", "screw"]
    assert len(corpus.files) == 6 and corpus.files == sorted(corpus.files)
    assert all(f.parent.parent.parent.name in ("bottle", "screw") for f in corpus.files)
    assert all(f.parent.as_posix().endswith("train/good") for f in corpus.files)  # never a test image
    assert not any("hazelnut" in f.as_posix() for f in corpus.files)
    spec = prior.describe_prior(_recipe(prior="other_categories"), "mvtec", root, "hazelnut")
    assert spec.label == "other_categories:bottle+screw"
    assert spec.request["excluded"] == "hazelnut" and spec.request["categories"] == ["bottle", "screw"]
    other = prior.describe_prior(_recipe(prior="other_categories"), "mvtec", root, "bottle")
    assert (
        other.request["categories"] == ["hazelnut", "screw"] and other.request["key"] != spec.request["key"]
    )


def test_the_prior_key_follows_the_corpus_content_not_its_place_or_file_times(root, tmp_path):
    """A dataset copied, restored or moved (another root, new mtimes) keeps its prior; a changed byte in one
    corpus image does not. Keyed by size and mtime, a re-created dataset folder refitted a 62-minute prior."""
    import os
    import shutil

    recipe = _recipe(prior="other_categories")
    key = prior.describe_prior(recipe, "mvtec", root, "hazelnut").request["key"]
    copy = shutil.copytree(root, tmp_path / "restored", copy_function=shutil.copy)  # new mtimes
    for path in copy.rglob("*.png"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert prior.describe_prior(recipe, "mvtec", copy, "hazelnut").request["key"] == key
    corpus_file = sorted((copy / "screw" / "train" / "good").glob("*.png"))[0]
    pixels = np.asarray(Image.open(corpus_file)).copy()
    pixels[0, 0] ^= 1  # one pixel, one bit
    Image.fromarray(pixels).save(corpus_file)
    assert prior.describe_prior(recipe, "mvtec", copy, "hazelnut").request["key"] != key


def test_a_category_folder_linked_to_the_target_is_refused(root):
    (root / "alias").symlink_to(root / "hazelnut", target_is_directory=True)
    with pytest.raises(ValueError, match="target category"):
        prior.prior_corpus("mvtec", root, "hazelnut")


def test_a_prior_is_fitted_once_per_excluded_category_and_cached(root, tmp_path, monkeypatch):
    from tgad.assets import LITE0
    from tgad.hardware import Hardware
    from tgad.models.integrator.judges import Judges

    fits: list[str] = []
    real_fit = prior.fit_prior

    def counted(recipe, corpus, request, *args):
        fits.append(request["excluded"])
        return real_fit(recipe, corpus, request, *args)

    monkeypatch.setattr(prior, "fit_prior", counted)
    judges = Judges.resolve("", backbone=LITE0, clip=False)
    recipe, hw = _recipe(prior="other_categories"), Hardware().resolved()

    def ensure(category):
        request = prior.describe_prior(recipe, "mvtec", root, category).request
        return request, prior.ensure_prior(recipe, request, root, judges, hw, tmp_path / "work")

    request, (path, how) = ensure("hazelnut")
    assert fits == ["hazelnut"] and path.is_file() and path.parent == cache_dir() / "priors"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["prior"]["key"] == request["key"] and state["prior"]["categories"] == ["bottle", "screw"]
    files = state["prior"]["files"]
    assert len(files) == 6 and not any(f.startswith("hazelnut/") for f in files)
    assert ensure("hazelnut")[1] == (path, "reused") and fits == ["hazelnut"]  # loaded, not fitted again
    other, (other_path, _) = ensure("bottle")
    assert fits == ["hazelnut", "bottle"] and other_path != path and other["key"] != request["key"]
    # a prior given as a file is labelled and keyed by its hash
    given = prior.describe_prior(_recipe(prior=str(path)), "mvtec", root, "hazelnut")
    assert given.label == f"file:{prior.file_sha256(path)[:12]}" and given.request[
        "sha256"
    ] == prior.file_sha256(path)


def test_the_chain_starts_from_the_prior_and_records_it(root, tmp_path):
    def run(name, **run_settings):
        recipe = _recipe(**run_settings)
        request = request_from_flags("mvtec", root, "hazelnut", 1, 0, 4, recipe, allow_random_clip=True)
        return load_manifest(generate_extra_set(request, tmp_path / name).path)

    plain, with_prior = run("plain"), run("prior", prior="other_categories")
    assert plain["prior"] == {"label": "none"} and plain["config"]["arguments"]["prior"] is None
    record = with_prior["prior"]
    assert record["label"] == "other_categories:bottle+screw" and record["excluded"] == "hazelnut"
    assert record == with_prior["config"]["arguments"]["prior"]  # what the ExtraSet key holds
    assert with_prior["cache_key"] != plain["cache_key"]
    assert "started from prior" in with_prior["generator"] and "prior" not in plain["generator"]


def test_start_from_prior_rescales_the_codebook_statistics(root):
    from tgad.models.variance_vqgan import VarianceVQGAN, VQGANConfig

    source = VarianceVQGAN(config=VQGANConfig.preset("tiny"), perceptual_backbone="")
    source.model.quantizer.cluster_size.fill_(8.0)
    path = root / "prior.pt"
    torch.save({"state_dict": source.model.state_dict(), "config": {}, "batch_size": 4}, path)
    target = VarianceVQGAN(config=VQGANConfig.preset("tiny"), perceptual_backbone="")
    prior.start_from_prior(target, path, shots=1)
    quantizer = target.model.quantizer
    assert torch.allclose(quantizer.cluster_size, torch.full_like(quantizer.cluster_size, 2.0))
    assert torch.allclose(quantizer.codebook, source.model.quantizer.codebook)  # the codes are the prior's
    wrong = VarianceVQGAN(config=VQGANConfig.preset("cpu"), perceptual_backbone="")
    with pytest.raises(ValueError, match="not a VarianceVQGAN of this preset"):
        prior.start_from_prior(wrong, path, shots=1)


def test_benchmark_rows_record_the_prior(root, tmp_path, monkeypatch):
    config = BenchmarkConfig.of(
        dataset="mvtec",
        categories=("hazelnut",),
        root=str(root),
        conditions=("shots", "plain_aug", "tgad"),
        scorers=("shot_fidelity",),
        preset="tiny",
        n_gen=3,
        results_dir=str(tmp_path / "results"),
        prior="other_categories",
        wandb=False,
    )
    plan = {row.condition: row.prior for row in full_plan(config)}
    assert plan == {"shots": "none", "plain_aug": "none", "tgad": "other_categories:bottle+screw"}
    without = {r.key() for r in full_plan(config.replace(prior="none"))}
    assert len(without & {r.key() for r in full_plan(config)}) == 2  # the controls are shared
    # plots name the prior, so a prior run never overwrites the pure k-shot run's figures in the same folder
    names = {variant(r) for r in full_plan(config)} | {
        variant(r) for r in full_plan(config.replace(prior="none"))
    }
    assert names == {"shots", "plain_aug", "tgad_shot_fidelity", "tgad_shot_fidelity_prior_other_categories"}

    def stub(row, config, extra, work_dir):
        from tgad.evaluation.scoring import Evaluation, Scores

        out = row.as_columns() | {"image_auroc": 0.5, "backbone_weights": "stub", "model_settings": "{}"}
        return out, Evaluation(Scores(0.5, None, 0.0, 0.0, 1.0, 1, 6)), None

    monkeypatch.setattr("tgad.benchmark.row_task.run_row", stub)
    monkeypatch.setattr("tgad.benchmark.prepare.check_benchmark", lambda config: None)
    monkeypatch.setattr(runner, "DefectCheck", lambda config: _NoValidation())
    monkeypatch.setattr("tgad.benchmark.runner.make_extra", lambda config, row, show, plot: None)
    runner.run_benchmark(config)
    rows = ResultsCSV(config.out_dir / "results.csv").rows()
    assert {r["condition"]: r["prior"] for r in rows} == plan


class _NoValidation:
    def columns(self, row, dm, path):
        return {}


def test_a_csv_before_the_prior_column_reads_as_none(tmp_path):
    path = tmp_path / "results.csv"
    fields = LEGACY_LAYOUTS[-2]  # the last layout before the prior column ([-1]: before val_auroc_gaussian)
    assert "prior" not in fields and set(fields) | {"prior", "val_auroc_gaussian"} == set(COLUMNS)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerow({"dataset": "d", "category": "a", "condition": "tgad", "scorer": "defect_safe"})
    table = ResultsCSV(path)
    assert [r["prior"] for r in table.rows()] == ["none"]
    # a row with a prior beside it: another key, so both stay
    assert table.append({"dataset": "d", "category": "a", "condition": "tgad", "scorer": "defect_safe",
                         "prior": "other_categories:b"})  # fmt: skip
    assert [r["prior"] for r in table.rows()] == ["none", "other_categories:b"]
    assert json.dumps(COLUMNS).count("prior") == 1


def test_a_taming_checkpoint_as_prior_brings_its_architecture_and_weights(root, tmp_path, monkeypatch):
    """``--prior model.ckpt`` of taming-transformers: the generator takes the file's layout (read from its
    tensors, not named by the user), starts from its encoder, codebook, decoder and discriminator, and the
    ExtraSet records the file and its format; a tgad weight file as prior leaves the recipe as it was."""
    from tests.helpers.taming_reference import reference
    from tests.test_taming_import import _lightning_checkpoint
    from tgad.models.variance_vqgan import VarianceVQGAN, VQGANConfig

    ref, path = reference(), tmp_path / "last.ckpt"
    _lightning_checkpoint(ref, path, monkeypatch)
    recipe = prior.with_prior_architecture(_recipe(prior=str(path)))
    tiny_taming = VQGANConfig.preset("taming_tiny")
    for name in ("architecture", "base_channels", "channel_mult", "num_res_blocks", "attn_levels"):
        assert getattr(recipe.vqgan, name) == getattr(tiny_taming, name), name
    assert (recipe.vqgan.z_channels, recipe.vqgan.latent_dim, recipe.vqgan.codebook_size) == (16, 8, 64)
    assert recipe.vqgan.training == _recipe().vqgan.training  # the recipe's fit settings are kept

    vqgan = VarianceVQGAN(config=recipe.vqgan, perceptual_backbone="")
    note = prior.start_from_prior(vqgan, path, shots=1)
    assert "started from taming checkpoint" in note and vqgan.init_weights.discriminator_loaded
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(vqgan.model.eval().encode(x).indices, ref.encode(x * 2 - 1)[2])

    request = request_from_flags(
        "mvtec", root, "hazelnut", 1, 0, 4, _recipe(prior=str(path)), allow_random_clip=True
    )
    manifest = load_manifest(generate_extra_set(request, tmp_path / "from_taming").path)
    assert manifest["prior"]["format"] == "taming" and manifest["prior"]["label"].startswith("file:")
    assert "started from taming checkpoint" in manifest["generator"]
    assert request.recipe.vqgan.architecture == "taming"

    own = tmp_path / "tgad_prior.pt"  # a tgad VarianceVQGAN weight file: no format field, recipe unchanged
    torch.save(
        {"state_dict": VarianceVQGAN(config=_recipe().vqgan, perceptual_backbone="").model.state_dict()}, own
    )
    assert prior.with_prior_architecture(_recipe(prior=str(own))) == _recipe(prior=str(own))
    assert "format" not in prior.describe_prior(_recipe(prior=str(own)), "mvtec", root, "hazelnut").request


def test_a_csv_before_the_gaussian_validation_column_reads_and_is_rewritten(tmp_path):
    """A results.csv of the layout every committed issue-23 row has (prior column, no val_auroc_gaussian) is
    read with that cell empty and rewritten in the current layout when a row joins it."""
    path = tmp_path / "results.csv"
    fields = LEGACY_LAYOUTS[-1]
    assert set(COLUMNS) - set(fields) == {"val_auroc_gaussian"} and "prior" in fields
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerow(
            {"dataset": "d", "category": "a", "condition": "shots", "val_auroc": "0.9", "prior": "none"}
        )
    table = ResultsCSV(path)
    assert [(r["val_auroc"], r["val_auroc_gaussian"]) for r in table.rows()] == [("0.9", "")]
    assert table.append({"dataset": "d", "category": "b", "condition": "shots", "val_auroc_gaussian": 0.75})
    with open(path, newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == COLUMNS
    assert [r["val_auroc_gaussian"] for r in table.rows()] == ["", "0.75"]
