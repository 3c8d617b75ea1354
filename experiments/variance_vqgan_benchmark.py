"""Benchmark of the VarianceVQGAN ``cpu`` preset on one real shot: speed, memory, reconstruction, samples.

    python experiments/variance_vqgan_benchmark.py \
        --root /work/shared/data/mvtec_ad --category hazelnut_256 --threads 1

Writes ``experiments/results/variance_vqgan/{benchmark.json, grid_residual.png, grid_direct.png}``: the grid
rows are shot | reconstruction | samples at each tau (two per tau). Targets (issue 3): fit <= 10 min on two
cores, sampling >= 5 images/s at 256 px, peak RSS < 4 GB, samples that look like the class.
Run it without ``MALLOC_MMAP_THRESHOLD_=131072`` (the Makefile's PatchCore setting): with it, every training
iteration here was 3-4x slower (page faults on each large tensor).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torchvision.utils import save_image

from tgad.data import MVTecAD, read_rgb
from tgad.models.variance_vqgan import PRESETS, VarianceVQGAN

OUT = Path(__file__).resolve().parent / "results" / "variance_vqgan"


class IterationTimer(L.Callback):
    """Wall time of every training iteration (generator + discriminator step), validation excluded."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter() - self._start)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (B,) of images in [0, 1]."""
    return 10 * torch.log10(1.0 / (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="/work/shared/data/mvtec_ad")
    p.add_argument("--category", default="hazelnut_256")
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--heldout", type=int, default=10, help="normal images never trained on, for held-out PSNR"
    )
    p.add_argument("--taus", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(args.seed)
    load_start = os.getloadavg()
    dm = MVTecAD(
        root=args.root, category=args.category, shots=args.shots, shot_seed=args.seed, image_size=256
    )
    module = VarianceVQGAN(config=PRESETS["cpu"], tau_values=args.taus)
    timer = IterationTimer()
    run_dir = Path(tempfile.mkdtemp(prefix="vqgan-bench-"))
    trainer = L.Trainer(
        max_steps=2 * args.iterations,  # two optimiser steps per iteration
        accelerator="cpu",
        logger=L.pytorch.loggers.CSVLogger(run_dir),
        enable_checkpointing=False,
        enable_progress_bar=False,
        check_val_every_n_epoch=None,
        val_check_interval=max(1, args.iterations // 3),
        limit_val_batches=1,
        callbacks=[timer],
        default_root_dir=run_dir,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    fit_s = time.perf_counter() - start

    module.eval()
    shots = torch.stack([read_rgb(path) for path in dm.shot_paths])  # (k, 3, 256, 256)
    # Held out = never trained on: test/good first, then train/good images other than the shots.
    category = Path(args.root) / args.category
    spare = [
        p
        for p in sorted((category / "train" / "good").iterdir())
        if p.name not in {s.name for s in dm.shot_paths}
    ]
    good = [*sorted((category / "test" / "good").iterdir()), *spare][: args.heldout]
    heldout = torch.stack([read_rgb(path) for path in good])
    net = module.perceptual
    with torch.no_grad():
        rec_shot, rec_held = module.model.reconstruct(shots), module.model.reconstruct(heldout)
        module.sample(shots[:1], 4, tau=1.0)  # warm-up
        throughput = {}
        for mode in ("residual", "direct"):
            t = time.perf_counter()
            module.sample(shots[:1], 32, tau=1.0, mode=mode)
            throughput[mode] = 32 / (time.perf_counter() - t)
        per_tau = {}
        for tau in args.taus:
            s = module.sample(shots[:1], 16, tau=tau, generator=torch.Generator().manual_seed(0))
            imgs = s.images[0]  # (16, 3, H, W)
            per_tau[str(tau)] = {
                "codes_changed": round(float(s.changed.mean()), 4),
                "feature_distance_to_shot": round(
                    float(net.distance(imgs, shots[:1].expand_as(imgs)).mean()), 4
                ),
                "pixel_std_across_samples": round(float(imgs.std(0).mean()), 4),
                "psnr_to_shot": round(float(psnr(imgs, shots[:1].expand_as(imgs)).mean()), 2),
            }
        codes_used = module.model.encode(shots).indices.unique().numel()
        for mode in ("residual", "direct"):
            module.hparams.sample_mode = mode
            save_image(module.sample_grid(shots[:1]), args.out / f"grid_{mode}.png")
        module.hparams.sample_mode = "residual"

    iters = timer.times
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "dataset": f"{args.root}/{args.category}",
        "shots": [p.name for p in dm.shot_paths],
        "heldout": [f"{p.parent.parent.name}/good/{p.name}" for p in good],
        "preset": "cpu",
        "config": module.config.flat(),  # by flat name, as the earlier results hold it
        "iterations": len(iters),
        "fit_s": round(fit_s, 1),
        "iterations_per_s": round(len(iters) / sum(iters), 3),
        "iteration_s_median": round(sorted(iters)[len(iters) // 2], 3),
        "sampling_images_per_s_256px": {k: round(v, 2) for k, v in throughput.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "psnr_shot": round(float(psnr(rec_shot, shots).mean()), 2),
        "psnr_heldout_mean": round(float(psnr(rec_held, heldout).mean()), 2),
        "feature_distance_heldout": round(float(net.distance(rec_held, heldout).mean()), 4),
        "codebook_alive": module.model.quantizer.usage(),
        "codes_used_by_shot": codes_used,
        "codebook_size": module.config.codebook_size,
        "samples_per_tau": per_tau,
        "perceptual_weights": module._aux["provenance"],
        "torch_threads": torch.get_num_threads(),
        # PatchCore's fix (MALLOC_MMAP_THRESHOLD_=131072) makes every large tensor an mmap: 3-4x slower here.
        "malloc_mmap_threshold_env": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "load_average_start_end": [load_start, os.getloadavg()],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs",
        "torch": torch.__version__,
    }
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
