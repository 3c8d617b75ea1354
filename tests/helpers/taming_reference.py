"""An independent reference of taming-transformers' VQModel layout (encoder, decoder, quantize, quant_conv,
post_quant_conv, loss.discriminator, a stand-in for loss.perceptual_loss), written in taming's own style (bmm
attention, a list of skip features, nn.Embedding codebook, BatchNorm PatchGAN) and not from tgad's
``taming_layout.py``: tests write its state dict as a taming checkpoint and compare tgad's outputs with its own."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class RefConfig(NamedTuple):
    """A taming VQModel config in taming's own names."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    resolution: int
    z_channels: int
    embed_dim: int
    n_embed: int
    disc_ndf: int
    disc_num_layers: int


TINY = RefConfig(32, (1, 1, 2), 1, (8,), 32, 16, 8, 64, 32, 2)  # = preset taming_tiny
F16_1024 = RefConfig(128, (1, 1, 2, 2, 4), 2, (16,), 256, 256, 256, 1024, 64, 2)  # vqgan_imagenet_f16_1024
EMBED = TINY.embed_dim


# ----- reference: taming's VQModel layout, written independently of tgad's taming_layout.py -----
def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


def _swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class RefResnet(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _gn(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = _gn(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        self.has_nin = cin != cout
        if self.has_nin:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x):
        h = self.conv2(_swish(self.norm2(self.conv1(_swish(self.norm1(x))))))
        return (self.nin_shortcut(x) if self.has_nin else x) + h


class RefAttn(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = _gn(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        y = self.norm(x)
        q, k, v = self.q(y), self.k(y), self.v(y)
        b, c, h, w = q.shape
        weights = torch.bmm(q.reshape(b, c, h * w).permute(0, 2, 1), k.reshape(b, c, h * w)) * c**-0.5
        weights = torch.softmax(weights, dim=2)  # (b, hw_q, hw_k)
        out = torch.bmm(v.reshape(b, c, h * w), weights.permute(0, 2, 1)).reshape(b, c, h, w)
        return x + self.proj_out(out)


class RefDown(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class RefUp(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(c: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = RefResnet(c, c), RefAttn(c), RefResnet(c, c)
    return mid


class RefEncoder(nn.Module):
    def __init__(self, c: RefConfig) -> None:
        super().__init__()
        self.last = len(c.ch_mult) - 1
        self.conv_in = nn.Conv2d(3, c.ch, 3, 1, 1)
        self.down, res, block_in = nn.ModuleList(), c.resolution, c.ch
        for i, mult in enumerate(c.ch_mult):
            level, block_out = nn.Module(), c.ch * mult
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(c.num_res_blocks):
                level.block.append(RefResnet(block_in, block_out))
                block_in = block_out
                if res in c.attn_resolutions:
                    level.attn.append(RefAttn(block_in))
            if i != self.last:
                level.downsample, res = RefDown(block_in), res // 2
            self.down.append(level)
        self.mid, self.norm_out = _mid(block_in), _gn(block_in)
        self.conv_out = nn.Conv2d(block_in, c.z_channels, 3, 1, 1)

    def forward(self, x):
        hs = [self.conv_in(x)]
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.block):
                h = block(hs[-1])
                if len(level.attn) > 0:
                    h = level.attn[j](h)
                hs.append(h)
            if i != self.last:
                hs.append(level.downsample(hs[-1]))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1])))
        return self.conv_out(_swish(self.norm_out(h)))


class RefDecoder(nn.Module):
    def __init__(self, c: RefConfig) -> None:
        super().__init__()
        self.levels = len(c.ch_mult)
        block_in, res = c.ch * c.ch_mult[-1], c.resolution // 2 ** (self.levels - 1)
        self.conv_in, self.mid = nn.Conv2d(c.z_channels, block_in, 3, 1, 1), _mid(block_in)
        self.up = nn.ModuleList()
        for i in reversed(range(self.levels)):
            level, block_out = nn.Module(), c.ch * c.ch_mult[i]
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(c.num_res_blocks + 1):
                level.block.append(RefResnet(block_in, block_out))
                block_in = block_out
                if res in c.attn_resolutions:
                    level.attn.append(RefAttn(block_in))
            if i != 0:
                level.upsample, res = RefUp(block_in), res * 2
            self.up.insert(0, level)
        self.norm_out, self.conv_out = _gn(block_in), nn.Conv2d(block_in, 3, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(self.levels)):
            for j, block in enumerate(self.up[i].block):
                h = block(h)
                if len(self.up[i].attn) > 0:
                    h = self.up[i].attn[j](h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


def _ref_discriminator(ndf: int, n_layers: int) -> nn.Module:
    seq: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult)]
        seq.append(nn.LeakyReLU(0.2, True))
    seq.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    disc = nn.Module()
    disc.main = nn.Sequential(*seq)
    return disc


class RefVQModel(nn.Module):
    def __init__(self, c: RefConfig = TINY) -> None:
        super().__init__()
        self.encoder, self.decoder = RefEncoder(c), RefDecoder(c)
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(c.n_embed, c.embed_dim)
        self.quant_conv = nn.Conv2d(c.z_channels, c.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(c.embed_dim, c.z_channels, 1)
        self.loss = nn.Module()
        self.loss.discriminator = _ref_discriminator(c.disc_ndf, c.disc_num_layers)
        self.loss.perceptual_loss = nn.Module()  # stands for LPIPS: two of its tensors, which tgad skips
        self.loss.perceptual_loss.lin0 = nn.Conv2d(64, 1, 1, bias=False)
        self.loss.perceptual_loss.register_buffer("shift", torch.tensor([-0.03, -0.088, -0.188]))

    def encode(self, x):
        z = self.quant_conv(self.encoder(x))
        flat = z.permute(0, 2, 3, 1).reshape(-1, EMBED)
        table = self.quantize.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) + table.pow(2).sum(1) - 2 * flat @ table.t()
        idx = dist.argmin(1)
        quant = (
            self.quantize.embedding(idx).view(z.shape[0], z.shape[2], z.shape[3], EMBED).permute(0, 3, 1, 2)
        )
        return z, quant, idx.view(z.shape[0], z.shape[2], z.shape[3])

    def decode(self, quant):
        return self.decoder(self.post_quant_conv(quant))


def reference(seed: int = 0) -> RefVQModel:
    """The reference with every tensor random (norm affines and BatchNorm statistics too), in eval mode."""
    torch.manual_seed(seed)
    ref = RefVQModel()
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else 0.2 * torch.randn_like(t))
    return ref.eval()
