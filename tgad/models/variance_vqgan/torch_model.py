"""VarianceVQGAN as plain PyTorch: encoder, EMA vector quantiser, decoder, variance head, patch discriminator.

Images enter and leave in [0, 1]; inside, the networks work in [-1, 1] as taming-transformers does. The
variance head predicts, for every latent position, the log-variance of each latent coordinate, so new normal
images can be drawn as z = E(x) + tau * sqrt(Sigma(x)) * eps, quantised and decoded (METHOD.md section 2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .config import VQGANConfig
from .outputs import (
    EncodeOutput,
    EncoderFeatures,
    ModelOutput,
    QuantizerOutput,
    SampleMode,
    SampleOutput,
)
from .sampling import perturbed_latents
from .taming_layout import TamingDecoder, TamingEncoder


def _norm(channels: int) -> nn.GroupNorm:
    # About 4 channels per group, at most 32 groups (taming uses 32 on its wider nets).
    return nn.GroupNorm(math.gcd(channels, max(1, min(32, channels // 4))), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _norm(in_ch),
            nn.SiLU(),
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            _norm(out_ch),
            nn.SiLU(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv: transposed convolutions left a checkerboard (METHOD.md).

    The conv already maps to the next level's (narrower) width, which keeps the full-resolution cost low.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mult]
        layers: list[nn.Module] = [nn.Conv2d(3, chs[0], 3, padding=1)]
        prev = chs[0]
        for level, ch in enumerate(chs):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(prev, ch))
                prev = ch
            if level < len(chs) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        layers += [ResBlock(prev, prev), _norm(prev), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(prev, cfg.latent_dim, 1)
        self.hidden_channels = prev

    def forward(self, x: torch.Tensor) -> EncoderFeatures:
        hidden = self.body(x)
        return EncoderFeatures(self.conv_out(hidden), hidden)


class Decoder(nn.Module):
    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mult]
        prev = chs[-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_dim, prev, 3, padding=1), ResBlock(prev, prev)]
        for level in reversed(range(len(chs))):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock(prev, chs[level]))
                prev = chs[level]
            if level > 0:
                layers.append(Upsample(prev, chs[level - 1]))
                prev = chs[level - 1]
        layers += [_norm(prev), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(prev, 3, 3, padding=1)  # the "last layer" of the adaptive GAN weight

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.body(q))


class VarianceHead(nn.Module):
    """Per-position log-variance of the latents, (B, d, h, w), bounded softly to [-10, 10]."""

    def __init__(self, in_ch: int, latent_dim: int, init_logvar: float = -2.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, 3, padding=1), nn.SiLU(), nn.Conv2d(in_ch, latent_dim, 3, padding=1)
        )
        # Near-constant start (small, not zero, weights so the first layer also gets gradients).
        nn.init.normal_(self.net[-1].weight, std=1e-3)
        nn.init.constant_(self.net[-1].bias, init_logvar)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.tanh(self.net(hidden) / 10.0)


class VectorQuantizer(nn.Module):
    """Codebook of K x d vectors updated by exponential moving averages, with dead-code restarts.

    With one to a few shots the usual gradient codebook collapses onto a handful of codes; EMA updates plus
    restarting codes whose usage falls below ``dead_threshold`` of a fair share (from a random live latent)
    keep most of the book in use. Only the commitment term reaches the encoder.
    """

    def __init__(self, cfg: VQGANConfig, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_codes, self.dim = cfg.codebook_size, cfg.latent_dim
        self.decay, self.beta, self.dead_threshold, self.eps = (
            cfg.training.ema_decay,
            cfg.loss.commitment_beta,
            cfg.training.dead_code_threshold,
            eps,
        )
        self.register_buffer("codebook", torch.randn(self.num_codes, self.dim))
        self.register_buffer("cluster_size", torch.zeros(self.num_codes))
        self.register_buffer("code_sum", torch.zeros(self.num_codes, self.dim))
        self.register_buffer("initialised", torch.tensor(False))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the closest code for every position: (B, d, h, w) -> (B, h, w)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (B*h*w, d)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)
        return dist.argmin(1).view(b, h, w)

    def nearest_k(self, z: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One of the ``k`` closest codes, uniformly at random, for every position: (B, d, h, w) -> (B, h, w).
        ``k = 1`` is :meth:`nearest`."""
        if k <= 1:
            return self.nearest(z)
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (B*h*w, d)
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.pow(2).sum(1)
        top = dist.topk(min(k, self.num_codes), dim=1, largest=False).indices  # (B*h*w, k)
        pick = torch.randint(top.shape[1], (top.shape[0], 1), generator=generator).to(top.device)
        return top.gather(1, pick).view(b, h, w)

    @torch.no_grad()
    def load_codebook(self, codes: torch.Tensor, count: float = 1.0) -> None:
        """Start from given codes (K, d), e.g. a pretrained VQGAN's: marked initialised, so training refines
        them instead of re-drawing them from the first batch. The EMA statistics start as ``count`` uses of each
        code at its own position, so an update moves a code toward its data by the share that data carries."""
        if tuple(codes.shape) != tuple(self.codebook.shape):
            raise ValueError(
                f"VectorQuantizer: codebook {tuple(codes.shape)} != {tuple(self.codebook.shape)}"
            )
        self.codebook.copy_(codes)
        self.cluster_size.fill_(count)
        self.code_sum.copy_(self.codebook * count)
        self.initialised.fill_(True)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of an index map: (B, h, w) -> (B, d, h, w)."""
        return self.codebook[indices].permute(0, 3, 1, 2).contiguous()

    def usage(self) -> float:
        """Fraction of the codebook alive in the EMA statistics (used recently by training batches)."""
        fair = self.cluster_size.sum() / self.num_codes
        return float((self.cluster_size > self.dead_threshold * fair).float().mean()) if fair > 0 else 0.0

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        # Nearest codes and the EMA statistics in float32 even under bf16/fp16 autocast: distances between
        # near-identical latents vanish in 8 mantissa bits, and the EMA buffers stay float32.
        with torch.autocast(z.device.type, enabled=False):
            return self._quantize(z.float())

    def _quantize(self, z: torch.Tensor) -> QuantizerOutput:
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim)  # (N, d)
        if self.training and not bool(self.initialised):
            self._init_from(flat)
        indices = self.nearest(z.detach())
        if self.training:
            self._ema_update(flat, indices.flatten())
        q = self.lookup(indices)
        commit = self.beta * F.mse_loss(z, q)
        counts = torch.bincount(indices.flatten(), minlength=self.num_codes).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        quantized = z + (q - z).detach() if z.requires_grad else q
        return QuantizerOutput(quantized, indices, commit, perplexity)

    @torch.no_grad()
    def _init_from(self, flat: torch.Tensor) -> None:
        # Start from data: codes drawn from the first batch's latents, so none begins far from the data.
        pick = torch.randint(len(flat), (self.num_codes,), device=flat.device)
        self.codebook.copy_(flat[pick] + 1e-3 * torch.randn_like(flat[pick]))
        fair = len(flat) / self.num_codes
        self.cluster_size.fill_(fair)
        self.code_sum.copy_(self.codebook * fair)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.num_codes).to(flat.dtype)
        sums = torch.zeros_like(self.code_sum).index_add_(0, idx, flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.code_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n  # Laplace smoothing
        self.codebook.copy_(self.code_sum / smoothed.unsqueeze(1))
        fair = len(flat) / self.num_codes
        dead = self.cluster_size < self.dead_threshold * fair
        if dead.any():
            pick = torch.randint(len(flat), (int(dead.sum()),), device=flat.device)
            fresh = flat[pick] + 1e-3 * torch.randn_like(flat[pick])
            self.codebook[dead] = fresh
            self.cluster_size[dead] = fair
            self.code_sum[dead] = fresh * fair


class VarianceVQGANModel(nn.Module):
    """Encoder, quantiser, decoder and variance head; the discriminator is separate (see PatchDiscriminator)."""

    def __init__(self, config: VQGANConfig) -> None:
        super().__init__()
        self.config = config
        encoder, decoder = Encoder, Decoder
        if config.architecture == "taming":
            # taming-transformers' layout, whose checkpoints load as they are (taming_import.py)
            encoder, decoder = TamingEncoder, TamingDecoder
        # Built in this order (encoder, quantiser, decoder): a seed gives the same initial weights as before.
        self.encoder = encoder(config)
        self.quantizer = VectorQuantizer(config)
        self.decoder = decoder(config)
        self.variance_head = VarianceHead(self.encoder.hidden_channels, config.latent_dim)

    def encode(self, x: torch.Tensor) -> EncodeOutput:
        """x (B, 3, H, W) in [0, 1]; H and W divisible by ``config.downsample``."""
        f = self.config.downsample
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"VarianceVQGAN: image size {tuple(x.shape[-2:])} must be divisible by {f}")
        z_e, hidden = self.encoder(x * 2 - 1)
        # Detached: the head learns the spread of E's latents; letting its loss reach E would teach E to
        # shrink that spread instead.
        logvar = self.variance_head(hidden.detach())
        q = self.quantizer(z_e)
        return EncodeOutput(z_e, logvar, q.quantized, q.indices, q.commit_loss, q.perplexity)

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """(B, d, h, w) -> (B, 3, H, W) in [0, 1] scale, unclamped."""
        return (self.decoder(quantized) + 1) / 2

    def decode_code(self, indices: torch.Tensor) -> torch.Tensor:
        return self.decode(self.quantizer.lookup(indices))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        encoded = self.encode(x)
        return ModelOutput(self.decode(encoded.quantized), encoded)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Plain reconstruction D(q(E(x))), clamped to [0, 1]."""
        return self.decode_code(self.encode(x).indices).clamp(0, 1)

    @torch.no_grad()
    def sample(
        self,
        images: torch.Tensor,
        n: int,
        tau: float = 1.0,
        patch_fraction: float = 1.0,
        generator: torch.Generator | None = None,
        mode: SampleMode = "residual",
        chunk: int = 16,
        block: int = 1,
        code_neighbors: int = 1,
        self_similar: int = 0,
    ) -> SampleOutput:
        """Draw ``n`` new images per input from N(E(x), tau^2 Sigma(x)) on a fraction of the latent positions.

        ``residual`` returns x + D(q(z')) - D(q(z)): tau = 0 gives the input exactly and unperturbed regions
        keep the shot's detail. ``direct`` returns D(q(z')): tau = 0 gives :meth:`reconstruct` exactly.
        ``generator`` (CPU) makes the draw reproducible; positions are chosen independently per sample.
        ``block`` > 1 perturbs square blocks of ``block`` x ``block`` latent positions (larger, fewer target
        patches, same fraction); ``code_neighbors`` > 1 gives each target position one of its that many
        nearest codes at random (variation the noise alone rarely reaches with a small codebook);
        ``self_similar`` > 0 moves each target position to the latent of one of the that many positions of the
        same input most like it (``perturbed_latents``).
        """
        if mode not in ("residual", "direct"):
            raise ValueError(f"VarianceVQGAN.sample: mode must be 'residual' or 'direct', got {mode!r}")
        if not 0.0 <= patch_fraction <= 1.0:
            raise ValueError(f"VarianceVQGAN.sample: patch_fraction must be in [0, 1], got {patch_fraction}")
        enc = self.encode(images)
        base = self.decode_code(enc.indices)  # (B, 3, H, W)
        b, d, h, w = enc.z_e.shape
        z, mask = perturbed_latents(
            enc.z_e, enc.logvar, n, tau, patch_fraction, generator, block, self_similar
        )
        indices = self.quantizer.nearest(z)  # (B*n, h, w)
        if code_neighbors > 1:  # target positions take one of the nearest codes at random
            resampled = self.quantizer.nearest_k(z, code_neighbors, generator)
            indices = torch.where(mask[:, 0].bool(), resampled, indices)
        changed = (indices != enc.indices.repeat_interleave(n, 0)).flatten(1).float().mean(1)

        decoded = base.repeat_interleave(n, 0).clone()  # unchanged samples reuse the exact base decoding
        todo = torch.nonzero(changed > 0).flatten()
        for part in todo.split(chunk):
            decoded[part] = self.decode_code(indices[part])
        if mode == "residual":
            out = images.repeat_interleave(n, 0) + decoded - base.repeat_interleave(n, 0)
            out[changed == 0] = images.repeat_interleave(n, 0)[changed == 0]
        else:
            out = decoded
        return SampleOutput(
            out.clamp(0, 1).view(b, n, *images.shape[1:]), indices.view(b, n, h, w), changed.view(b, n)
        )


class PatchDiscriminator(nn.Module):
    """pix2pix-style PatchGAN: one real/fake logit per receptive field (B, 1, h', w').

    ``norm="batch"`` is taming's NLayerDiscriminator (BatchNorm, bias-free convs before it), whose
    ``loss.discriminator.main.*`` weights load into ``net.*`` index for index; ``"group"`` is tgad's own.
    """

    def __init__(
        self, channels: int = 64, layers: int = 3, norm: Literal["group", "batch"] = "group"
    ) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            batch = norm == "batch"
            conv = nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=not batch)
            mods += [conv, nn.BatchNorm2d(out) if batch else _norm(out), nn.LeakyReLU(0.2)]
            ch = out
        mods.append(nn.Conv2d(ch, 1, 4, padding=1))
        self.net = nn.Sequential(*mods)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1]."""
        return self.net(x * 2 - 1)
