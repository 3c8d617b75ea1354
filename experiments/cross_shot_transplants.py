"""Pilot (issue 23): cross-shot region transplants (real pixels of shot B in shot A's frame) vs plain augmentation, per
candidate and per set, by the validation columns (held-out training normals; no test image).

    python experiments/cross_shot_transplants.py [SEED...]     # reads the k = 2 rows of transistor_k2_implausible

Result (seed 0): ``experiments/results/issue23_selection_analysis/README.md``, section 4."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from pool_analysis import cached_validator, read_rows, shot_images, single_image_covers, tgad_row

from tgad.features.patches import detector_features
from tgad.features.registration import aligned_stack, register_shots
from tgad.generate.augment import PlainAugConfig, augment_shots

REPO = Path(__file__).resolve().parents[1]
RES = REPO / "experiments/results/benchmark/issue23/mvtec/transistor_k2_implausible"
ROOT = REPO.parent / "shared/data/mvtec_ad"
N = 64


def feathered_box(g, size, lo=0.15, hi=0.5, sigma=6.0):
    h = int(size * (lo + (hi - lo) * torch.rand(1, generator=g)))
    w = int(size * (lo + (hi - lo) * torch.rand(1, generator=g)))
    y = int(torch.randint(0, size - h + 1, (1,), generator=g))
    x = int(torch.randint(0, size - w + 1, (1,), generator=g))
    m = torch.zeros(1, 1, size, size)
    m[..., y : y + h, x : x + w] = 1
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1).float()
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return m[0]


def pastes(shots, n, seed):
    g = torch.Generator().manual_seed(seed)
    k = len(shots)
    out = []
    regs = register_shots(shots.float(), "auto")
    print("registration", [r.as_dict() for r in regs])
    stack = aligned_stack(shots, regs)  # [a, b]: shot b seen in shot a's frame
    for i in range(n):
        a = i % k
        b = (a + 1 + int(torch.randint(0, k - 1, (1,), generator=g))) % k
        moved = stack.images[a, b]
        m = feathered_box(g, shots.shape[-1]) * stack.valid[a, b]
        out.append(shots[a] * (1 - m) + moved * m)
    return torch.stack(out)


def main():
    features = detector_features()
    rows = read_rows(RES)
    for seed in [int(s) for s in sys.argv[1:]] or [0, 1, 2, 3, 4]:
        ids = tgad_row(rows, seed, 2)["shot_ids"].split(";")
        shots = shot_images(ROOT, "transistor_256", ids)
        validator = cached_validator(features, RES, "transistor_256", 2, seed)
        plain = torch.stack([im for im, _ in augment_shots(list(shots), N, seed, PlainAugConfig())])
        paste = pastes(shots, N, seed)
        paste_aug = torch.stack([im for im, _ in augment_shots(list(paste), N, seed, PlainAugConfig())])
        half = torch.cat([plain[: N // 2], paste_aug[: N // 2]])
        for name, images in [
            ("plain_aug", plain),
            ("paste", paste),
            ("paste_aug", paste_aug),
            ("half", half),
        ]:
            feats = torch.cat([features(images[i : i + 8]) for i in range(0, len(images), 8)])
            nc, dc = single_image_covers(validator, feats[:16])
            cols = validator.evaluate(images)
            print(
                f"seed {seed} {name:10s} per-image normal {nc.mean():.4f} defect {dc.mean():.4f} | set normal "
                f"{cols['val_normal_cov']:.4f} defect {cols['val_defect_cov']:.4f} auroc {cols['val_auroc']:.4f} "
                f"gauss {cols['val_auroc_gaussian']:.4f}",
                flush=True,
            )
        if seed == 0:
            import torchvision

            torchvision.utils.save_image(paste[:16], "/tmp/transplants_seed0.png", nrow=8)


if __name__ == "__main__":
    main()
