"""taming-transformers' VQGAN encoder and decoder, with its module names, so its checkpoints load as they are.

Same computation as ``taming/modules/diffusionmodules/model.py`` (ResnetBlock, AttnBlock, a padded strided-conv
Downsample, a nearest + conv Upsample, GroupNorm(32, eps 1e-6), swish) written for tgad: attention goes through
``F.scaled_dot_product_attention`` (same softmax(q k^T / sqrt(c)) v, less memory at 16 x 16 and above), and
taming's ``quant_conv`` / ``post_quant_conv`` live inside the encoder / decoder, so the encoder's output is the
codebook-space latent E(x) that tgad's variance head and sampling work on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TAMING_GROUPS, VQGANConfig
from .outputs import EncoderFeatures


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(TAMING_GROUPS, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """norm1 -> swish -> conv1 -> norm2 -> swish -> conv2, plus a 1x1 ``nin_shortcut`` when the width changes."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = _norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        # taming names the projection nin_shortcut and creates it only when needed; the key layout depends on it.
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1-conv projections ``q``, ``k``, ``v``, ``proj_out``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.q, self.k, self.v = (nn.Conv2d(ch, ch, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        # (B, C, h, w) -> (B, 1, h*w, C): one head whose tokens are the positions
        q, k, v = (proj(y).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, h*w, C)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # taming pads right and bottom only (torch convs pad symmetrically): kept, the weights expect it.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResnetBlock(ch, ch), AttnBlock(ch), ResnetBlock(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution: ``block`` residual blocks, each followed by an attention block when ``attn`` has them,
    then an optional ``downsample`` / ``upsample`` (set by the owner, as taming does)."""

    def __init__(self, widths: list[tuple[int, int]], attention: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o) for i, o in widths)
        self.attn = nn.ModuleList(AttnBlock(o) for _, o in widths) if attention else nn.ModuleList()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


class TamingEncoder(nn.Module):
    """x in [-1, 1] (B, 3, H, W) -> EncoderFeatures(z_e (B, latent_dim, H/f, W/f), hidden (B, C_top, H/f, W/f))."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(3, cfg.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        prev = cfg.base_channels
        for level, ch in enumerate(chs):
            widths = [(prev if i == 0 else ch, ch) for i in range(cfg.num_res_blocks)]
            stage = _Level(widths, level in cfg.attn_levels)
            if level < len(chs) - 1:
                stage.downsample = Downsample(ch)
            self.down.append(stage)
            prev = ch
        self.mid = _Mid(prev)
        self.norm_out = _norm(prev)
        self.conv_out = nn.Conv2d(prev, cfg.encoder_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(cfg.encoder_channels, cfg.latent_dim, 1)  # taming's VQModel.quant_conv
        self.hidden_channels = prev

    def forward(self, x: torch.Tensor) -> EncoderFeatures:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        # The variance head reads the last features before the projection, as with tgad's own encoder.
        hidden = F.silu(self.norm_out(self.mid(h)))
        return EncoderFeatures(self.quant_conv(self.conv_out(hidden)), hidden)


class TamingDecoder(nn.Module):
    """Quantised latents (B, latent_dim, h, w) -> (B, 3, h*f, w*f) in [-1, 1] scale, unclamped."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mult]
        self.post_quant_conv = nn.Conv2d(cfg.latent_dim, cfg.encoder_channels, 1)  # taming's post_quant_conv
        prev = chs[-1]
        self.conv_in = nn.Conv2d(cfg.encoder_channels, prev, 3, padding=1)
        self.mid = _Mid(prev)
        levels: list[_Level] = []
        for level in reversed(range(len(chs))):
            ch = chs[level]
            widths = [(prev if i == 0 else ch, ch) for i in range(cfg.num_res_blocks + 1)]
            stage = _Level(widths, level in cfg.attn_levels)
            if level > 0:
                stage.upsample = Upsample(ch)
            levels.insert(0, stage)  # taming indexes ``up`` by level, finest first
            prev = ch
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(prev)
        self.conv_out = nn.Conv2d(prev, 3, 3, padding=1)  # the "last layer" of the adaptive GAN weight

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(q)))
        for stage in reversed(self.up):  # coarsest level first
            h = stage(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
