"""Is a synthetic-defect family neither saturated nor at chance on a class's train split? (issue 23 part 3)

The family is judged on training images only (never a test split): for each class, k and seed, the shots and
the held-out training normals of the benchmark's validation (``tgad.evaluation.validation``), the shots-only
``val_auroc_shots`` (held-out normals vs their synthetic defects, scored against the shots' bank) and the
shots-only ``val_paired``, per family. A family at 1.0 everywhere cannot rank extra sets; one at 0.5 measures
nothing.

Usage: python experiments/validation_family_levels.py --root /work/shared/data/mvtec_ad \\
           --categories transistor_256 hazelnut_256 [--shots 1 2 4] [--seeds 0 1] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from tgad.data import DATAMODULES
from tgad.data.images import read_resized
from tgad.evaluation.validation import ExtraSetValidator, ValidationSettings, held_out_names
from tgad.features.patches import detector_features
from tgad.features.synthetic_defects import VALIDATION_FAMILIES


def levels(root: Path, categories, shots, seeds, size: int = 256) -> pd.DataFrame:
    """One line per (category, k, seed, family): val_auroc_shots and val_paired of the shots alone."""
    features, lines = detector_features(), []
    for category in categories:
        for k in shots:
            for seed in seeds:
                dm = DATAMODULES["mvtec"](
                    root=str(root),
                    category=category,
                    shots=k,
                    shot_seed=seed,
                    image_size=size,
                    download=False,
                )
                dm.setup()
                train = dm.samples[dm.samples.split == "train"]
                names = [Path(p).name for p in train.image_path]
                by_name = dict(zip(names, train.image_path, strict=True))
                held = held_out_names(names, dm.shot_ids, ValidationSettings.n_normals)
                shot_images = read_resized(dm.shot_paths, size)
                normals = read_resized([by_name[n] for n in held], size)
                for family in VALIDATION_FAMILIES:
                    start = time.perf_counter()
                    settings = ValidationSettings.of_family(family)
                    columns = ExtraSetValidator(features, shot_images, normals, settings).evaluate(None, True)
                    lines.append(
                        {"category": category, "k": k, "seed": seed, "family": family}
                        | {c: columns[c] for c in ("val_auroc_shots", "val_paired")}
                    )
                    print(f"{lines[-1]} ({time.perf_counter() - start:.1f} s)", flush=True)
    return pd.DataFrame(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--categories", nargs="+", required=True)
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("TGAD_THREADS", "1")))
    frame = levels(args.root, args.categories, args.shots, args.seeds)
    table = frame.groupby(["category", "k", "family"], as_index=False)[
        ["val_auroc_shots", "val_paired"]
    ].mean()
    text = table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else table.to_string(index=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = "python experiments/validation_family_levels.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        args.out.write_text(f"Means over seeds {args.seeds}. Command:\n\n    {command}\n\n{text}\n")
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
