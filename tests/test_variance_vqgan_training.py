"""VarianceVQGAN through Lightning: the variance head learns, checkpoints load with weights_only, grids and
test metrics are written, and every conf/variance_vqgan/*.yaml runs through the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from tgad.models.presets import from_plain
from tgad.models.variance_vqgan import PRESETS, VarianceVQGAN, VQGANConfig

TINY = VQGANConfig.preset("tiny")

CONF = Path(__file__).resolve().parents[1] / "conf" / "variance_vqgan"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer(tmp_path: Path, max_steps: int, **kwargs) -> L.Trainer:
    defaults = dict(
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    return L.Trainer(**{**defaults, **kwargs})


def _half_textured(seed: int = 0) -> torch.Tensor:
    """(1, 3, 32, 32): left half a sharp random black/white pattern, right half flat grey."""
    g = torch.Generator().manual_seed(seed)
    img = torch.full((1, 3, 32, 32), 0.5)
    pattern = (torch.rand(1, 1, 16, 8, generator=g) > 0.5).float()
    img[..., :16] = 0.1 + 0.8 * F.interpolate(pattern, scale_factor=2.0, mode="nearest").expand(1, 3, 32, 16)
    return img


def test_variance_head_learns_where_views_vary(tmp_path):
    """Small shifts, turns and photometric jitter move the latents of a sharp texture much more than those of a
    flat region; after a short real training run the head must predict exactly that."""
    L.seed_everything(0)
    image = _half_textured()
    module = VarianceVQGAN(config=VQGANConfig.preset("tiny", disc_start=10**6), perceptual_backbone="")
    untrained = module.model.encode(image).logvar.exp().mean(dim=(0, 1))  # (8, 8)
    _trainer(tmp_path, max_steps=160).fit(module, DataLoader(TensorDataset(image), batch_size=1))
    module.eval()
    with torch.no_grad():
        var = module.model.encode(image).logvar.exp().mean(dim=(0, 1))  # (8, 8): mean over the d coordinates
    textured, flat = var[:, :3].mean(), var[:, 5:].mean()  # latent columns 3-4 see the border
    assert textured > 2 * flat, (textured, flat)  # 3-20x over seeds 0-5; 1.0 before training
    assert untrained[:, :3].mean() < 1.1 * untrained[:, 5:].mean()  # it was not so before training


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    L.seed_everything(0)
    image = _half_textured()
    config = VQGANConfig.preset("tiny", latent_dim=4, channel_mult=(1, 2))  # neither the default nor a preset
    module = VarianceVQGAN(config=config, perceptual_backbone="", tau_values=[0.3, 1.5], sample_mode="direct")
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    trainer = _trainer(tmp_path, max_steps=6, enable_checkpointing=True, callbacks=[ckpt_cb])
    trainer.fit(module, DataLoader(TensorDataset(image), batch_size=1))
    path = tmp_path / "ckpt" / "last.ckpt"

    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert not any(k.startswith("_aux") or "backbone" in k for k in raw["state_dict"])
    assert raw["hyper_parameters"]["config"] == dataclasses.asdict(config)  # plain data, not the class
    loaded = VarianceVQGAN.load_from_checkpoint(path, weights_only=True, map_location="cpu")
    assert loaded.config == config
    # a checkpoint written before the config's groups holds it by flat name: it loads as the same config
    raw["hyper_parameters"]["config"] = config.flat()
    torch.save(raw, tmp_path / "flat.ckpt")
    old = VarianceVQGAN.load_from_checkpoint(tmp_path / "flat.ckpt", weights_only=True, map_location="cpu")
    assert old.config == config and old.config.training.disc_start == 50
    assert loaded.hparams.tau_values == [0.3, 1.5] and loaded.hparams.sample_mode == "direct"
    module.eval(), loaded.eval()
    assert torch.equal(loaded.model.quantizer.codebook, module.model.quantizer.codebook)
    assert torch.equal(loaded.model.reconstruct(image), module.model.reconstruct(image))
    g = torch.Generator().manual_seed(1)
    a = loaded.sample(image, 3, tau=1.0, generator=g).images
    b = module.sample(image, 3, tau=1.0, generator=torch.Generator().manual_seed(1)).images
    assert torch.equal(a, b)


def test_fit_writes_sample_grids_and_test_reports_metrics(tmp_path, mvtec_root):
    from tgad.data import MVTecAD

    L.seed_everything(0)
    dm = MVTecAD(root=str(mvtec_root), category="widget", shots=1, image_size=32, eval_batch_size=8)
    module = VarianceVQGAN(config=TINY, tau_values=[0.5, 2.0], grid_samples=2)
    trainer = _trainer(
        tmp_path, max_steps=8, limit_val_batches=1, check_val_every_n_epoch=None, val_check_interval=2
    )
    trainer.fit(module, datamodule=dm)
    grids = sorted((tmp_path / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step0000004.png", "step0000008.png"]
    width, height = Image.open(grids[-1]).size
    assert (width, height) == (2 + 6 * 34, 2 + 34)  # 1 shot x (shot, reconstruction, 2 taus x 2 samples)
    assert "val/psnr" in trainer.callback_metrics and "train/codebook_alive" in trainer.callback_metrics

    metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert {"test/psnr", "test/ssim", "test/feature_distance", "test/codebook_alive"} <= set(metrics)
    assert 5 < metrics["test/psnr"] < 60 and -1 <= metrics["test/ssim"] <= 1
    assert metrics["test/feature_distance"] > 0


def _cli(args: list[str]):
    from tgad.cli.lightning import run_lightning_cli

    return run_lightning_cli(args)


def test_cli_fit_and_test_tiny_config(tmp_path):
    run = ["--config", str(CONF / "tiny.yaml"), "--trainer.default_root_dir", str(tmp_path)]
    cli = _cli(["fit", *run, "--trainer.max_steps", "4", "--trainer.logger", "false"])
    assert isinstance(cli.model, VarianceVQGAN) and cli.model.config.codebook_size == 64
    ckpt = next((tmp_path / "checkpoints").glob("last.ckpt"))
    cli = _cli(["test", *run, "--trainer.logger", "false", "--ckpt_path", str(ckpt)])
    assert "test/psnr" in cli.trainer.callback_metrics
    # a checkpoint the CLI wrote rebuilds its module (through Lightning's CLI instantiator) from plain data
    loaded = VarianceVQGAN.load_from_checkpoint(ckpt, weights_only=True, map_location="cpu")
    assert loaded.config == TINY and torch.equal(
        loaded.model.quantizer.codebook, cli.model.model.quantizer.codebook
    )


@pytest.mark.parametrize("name", ["cpu", "paper"])
def test_cli_cpu_and_paper_configs_run(name, tmp_path, mvtec_root, capsys):
    """The real configs parse, and run one step on a small folder at 32 px; the paper preset (40 M parameters)
    is swapped for tiny in that step to keep the test fast."""
    config = ["--config", str(CONF / f"{name}.yaml")]
    with pytest.raises(SystemExit):
        _cli(["fit", *config, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["config"]
    assert from_plain(VQGANConfig, printed) == PRESETS[name]
    data = ["--data.root", str(mvtec_root), "--data.category", "widget", "--data.image_size", "32"]
    preset = "tiny" if name == "paper" else name
    swap = ["--model.config", json.dumps(dataclasses.asdict(PRESETS["tiny"]))] if name == "paper" else []
    cli = _cli(
        ["fit", *config, *data, *swap, "--data.num_workers", "0", "--trainer.fast_dev_run",
         "true", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path)]
    )  # fmt: skip
    assert (
        cli.model.config == PRESETS[preset] and cli.trainer.global_step == 2
    )  # one iteration: G and D steps


def test_k_shot_fit_registers_a_turned_shot_and_records_it(tmp_path):
    """k = 2 with the second shot a quarter turn of the first: training registers it to shot 0 (the cross-shot
    spread then compares corresponding positions, through crops) and records what it did; a copy keeps the
    identity."""
    L.seed_everything(0)
    image = _half_textured()
    shots = torch.cat([image, torch.rot90(image, 1, dims=(-2, -1))])  # (2, 3, 32, 32)
    module = VarianceVQGAN(
        config=VQGANConfig.preset("tiny", crop_size=16, disc_start=10**6), perceptual_backbone=""
    )
    _trainer(tmp_path, max_steps=4).fit(module, DataLoader(TensorDataset(shots), batch_size=2))
    record = module.registration_record()
    assert record["mode"] == "auto" and [s["registered"] for s in record["shots"]] == [False, True]
    assert abs(abs(record["shots"][1]["angle"]) - 90.0) < 3.0, record
    assert all(torch.isfinite(p).all() for p in module.model.parameters())

    copies = VarianceVQGAN(config=VQGANConfig.preset("tiny", disc_start=10**6), perceptual_backbone="")
    _trainer(tmp_path, max_steps=2).fit(
        copies, DataLoader(TensorDataset(image.repeat(2, 1, 1, 1)), batch_size=2)
    )
    assert [s["registered"] for s in copies.registration_record()["shots"]] == [False, False]


def test_the_plateau_weighs_the_perceptual_term_as_the_fit_does():
    """The plateau's loss is l1 + the config's ``loss.perceptual_weight`` x perceptual, as in the fit's loss (a
    lookup by the flat name on the grouped config would weigh it 0 without a word)."""
    from types import SimpleNamespace

    from tgad.models.variance_vqgan.plateau import ReconstructionPlateau

    module = VarianceVQGAN(config=VQGANConfig.preset("tiny", perceptual_weight=0.25), perceptual_backbone="")
    plateau = ReconstructionPlateau(0.1)
    metrics = {"train/l1": torch.tensor(1.0), "train/perceptual": torch.tensor(2.0)}
    plateau.on_train_batch_end(SimpleNamespace(callback_metrics=metrics, global_step=2), module)
    assert plateau.ema == pytest.approx(1.0 + 0.25 * 2.0)
