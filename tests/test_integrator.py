"""Integrator: selection keeps variety behind a score gate, guards catch bad output, differentiable samples equal
the sampler's, a real tiny run raises the kept CLIP score, and the Lightning CLI fits and tests it."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from tests.helpers.datasets import write_mvtec
from tgad.assets import ResolvedWeights, create_backbone
from tgad.assets.clip import TINY_CLIP, resolve_clip
from tgad.models.integrator import (
    Integrator,
    IntegratorConfig,
    check_pool,
    differentiable_samples,
    farthest_point,
    random_choice,
    select_diverse,
)
from tgad.models.integrator.lightning_model import PERCEPTUAL_OUT_INDICES, Judges
from tgad.models.variance_vqgan import VarianceVQGAN, VarianceVQGANModel, VQGANConfig

CONF = Path(__file__).resolve().parents[1] / "conf" / "integrator"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer(root: Path, **kwargs) -> L.Trainer:
    defaults = dict(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=root,
    )
    return L.Trainer(**{**defaults, **kwargs})


def _textured(seed: int = 0) -> torch.Tensor:
    """(1, 3, 32, 32): smooth colour blobs plus grain, so latents vary and samples differ."""
    g = torch.Generator().manual_seed(seed)
    image = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=32, mode="bilinear", align_corners=False)
    return (image + 0.15 * torch.rand(1, 1, 32, 32, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny VarianceVQGAN fitted for 60 iterations on one textured shot, and its checkpoint."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("vqgan")
    L.seed_everything(0, verbose=False)
    shot = _textured()
    module = VarianceVQGAN(config=VQGANConfig.preset("tiny", disc_start=10**6), perceptual_backbone="")
    trainer = _trainer(root, max_steps=120)
    trainer.fit(module, DataLoader(TensorDataset(shot), batch_size=1))
    trainer.save_checkpoint(root / "vqgan.ckpt")
    return module.eval(), shot, root / "vqgan.ckpt"


@pytest.fixture(scope="module")
def judges():
    torch.manual_seed(0)
    clip = resolve_clip(TINY_CLIP, allow_random=True)
    backbone = create_backbone(features_only=True, out_indices=PERCEPTUAL_OUT_INDICES)
    return clip, backbone


def _vqgan(cfg: VQGANConfig) -> VarianceVQGAN:
    """A VarianceVQGAN without the perceptual network."""
    return VarianceVQGAN(config=cfg, perceptual_backbone="")


def _integrator(
    judges, model: VarianceVQGANModel, diversity_space: str = "perceptual", **settings
) -> Integrator:
    """A tiny Integrator with the judges passed in (fresh ones per module: a Judges caches its scorer);
    ``settings`` by flat name (``tau=0.0``, ``update_steps=1``)."""
    (clip, tokenizer, resolved), (backbone, backbone_resolved) = judges
    passed = Judges(clip, tokenizer, resolved, backbone, backbone_resolved)
    config = IntegratorConfig.preset("tiny", **settings)
    module = Integrator(
        config,
        VQGANConfig.preset("tiny"),
        prompt="a hazelnut with perfect",
        diversity_space=diversity_space,
        judges=passed,
    )
    module.attach_generator(copy.deepcopy(model))
    return module


# ----- pure selection and guards -----
def test_selection_gates_by_score_then_picks_variety():
    """Near-copies of the shot score best; a plain top-q would keep only them. The gate passes the best half,
    farthest-point then prefers the varied passers, and nothing kept scores below anything rejected."""
    anchor = torch.zeros(1, 2)
    near = torch.tensor([[0.01 * i, 0.0] for i in range(4)])  # near-copies of the shot
    varied = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    poor = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])  # far away, low scores
    features = torch.cat([near, varied, poor])
    scores = torch.tensor([0.9, 0.89, 0.88, 0.87, 0.86, 0.85, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    sel = select_diverse(scores, features, keep=3, pass_fraction=0.5, anchors=anchor)
    assert sel.passed.tolist() == [True] * 6 + [False] * 6 and sel.threshold == pytest.approx(0.85)
    assert scores[sel.kept].min() >= scores[~sel.passed].max()
    # the two varied passers first (farthest from the shot), then the least redundant near-copy
    assert sel.kept.tolist() == [4, 5, 3]
    assert set(scores.topk(3).indices.tolist()) == {0, 1, 2}  # what a pure top-q by score would keep


def test_farthest_point_order_and_eligibility():
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0], [5.0]])
    assert farthest_point(points, torch.arange(5), 3).tolist() == [3, 0, 4]  # mean 3.6: 10 first, then 0, 5
    assert farthest_point(points, torch.tensor([0, 1, 2]), 2, anchors=torch.tensor([[0.0]])).tolist() == [
        2,
        1,
    ]
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    eligible = torch.tensor([False, True, True, True, True])
    sel = select_diverse(scores, points, keep=2, pass_fraction=0.5, eligible=eligible)
    assert 0 not in sel.kept.tolist() and not sel.passed[0]


def test_guards_nan_copies_constant():
    shots = torch.rand(2, 3, 8, 8)
    index = torch.tensor([0, 1, 0, 1])
    with pytest.raises(FloatingPointError, match="NaN"):
        check_pool(torch.full((4, 3, 8, 8), float("nan")), shots, index)
    copies = check_pool(shots[index], shots, index)
    assert copies.collapsed and "copy" in copies.reason and copies.copies.all()
    constant = check_pool(torch.full((4, 3, 8, 8), 0.5), shots, index)
    assert constant.collapsed and constant.constant.all()
    varied = check_pool(torch.rand(4, 3, 8, 8), shots, index)
    assert not varied.collapsed and varied.distinct == 4 and not varied.copies.any()


def test_differentiable_samples_equal_the_sampler_and_reach_every_part():
    torch.manual_seed(0)
    model = VarianceVQGANModel(VQGANConfig.preset("tiny")).eval()
    with torch.no_grad():
        model.variance_head.net[-1].bias.fill_(1.0)  # a wide spread, so codes change
    shots = torch.rand(2, 3, 32, 32)
    reference = model.sample(shots, 3, tau=1.0, generator=torch.Generator().manual_seed(3)).images
    samples = differentiable_samples(model, shots, 3, 1.0, 1.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(samples.view(2, 3, 3, 32, 32), reference, atol=1e-5, rtol=0)
    samples.mean().backward()
    for part in (model.encoder, model.decoder, model.variance_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part


# ----- a real run -----
def test_rounds_keep_the_best_update_the_generator_and_raise_the_kept_score(fitted, judges, tmp_path):
    model, shot, _ = fitted
    module = _integrator(judges, model.model, scorer="clip_text")  # the paper's score
    before = [p.detach().clone() for p in module.generator.parameters()]
    _trainer(tmp_path, max_epochs=-1).fit(module, DataLoader(TensorDataset(shot), batch_size=1))
    history = module.history
    assert [r.round for r in history] == [0, 1, 2] and module.round_index == 3
    for r in history:
        scores = torch.tensor(r.scores)
        rejected = scores[~torch.tensor(r.passed) & ~torch.tensor(r.excluded)]
        kept = scores[r.kept]
        assert len(kept) == IntegratorConfig.preset("tiny").keep and not r.collapsed
        assert kept.min() >= rejected.max(), r.round
    assert any(not torch.equal(a, b) for a, b in zip(before, module.generator.parameters(), strict=True))
    assert history[-1].kept_mean > history[0].kept_mean + 1e-3, [r.kept_mean for r in history]

    final = module.generate(12)
    assert final.images.shape == (12, 3, 32, 32) and final.check.collapsed is False
    assert set(final.rounds.tolist()) <= {0, 1, 2, 3}
    torch.testing.assert_close(module.score(final.images), final.scores, atol=1e-5, rtol=0)
    assert torch.equal(final.images, final.images.mul(255).round().div(255))  # on the PNG grid already


def test_collapsed_generator_is_reported(judges):
    """A generator without spread (here: tau = 0) changes no code: every sample is the shot itself."""
    torch.manual_seed(0)
    model = VarianceVQGANModel(VQGANConfig.preset("tiny"))
    module = _integrator(judges, model, diversity_space="clip", tau=0.0)
    final = module.generate(4, shots=torch.rand(1, 3, 32, 32))
    assert final.check.collapsed and "copy" in final.check.reason
    assert (final.changed == 0).all()


# ----- Lightning CLI -----
def test_cli_fit_and_test_with_a_generator_checkpoint(fitted, tmp_path):
    from tgad.cli.lightning import run_lightning_cli

    _, _, ckpt = fitted
    write_mvtec(tmp_path / "data", category="hazelnut", size=32, n_train=3)
    common = [
        "--config", str(CONF / "tiny.yaml"),
        "--model.generator_checkpoint", str(ckpt),
        "--data", "tgad.data.MVTecAD",
        "--data.root", str(tmp_path / "data"), "--data.category", "hazelnut", "--data.image_size", "32",
        "--data.shots", "1", "--data.train_batch_size", "4",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    fast = ["--model.config.rounds", "2", "--model.config.samples_per_round", "8"]
    fast += ["--model.config.update.update_steps", "2"]
    cli = run_lightning_cli(["fit", *common, *fast])
    # random tiny CLIP: ``auto`` resolves to shot_fidelity, which reads no CLIP, so none is built and no P*
    # is chosen (issue 24)
    assert cli.model.round_index == 2 and cli.model.prompt is None and cli.model.judges.clip is None
    last = next((tmp_path / "run").rglob("last.ckpt"))
    cli = run_lightning_cli(["test", *common, *fast, "--ckpt_path", str(last)])
    metrics = cli.trainer.callback_metrics
    assert {"test/score_mean", "test/score_std", "test/feature_spread", "test/collapsed"} <= set(metrics)
    # random tiny CLIP: ``auto`` resolved to shot_fidelity, minus a patch distance (<= 0)
    assert cli.model.scorer_name == "shot_fidelity"
    assert metrics["test/score_min"] <= metrics["test/score_mean"] <= metrics["test/score_max"] <= 0
    assert metrics["test/shot_fidelity_mean"] == pytest.approx(float(metrics["test/score_mean"]))
    assert cli.model.round_index == 2  # restored from the integrator checkpoint


# ----- scorers inside the Integrator -----
def test_auto_picks_shot_fidelity_with_random_clip_and_records_it(fitted, judges):
    model, shot, _ = fitted
    module = _integrator(judges, model.model)  # the tiny CLIP has random weights
    record = module.run_round(shot)
    assert module.scorer_name == "shot_fidelity" and record.scorer == "shot_fidelity"
    provenance = module.provenance["scorer"]
    assert provenance["requested"] == "auto" and "RANDOM" in provenance["why"]
    assert provenance["parts_recorded"] == ["shot_fidelity"]
    assert record.scores == record.parts["shot_fidelity"] and max(record.scores) < 0
    final = module.generate(6)
    torch.testing.assert_close(final.scores, final.parts["shot_fidelity"])

    (clip, tokenizer, _), (backbone, backbone_resolved) = judges
    real = ResolvedWeights(TINY_CLIP, "local_file", Path("/weights/tiny.pt"), "0" * 64)
    other = Integrator(
        IntegratorConfig.preset("tiny"),
        VQGANConfig.preset("tiny"),
        prompt="a hazelnut with perfect",
        judges=Judges(clip, tokenizer, real, backbone, backbone_resolved),
    )
    other.attach_generator(copy.deepcopy(model.model))
    record = other.run_round(shot)
    assert other.scorer_name == "combined" and set(record.parts) == {"clip_text", "shot_fidelity"}
    z = torch.tensor(record.scores)
    assert abs(float(z.mean())) < 1e-5  # a sum of z-scores over the pool


def test_none_scorer_keeps_a_seeded_random_subset(fitted, judges):
    model, shot, _ = fitted
    module = _integrator(judges, model.model, scorer="none", update_steps=1)
    record = module.run_round(shot)
    eligible = ~torch.tensor(record.excluded)
    expected = random_choice(
        len(record.scores), module.config.keep, eligible, torch.Generator().manual_seed(250)
    )
    assert record.kept == expected.tolist() and record.scorer == "none"
    assert set(record.scores) == {0.0} and "shot_fidelity" in record.parts  # recorded, never used
    assert record.losses["guidance"] == 0.0
    final = module.generate(6)
    assert len(final.images) == 6 and torch.isnan(torch.tensor(final.threshold))


def test_a_fit_killed_after_a_round_resumes_to_the_same_images(fitted, judges, tmp_path):
    """Round 1 of 3, checkpoint, a new process's module resumes: same history, bank and final images as an
    uninterrupted fit (every draw is seeded by its round; the bank and history travel in the checkpoint)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    model, shot, _ = fitted
    loader = DataLoader(TensorDataset(shot), batch_size=1)
    whole = _integrator(judges, model.model, scorer="shot_fidelity")
    _trainer(tmp_path / "whole", max_epochs=-1).fit(whole, loader)

    first = _integrator(judges, model.model, scorer="shot_fidelity")
    save = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    _trainer(tmp_path / "cut", max_epochs=1, enable_checkpointing=True, callbacks=[save]).fit(first, loader)
    assert first.round_index == 1  # "killed" after its first round
    resumed = _integrator(judges, model.model, scorer="shot_fidelity")
    again = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    _trainer(tmp_path / "cut", max_epochs=-1, enable_checkpointing=True, callbacks=[again]).fit(
        resumed, loader, ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )

    assert resumed.round_index == whole.round_index == 3
    assert [r.kept for r in resumed.history] == [r.kept for r in whole.history]
    torch.testing.assert_close(
        torch.tensor([r.scores for r in resumed.history]), torch.tensor([r.scores for r in whole.history])
    )
    assert len(resumed._bank) == 3 and all(
        torch.equal(a.images, b.images) for a, b in zip(resumed._bank.pools, whole._bank.pools, strict=True)
    )
    torch.testing.assert_close(resumed.generate(8).images, whole.generate(8).images, atol=1 / 255, rtol=0)


def test_judges_passed_in_are_used_as_given_and_stay_out_of_the_checkpoint(fitted, judges):
    model, shot, _ = fitted
    module = _integrator(judges, model.model)
    passed = module.judges
    module.setup("fit")  # nothing is resolved again: the judges handed over are the ones used
    assert module.judges is passed
    assert all(key.startswith("generator.") for key in module.state_dict())  # no CLIP, no backbone
    module.run_round(shot)
    provenance = module.provenance
    assert provenance["clip"]["describe"].endswith("RANDOM") and provenance["scorer"]["resolved"]
    # the feature network is fed the normalisation its weights record (Lite0: 0.5, not ImageNet's)
    assert provenance["perceptual"]["mean"] == list(passed.backbone_weights.mean) == [0.5] * 3
    assert passed.perceptual.mean.flatten().tolist() == [0.5] * 3
    scorer = module.scorer()  # built once per shots and settings; a move to the same device keeps it
    assert passed.to("cpu").scorer(shot, module.prompt, module.config, 0) is scorer
    with pytest.raises(ValueError, match="no judges yet"):
        _ = Integrator(IntegratorConfig.preset("tiny"), VQGANConfig.preset("tiny")).judges
