"""Patch features as PatchCore sees them, and nearest-patch distances: shared by the Integrator's scorers (which
see only the shots) and the synthetic-defect validation (which sees held-out normals), so both measure images
in the detector's own feature space."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tgad.assets import create_backbone
from tgad.assets.backbones import drop_unused_blocks


def tail_mean(distances: torch.Tensor, fraction: float) -> torch.Tensor:
    """(B, P) -> (B,): the mean of the largest ``fraction`` of each row (at least one value).

    AnomalyDINO's image score is the same statistic (the mean of the top 1 % patch distances); unlike a
    quantile it is differentiable with respect to every value in the tail.
    """
    top = max(1, int(distances.shape[1] * fraction))
    return distances.topk(top, dim=1).values.mean(dim=1)


class PatchFeatures(nn.Module):
    """PatchCore-style patch features of a frozen timm ``features_only`` backbone.

    Takes the last two maps the backbone returns (strides 8 and 16 for the integrator's perceptual network,
    the layers tgad's PatchCore uses), smooths each with a 3x3 average (PatchCore's local neighbourhood),
    upsamples the coarser one to the finer grid and concatenates: (B, 3, H, W) in [0, 1] -> (B, h*w, C).
    """

    def __init__(self, backbone: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.register_buffer("mean", mean.reshape(1, 3, 1, 1).clone(), persistent=False)
        self.register_buffer("std", std.reshape(1, 3, 1, 1).clone(), persistent=False)

    def train(self, mode: bool = True) -> PatchFeatures:
        return super().train(False)  # pretrained BatchNorm statistics never move

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.from_maps(self.maps(images))

    def maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every map the backbone returns for [0, 1] ``images``: whoever also needs the other maps (the
        Integrator's diversity vectors) runs the backbone once and derives both."""
        return self.backbone((images - self.mean) / self.std)

    @staticmethod
    def from_maps(maps: list[torch.Tensor]) -> torch.Tensor:
        """The backbone's maps -> (B, h*w, C) patch features (the last two maps, smoothed and stacked)."""
        size = maps[-2].shape[-2:]
        smoothed = [
            F.interpolate(F.avg_pool2d(m, 3, 1, 1), size=size, mode="bilinear", align_corners=False)
            for m in maps[-2:]
        ]
        return torch.cat(smoothed, dim=1).flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, h*w, C)


def nearest_distances(
    features: torch.Tensor, bank: torch.Tensor, chunk: int = 16384, block: int = 4096
) -> torch.Tensor:
    """(B, P, C) patch features, (N, C) bank -> (B, P) Euclidean distance of each patch to its nearest bank
    row; differentiable. Memory stays at block (or P) x chunk floats.

    Without gradients (scoring, selection, the validation): |x - b|^2 = |x|^2 - 2 x.b + |b|^2, and |x|^2 is
    the same for every bank row, so it is added after the min: one fused matmul-add and a min per (block of
    patches, chunk of bank rows), 2-3x faster and equal to ~1e-7 relative. With gradients (the Integrator's
    guided update) the full squared distances are formed as before: the generator's update amplifies even
    float-level differences, and this keeps its images bit-identical to the ones the committed rows measured.
    """
    if torch.is_grad_enabled() and (features.requires_grad or bank.requires_grad):
        return _nearest_distances_with_grad(features, bank, chunk)
    bank_sq = bank.pow(2).sum(1)  # (N,)
    flat = features.reshape(-1, features.shape[-1])  # (B, P, C) -> (B*P, C)
    lows = []
    for row in range(0, len(flat), block):
        patches, best = flat[row : row + block], None
        for start in range(0, len(bank), chunk):
            part = bank[start : start + chunk]
            low = torch.addmm(bank_sq[start : start + chunk], patches, part.T, alpha=-2).amin(
                dim=1
            )  # (block,)
            best = low if best is None else torch.minimum(best, low)
        lows.append(best)
    squared = torch.cat(lows).reshape(features.shape[:-1]) + features.pow(2).sum(-1)  # (B, P)
    return squared.clamp_min(0).add(1e-12).sqrt()


@torch.no_grad()
def judged_in_one_pass(
    features: PatchFeatures,
    bank: torch.Tensor,
    images: torch.Tensor,
    batch_size: int,
    judge: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    describe: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Judge many images with one backbone pass and one nearest-patch search per batch of ``batch_size``:
    ``judge(patches, nearest)`` -> (b,) values by name, from the (b, P, C) patch features and their (b, P)
    distances to ``bank``; ``describe(maps, patches)`` -> (b, F) vectors from the same pass (diversity
    features). Returns the values concatenated on the CPU, and the vectors (None without ``describe``)."""
    rows, described = [], []
    for batch in images.split(batch_size):
        maps = features.maps(batch)
        patches = features.from_maps(maps)  # (b, P, C)
        rows.append(judge(patches, nearest_distances(patches, bank)))
        if describe is not None:
            described.append(describe(maps, patches))
    values = {name: torch.cat([row[name] for row in rows]).cpu() for name in rows[0]}
    return values, (torch.cat(described) if describe is not None else None)


def _nearest_distances_with_grad(features: torch.Tensor, bank: torch.Tensor, chunk: int) -> torch.Tensor:
    rows = []
    bank_sq = bank.pow(2).sum(1)  # (N,)
    for image in features:  # (P, C)
        sq = image.pow(2).sum(1, keepdim=True)  # (P, 1)
        best = None
        for start in range(0, len(bank), chunk):
            part = bank[start : start + chunk]
            d2 = (sq - 2 * image @ part.T + bank_sq[start : start + chunk]).clamp_min(0)  # (P, n)
            low = d2.min(dim=1).values
            best = low if best is None else torch.minimum(best, low)
        rows.append(best)
    return torch.stack(rows).add(1e-12).sqrt()


# The layers tgad's PatchCore uses (stride 8 and 16) as timm ``features_only`` out_indices, per backbone.
DETECTOR_OUT_INDICES = {"tf_efficientnet_lite0": (2, 3), "resnet18": (2, 3), "wide_resnet50_2": (2, 3)}


def detector_features(backbone: str = "tf_efficientnet_lite0") -> PatchFeatures:
    """PatchFeatures over the layers tgad's PatchCore uses, normalised as the detector's pre-processor
    normalises (the weights' own statistics, ``tgad.baselines.registry``), with weights resolved by
    ``tgad.assets`` (an AssetError says how to provide them)."""
    net, weights = create_backbone(backbone, features_only=True, out_indices=DETECTOR_OUT_INDICES[backbone])
    return PatchFeatures(drop_unused_blocks(net), torch.tensor(weights.mean), torch.tensor(weights.std))
