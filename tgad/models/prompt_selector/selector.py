"""Keyword-to-prompt generation and CLIP prompt selection as plain functions (no Lightning).

P* = argmax_p cos(text(p), mean_i image(I_i)), over the candidate prompts built from the class's WordNet
words; the image side is the mean of the k shots' L2-normalised CLIP embeddings, re-normalised.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tgad.assets.cache import atomic_file
from tgad.assets.weights import ResolvedWeights
from tgad.text.clip_embed import encode_images, encode_text
from tgad.text.keywords import KeywordSense
from tgad.text.templates import DEFAULT_TEMPLATE, Candidate, candidate_prompts
from tgad.text.wordnet_words import status_words

SELECTION_JSON = "prompt_selection.json"
TABLE_CSV = "prompt_table.csv"
TABLE_COLUMNS = ("rank", "prompt", "word", "template", "score", "clip_weights")


class RankedPrompt(NamedTuple):
    prompt: str
    word: str
    template: str
    score: float  # cosine similarity with the shots' mean embedding


class PromptSelection(NamedTuple):
    best_prompt: str  # P*
    best_score: float
    table: list[RankedPrompt]  # every candidate, best first
    object_name: str
    synset: str
    words: list[str]
    clip_weights: str  # ResolvedWeights.describe(); "<model>:RANDOM" when CLIP had no real weights
    keyword_source: str = (
        "table"  # where the object word came from: table | keyword | category (name as a noun)
    )

    @property
    def random_clip(self) -> bool:
        return self.clip_weights.endswith(":RANDOM")


def build_candidates(
    sense: KeywordSense, num_words: int = 64, templates: Sequence[str] = (DEFAULT_TEMPLATE,)
) -> tuple[list[str], list[Candidate]]:
    """The class's T words and the candidate prompts built from them."""
    words = status_words(sense.synset, num_words, object_name=sense.object_name)
    return words, candidate_prompts(sense.object_name, words, templates)


def shot_embedding(model: nn.Module, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(D,) unit vector: the mean of the shots' normalised CLIP embeddings, re-normalised."""
    with torch.no_grad():
        feats = encode_images(model, images)  # (k, D)
    return F.normalize(feats.mean(dim=0), dim=-1)


def rank_prompts(
    text_emb: torch.Tensor, image_emb: torch.Tensor, candidates: Sequence[Candidate]
) -> list[RankedPrompt]:
    """Candidates sorted by cosine similarity, best first; ties keep candidate order.

    Args:
        text_emb: (N, D) normalised prompt embeddings, row i for ``candidates[i]``.
        image_emb: (D,) normalised image embedding.
    """
    if text_emb.shape[0] != len(candidates):
        raise ValueError(f"{text_emb.shape[0]} text embeddings for {len(candidates)} candidates")
    scores = text_emb.float() @ image_emb.float().to(text_emb.device)  # (N,)
    order = torch.argsort(scores, descending=True, stable=True)
    return [RankedPrompt(*candidates[i], float(scores[i])) for i in order.tolist()]


def select_prompt(
    model: nn.Module,
    tokenizer: Callable,
    images: torch.Tensor | Sequence[torch.Tensor],
    sense: KeywordSense,
    weights: ResolvedWeights,
    num_words: int = 64,
    templates: Sequence[str] = (DEFAULT_TEMPLATE,),
    text_batch_size: int = 256,
) -> PromptSelection:
    """Pick P* for the shots ``images`` ([0, 1] RGB, (k, 3, H, W) or a list of (3, H, W))."""
    words, candidates = build_candidates(sense, num_words, templates)
    text_emb = encode_text(model, tokenizer, [c.prompt for c in candidates], text_batch_size)  # (N, D)
    table = rank_prompts(text_emb, shot_embedding(model, images), candidates)
    best = table[0]
    return PromptSelection(
        best.prompt,
        best.score,
        table,
        sense.object_name,
        sense.synset,
        words,
        weights.describe(),
        sense.source,
    )


def selection_record(selection: PromptSelection, **meta) -> dict:
    """The JSON-ready record of a selection; ``meta`` (category, shots, config, weights detail) is merged in."""
    record = selection._asdict()
    record["table"] = [r._asdict() for r in selection.table]
    record["random_clip"] = selection.random_clip
    return {**record, **meta}


def save_selection(selection: PromptSelection, out_dir: str | Path, **meta) -> tuple[Path, Path]:
    """Write ``prompt_selection.json`` and ``prompt_table.csv`` atomically; both record ``clip_weights``."""
    out_dir = Path(out_dir)
    json_path, csv_path = out_dir / SELECTION_JSON, out_dir / TABLE_CSV
    with atomic_file(json_path) as handle:
        json.dump(selection_record(selection, **meta), handle, indent=2, default=str)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for rank, row in enumerate(selection.table, 1):
        writer.writerow(
            [rank, row.prompt, row.word, row.template, f"{row.score:.6f}", selection.clip_weights]
        )
    with atomic_file(csv_path) as handle:
        handle.write(buffer.getvalue())
    return json_path, csv_path


def format_top(selection: PromptSelection, k: int = 10) -> str:
    """Plain-text top-k table for logs, with the weights line first (and a RANDOM warning when it applies)."""
    head = (
        f"PromptSelector: {selection.object_name} ({selection.synset}), clip_weights={selection.clip_weights}"
    )
    if selection.random_clip:
        head += "  <-- RANDOM CLIP: these scores carry no text guidance"
    lines = [head, f"{'rank':>4}  {'score':>8}  prompt"]
    lines += [f"{i:>4}  {r.score:>8.4f}  {r.prompt}" for i, r in enumerate(selection.table[:k], 1)]
    return "\n".join(lines)
