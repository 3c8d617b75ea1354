"""VarianceVQGAN as a LightningModule: few-shot fitting with manual GAN optimisation, sample grids, test metrics.

Training reads the k shots of a ``tgad.data`` datamodule (``batch.image`` in [0, 1]) and turns them into
``views`` aligned augmented views per step (``augment.make_views``), so one shot gives endless batches and the
variance head sees the spread it has to predict. The generator (encoder, quantiser, decoder, variance head) and
the patch discriminator have one optimiser each and step once per iteration each, as in anomalib's GANomaly:
``trainer.max_steps`` therefore counts two optimiser steps per iteration.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchvision.utils import make_grid, save_image

from tgad.assets import create_backbone
from tgad.assets.weights import ResolvedWeights
from tgad.features.registration import ShotRegistration, aligned_stack, register_shots
from tgad.models.batches import batch_images
from tgad.models.presets import from_plain

from .augment import AugmentConfig, make_view_batch
from .config import PRESETS, VQGANConfig
from .loss import PERCEPTUAL_OUT_INDICES, PerceptualLoss, aligned_latents, generator_loss, hinge_d_loss
from .outputs import SampleMode, SampleOutput
from .taming_import import import_taming_file
from .torch_model import PatchDiscriminator, VarianceVQGANModel

logger = logging.getLogger(__name__)


class VarianceVQGAN(LightningModule):
    """Variance-aware VQGAN (METHOD.md section 2), fitted on a few shots.

    Args:
        config: the architecture and training settings, whole (``config.py``: ``VQGANConfig.preset("tiny")``
            for tests, ``cpu`` 256 px on two cores, ``paper`` GPU; ``taming_f16_1024`` / ``taming_tiny``:
            taming-transformers' layout, see :meth:`from_taming`). A LightningCLI YAML spells it as
            ``init_args: {config: {...}}``; a checkpoint keeps it as plain data (the form it also accepts).
        perceptual_backbone: timm name of the perceptual network ("" = no perceptual loss and no feature
            distance); its weights come from ``tgad.assets.create_backbone`` when fitting/testing starts.
        perceptual_weights: a local weight file for that backbone (else tgad's cache/package lookup).
        augment_strength: multiplies every view-level augmentation magnitude (0 = identical views).
        hflip, vflip, rot90: global geometric augmentation of the shots (off: it can invent defects).
        tau_values: the noise scales shown in the sample grid.
        sample_mode, patch_fraction: defaults of :meth:`sample` (``residual`` keeps the shot's detail).
        grid_samples: samples per tau in the grid.
    """

    def __init__(
        self,
        config: VQGANConfig = PRESETS["cpu"],
        perceptual_backbone: str = "tf_efficientnet_lite0",
        perceptual_weights: str | None = None,
        augment_strength: float = 1.0,
        hflip: bool = False,
        vflip: bool = False,
        rot90: bool = False,
        tau_values: list[float] | None = None,
        sample_mode: Literal["residual", "direct"] = "residual",
        patch_fraction: float = 1.0,
        grid_samples: int = 2,
    ) -> None:
        super().__init__()
        self.config = from_plain(VQGANConfig, config)
        self.save_hyperparameters(ignore="config")
        # the config as plain data: a checkpoint loads with weights_only=True and rebuilds this module
        self.save_hyperparameters({"config": dataclasses.asdict(self.config)})
        self.augment = AugmentConfig(hflip=hflip, vflip=vflip, rot90=rot90).scaled(augment_strength)
        self.tau_values = list(tau_values) if tau_values is not None else [0.5, 1.0, 2.0]
        self.model = VarianceVQGANModel(self.config)
        # taming's PatchGAN uses BatchNorm (and its weights load only into that).
        norm = "batch" if self.config.architecture == "taming" else "group"
        self.discriminator = PatchDiscriminator(self.config.disc_channels, self.config.disc_layers, norm=norm)
        self.automatic_optimization = False
        self.test_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.test_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        # The frozen perceptual net is kept out of the module tree: checkpoints hold only what training
        # changes, and the net is rebuilt by name from tgad.assets (its provenance goes into the checkpoint).
        self._aux: dict[str, Any] = {"perceptual": None, "provenance": None, "init": None}
        self._grid_images: torch.Tensor | None = None
        self._feature_distances: list[torch.Tensor] = []
        # k > 1: how the shots were registered to shot 0 (set when training first sees them; ``register``)
        self.registration: list[ShotRegistration] | None = None
        self._aligned: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (shots, _companions)

    @classmethod
    def from_taming(
        cls,
        path: str | Path,
        config: VQGANConfig = PRESETS["taming_f16_1024"],
        with_discriminator: bool = True,
        **kwargs,
    ) -> VarianceVQGAN:
        """This module started from a taming-transformers VQGAN checkpoint (``model.ckpt`` / ``last.ckpt``).

        ``config`` must be a taming layout that matches the file (``PRESETS["taming_f16_1024"]`` for
        ``vqgan_imagenet_f16_1024``); ``kwargs`` are the other constructor arguments. The encoder, codebook and
        decoder (and taming's discriminator, when the file has it and ``with_discriminator``) are the file's; the
        variance head is new. A file that does not fit is one ``TamingCheckpointError`` (a ValueError) naming
        the key. The source (path, sha256) is kept in ``init_weights`` and in every checkpoint of this module.
        """
        if config.architecture != "taming":
            raise ValueError(
                "VarianceVQGAN.from_taming: the config is not a taming layout (architecture "
                f"{config.architecture!r}); use PRESETS['taming_f16_1024']"
            )
        module = cls(config=config, **kwargs)
        disc = module.discriminator if with_discriminator else None
        module._aux["init"] = import_taming_file(path, module.model, disc)
        return module

    @property
    def init_weights(self) -> Any:
        """The ``TamingImport`` this module started from (None: started from random weights)."""
        return self._aux["init"]

    # ----- perceptual network: an explicit hook, never built in __init__ -----
    def attach_perceptual(self, backbone: torch.nn.Module, weights: ResolvedWeights | None = None) -> None:
        """Use ``backbone`` (a features_only timm model) as the perceptual network, fed the input normalisation
        of its ``weights`` (ImageNet's when none are named)."""
        norm = {"mean": weights.mean, "std": weights.std} if weights is not None else {}
        provenance = weights.describe() if weights is not None else "given"
        self._aux.update(perceptual=PerceptualLoss(backbone, **norm), provenance=provenance)

    @property
    def perceptual(self) -> PerceptualLoss | None:
        net = self._aux["perceptual"]
        if net is not None and next(net.buffers()).device != self.device:
            net.to(self.device)
        return net

    def setup(self, stage: str) -> None:
        wanted = stage != "fit" or self.config.loss.perceptual_weight > 0
        if self._aux["perceptual"] is None and self.hparams.perceptual_backbone and wanted:
            backbone, resolved = create_backbone(
                self.hparams.perceptual_backbone,
                pretrained=True,
                features_only=True,
                out_indices=PERCEPTUAL_OUT_INDICES,
                local_file=self.hparams.perceptual_weights,
            )
            self.attach_perceptual(backbone, resolved)
            logger.info("VarianceVQGAN perceptual network: %s", resolved.describe())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["perceptual_weights"] = self._aux["provenance"]
        if self._aux["init"] is not None:
            checkpoint["init_weights"] = self._aux["init"].weights.to_dict()

    # ----- inference API -----
    def sample(
        self,
        images: torch.Tensor,
        n: int,
        tau: float = 1.0,
        patch_fraction: float | None = None,
        generator: torch.Generator | None = None,
        mode: SampleMode | None = None,
    ) -> SampleOutput:
        """``VarianceVQGANModel.sample`` with this module's defaults for the fraction and the mode."""
        return self.model.sample(
            images,
            n,
            tau=tau,
            patch_fraction=self.hparams.patch_fraction if patch_fraction is None else patch_fraction,
            generator=generator,
            mode=mode or self.hparams.sample_mode,
        )

    # ----- training -----
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr, betas = self.config.training.learning_rate, (0.5, 0.9)  # taming's betas for GAN training
        gen = torch.optim.Adam(self.model.parameters(), lr=lr, betas=betas)
        disc = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        return [gen, disc]

    @property
    def iteration(self) -> int:
        return self.global_step // 2  # two optimiser steps per iteration

    @torch.no_grad()
    def register(self, shots: torch.Tensor) -> list[ShotRegistration]:
        """Register ``shots`` (k, 3, H, W) to shot 0 as ``config.training.register_shots`` says, and keep the
        record (``registration``, ``registration_record``). A pure function of the shots and the setting, so a
        generator loaded from a cache can be given its record again."""
        with torch.autocast(shots.device.type, enabled=False):
            self.registration = register_shots(shots.float(), self.config.training.register_shots)
        return self.registration

    def registration_record(self) -> dict[str, Any] | None:
        """What registration did, for the manifest: the mode and per shot angle, shift, scores and whether
        the rigid fit was used. None before training saw the shots (k = 1: only the reference)."""
        if self.registration is None:
            return None
        return {
            "mode": self.config.training.register_shots,
            "reference_shot": 0,
            "shots": [r.as_dict() for r in self.registration],
        }

    def _companions(self, shots: torch.Tensor) -> torch.Tensor | None:
        """(k, k*4, H, W): every shot in every registered shot's frame, RGB + covered (``make_view_batch``'s
        companions); None when no shot is registered (k = 1, aligned parts, ``register_shots: none``)."""
        if self._aligned is None or not torch.equal(self._aligned[0], shots):
            records = self.register(shots)
            for r in records[1:]:
                logger.info("VarianceVQGAN registration to shot 0: %s", r.as_dict())
            companions = None
            if any(r.registered for r in records):
                stack = aligned_stack(shots.float(), records)  # (k, k, 3 | 1, H, W)
                companions = torch.cat([stack.images, stack.valid], 2).flatten(1, 2)
            self._aligned = (shots.detach().clone(), companions)
        return self._aligned[1]

    def _discriminator_matters(self) -> bool:
        """Whether the GAN term can still switch on in this fit (``trainer.max_steps`` counts two per
        iteration; -1 is open-ended)."""
        max_steps = self.trainer.max_steps
        disc_start, disc_weight = self.config.training.disc_start, self.config.loss.disc_weight
        return disc_weight > 0 and (max_steps < 0 or disc_start < max_steps // 2)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        del batch_idx
        cfg, train, weights = self.config, self.config.training, self.config.loss
        shots = batch_images(batch)
        companions = self._companions(shots)
        made = make_view_batch(shots, train.views, train.crop_size, self.augment, companions=companions)
        views = made.views  # (k, V, 3, c, c)
        x = views.flatten(0, 1)  # (k*V, 3, c, c), views of a shot consecutive
        g_opt, d_opt = self.optimizers()

        self.toggle_optimizer(g_opt)
        out = self.model(x)
        aligned = None
        if made.companions is not None:
            z_clean = out.encoded.z_e.detach().view(len(views), train.views, *out.encoded.z_e.shape[1:])[:, 0]
            aligned = aligned_latents(
                lambda images: self.model.encoder(images * 2 - 1).z_e,
                z_clean,
                made.companions,
                cfg.downsample,
            )
        use_gan = self.iteration >= train.disc_start and weights.disc_weight > 0
        losses = generator_loss(
            x,
            out,
            train.views,
            self.model.decoder.conv_out.weight,
            perceptual=self.perceptual,
            perceptual_weight=weights.perceptual_weight,
            logits_fake=self.discriminator(out.reconstruction) if use_gan else None,
            disc_weight=weights.disc_weight,
            nll_weight=weights.nll_weight,
            cross_shot_weight=weights.cross_shot_weight,
            aligned=aligned,
        )
        g_opt.zero_grad()
        self.manual_backward(losses.total)
        g_opt.step()
        self.untoggle_optimizer(g_opt)

        # The discriminator trains from the start, so it is not a blank slate when the GAN term switches on;
        # in a fit that ends before ``disc_start`` it never would, and its steps (a fifth of an iteration's
        # time at the cpu preset) change nothing the fit returns: only the step count, kept at two per
        # iteration by an empty step (Adam skips parameters without a gradient).
        self.toggle_optimizer(d_opt)
        d_opt.zero_grad()
        d_loss = torch.zeros(())
        if self._discriminator_matters():
            d_loss = hinge_d_loss(self.discriminator(x), self.discriminator(out.reconstruction.detach()))
            self.manual_backward(d_loss)
        d_opt.step()
        self.untoggle_optimizer(d_opt)

        logs = {f"train/{k}": v.detach() for k, v in losses._asdict().items()}
        logs.update(
            {
                "train/d_loss": d_loss.detach(),
                "train/perplexity": out.encoded.perplexity,
                "train/codebook_alive": self.model.quantizer.usage(),
                "train/sigma": torch.exp(0.5 * out.encoded.logvar.detach()).mean(),
            }
        )
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=len(x))
        self.log("loss", losses.total.detach(), prog_bar=True, on_step=True, batch_size=len(x))

    # ----- validation: reconstruction quality of normal images and a sample grid -----
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images = batch_images(batch, normal_only=True)
        if not len(images):
            return
        if batch_idx == 0:
            self._grid_images = images[:4]
        recon = self.model.reconstruct(images)
        mse = (recon - images).pow(2).flatten(1).mean(1)
        psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()
        codes = self.model.encode(images).indices
        self.log("val/psnr", psnr, batch_size=len(images))
        self.log("val/codes_used", codes.unique().numel() / self.config.codebook_size, batch_size=len(images))

    def on_validation_epoch_end(self) -> None:
        if self._grid_images is None or self.trainer.sanity_checking:
            return
        grid = self.sample_grid(self._grid_images)
        self._grid_images = None
        root = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        path = root / "samples" / f"step{self.global_step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        for lg in self.loggers:
            if type(lg).__name__ == "WandbLogger":
                lg.log_image(
                    key="samples", images=[grid], step=self.global_step, caption=[self._grid_caption()]
                )
        logger.info("sample grid written to %s", path)

    def _grid_caption(self) -> str:
        return f"shot | reconstruction | {self.hparams.sample_mode} samples at tau {self.tau_values}"

    @torch.no_grad()
    def sample_grid(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """One row per image: shot | reconstruction | ``grid_samples`` samples per tau. (3, H', W') in [0, 1]."""
        generator = torch.Generator().manual_seed(seed)
        columns = [images, self.model.reconstruct(images)]
        for tau in self.tau_values:
            samples = self.sample(images, self.hparams.grid_samples, tau=tau, generator=generator).images
            columns += list(samples.unbind(1))  # each (B, 3, H, W)
        rows = torch.stack(columns, 1).flatten(0, 1)  # (B*cols, 3, H, W), row-major
        return make_grid(rows.cpu(), nrow=len(columns), padding=2, pad_value=1.0)

    # ----- test: reconstruction quality on held-out normal images -----
    def test_step(self, batch: Any, batch_idx: int) -> None:
        del batch_idx
        images = batch_images(batch, normal_only=True)
        if not len(images):
            return
        recon = self.model.reconstruct(images)
        self.test_psnr.update(recon, images)
        self.test_ssim.update(recon, images)
        if self.perceptual is not None:
            self._feature_distances.append(self.perceptual.distance(recon, images).cpu())

    def on_test_epoch_end(self) -> None:
        if self.test_psnr.total == 0:
            logger.warning(
                "VarianceVQGAN test: the test set holds no normal image (gt_label == 0); no metrics"
            )
            return
        metrics = {"test/psnr": self.test_psnr.compute(), "test/ssim": self.test_ssim.compute()}
        if self._feature_distances:
            metrics["test/feature_distance"] = torch.cat(self._feature_distances).mean()
        metrics["test/codebook_alive"] = torch.tensor(self.model.quantizer.usage())
        self.log_dict(metrics)
        self.test_psnr.reset()
        self.test_ssim.reset()
        self._feature_distances = []
