"""Top-10 PromptSelector tables for a few classes and the WordNet word counts of every class.

    python experiments/prompt_tables.py --allow-random-clip          # offline: random ViT-B-32, marked
    python experiments/prompt_tables.py --clip-weights /path/ViT-B-32.pt

Writes experiments/results/prompt_tables.md. Shots: the k=1 shot (seed 0) of each class found under
--mvtec-root (default ../shared/data/mvtec_ad, also as ``<class>_256``); a class without images there is
scored against a uniform grey image, and the file says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import torch

from tgad.assets.cache import atomic_file
from tgad.assets.clip import resolve_clip
from tgad.models.prompt_selector.selector import select_prompt
from tgad.text.keywords import class_table, resolve_keyword
from tgad.text.templates import DEFAULT_TEMPLATE
from tgad.text.wordnet_words import status_words, word_pools

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "prompt_tables.md"


def _shot(mvtec_root: Path, category: str) -> tuple[list[torch.Tensor], str]:
    """The 1-shot (seed 0) image the MVTecAD datamodule picks, as ``tgad test`` would."""
    from tgad.data import MVTecAD, read_rgb

    for folder in (category, f"{category}_256"):
        if (mvtec_root / folder / "train" / "good").is_dir():
            dm = MVTecAD(root=str(mvtec_root), category=folder, shots=1, shot_seed=0)
            dm.setup()
            path = dm.shot_paths[0]
            return [read_rgb(path)], os.path.relpath(path, ROOT)
    return [torch.full((3, 256, 256), 0.5)], "none on this machine: a uniform grey 256 px image"


def word_counts(T: int) -> list[str]:
    lines = [
        f"| dataset | category | object | synset | object words | status words | words at T={T} (object + status) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for dataset, entries in class_table().items():
        for category in entries:
            sense = resolve_keyword(category)
            objects, status = word_pools(sense.synset, sense.object_name)
            words = status_words(sense.synset, T, sense.object_name)
            n_obj = len(set(words) & set(objects))
            lines.append(
                f"| {dataset} | {category} | {sense.object_name} | `{sense.synset}` | {len(objects)} | {len(status)} | "
                f"{len(words)} ({n_obj} + {len(words) - n_obj}) |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", nargs="+", default=["hazelnut", "bottle"])
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--clip-weights", default=None)
    parser.add_argument("--allow-random-clip", action="store_true")
    parser.add_argument("--num-words", type=int, default=64)
    parser.add_argument("--mvtec-root", type=Path, default=ROOT.parent / "shared" / "data" / "mvtec_ad")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # random CLIP weights (if allowed) are then the same every run

    start = time.perf_counter()
    model, tokenizer, weights = resolve_clip(
        args.clip_model, args.clip_weights, allow_random=args.allow_random_clip
    )
    lines = ["# PromptSelector: top-10 prompts and WordNet word counts", ""]
    if weights.is_random:
        lines += [
            f"**clip_weights = {weights.describe()}: RANDOM CLIP WEIGHTS.** No real CLIP weights were available "
            "offline, so the scores and rankings below carry no text guidance; they only show the pipeline runs. "
            "Rerun with `--clip-weights <checkpoint>` for meaningful tables.",
            "",
        ]
    else:
        lines += [f"clip_weights = `{weights.describe()}`", ""]
    lines += [f"Template `{DEFAULT_TEMPLATE}`, T = {args.num_words}, torch threads = {args.threads}.", ""]
    for category in args.classes:
        images, source = _shot(args.mvtec_root, category)
        sense = resolve_keyword(category)
        sel = select_prompt(model, tokenizer, images, sense, weights, args.num_words, (DEFAULT_TEMPLATE,))
        lines += [
            f"## {category} (`{sense.synset}`)",
            "",
            f"Shot: {source}",
            "",
            "| rank | score | prompt |",
            "|---:|---:|---|",
        ]
        lines += [f"| {i} | {r.score:.4f} | {r.prompt} |" for i, r in enumerate(sel.table[:10], 1)]
        lines += [""]
    lines += ["## Words per class", ""] + word_counts(args.num_words)
    lines += ["", f"Run time: {time.perf_counter() - start:.1f} s (CPU)."]
    with atomic_file(OUT) as handle:
        handle.write("\n".join(lines) + "\n")
    logging.getLogger(__name__).info("wrote %s", OUT)


if __name__ == "__main__":
    main()
