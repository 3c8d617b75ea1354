"""tgad.text: class -> WordNet sense table, status words, templates, CLIP embedding functions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tgad.assets.clip import TINY_CLIP, resolve_clip
from tgad.data.embedded_builder import EMBEDDED_CATEGORIES
from tgad.data.real_datasets import BTAD_CATEGORIES, LOCO_CATEGORIES, MVTEC_CATEGORIES
from tgad.text.clip_embed import (
    clear_text_cache,
    encode_images,
    encode_text,
    model_fingerprint,
    prepare_images,
    text_cache_info,
)
from tgad.text.keywords import known_categories, normalise_category, resolve_keyword
from tgad.text.templates import DEFAULT_TEMPLATE, PHOTO_TEMPLATES, candidate_prompts, fill
from tgad.text.wordnet_words import status_words

# The text table must cover exactly the datasets' own category lists (tgad.data is the source of truth).
MVTEC = list(MVTEC_CATEGORIES)
BTAD = list(BTAD_CATEGORIES)
LOCO = list(LOCO_CATEGORIES)
EMBEDDED = list(EMBEDDED_CATEGORIES)


def test_table_covers_every_class_of_the_datasets():
    assert known_categories("mvtec") == MVTEC
    assert known_categories("btad") == BTAD
    assert known_categories("loco") == LOCO
    assert known_categories("embedded") == EMBEDDED


@pytest.mark.parametrize("category", MVTEC + BTAD + LOCO + EMBEDDED)
def test_every_class_gets_T_clean_distinct_words(category):
    sense = resolve_keyword(category)
    words = status_words(sense.synset, T=16, object_name=sense.object_name)
    assert len(words) == 16
    assert len({w.lower() for w in words}) == 16
    assert sense.object_name.lower() not in {w.lower() for w in words}
    for word in words:
        assert "_" not in word and word == word.lower() and len(word.split()) <= 2, word
    assert len(status_words(sense.synset, T=64, object_name=sense.object_name)) == 64


def test_bottle_words_include_its_hypernym_vessel_and_status_words():
    sense = resolve_keyword("bottle")
    assert sense.synset == "bottle.n.01"
    words = status_words(sense.synset, T=16, object_name="bottle")
    assert "vessel" in words
    assert {"perfect", "flawless", "intact"} <= set(words)
    assert "bottle" not in words


def test_screw_is_the_fastener_not_the_prison_guard():
    sense = resolve_keyword("screw")
    assert sense.synset == "screw.n.04"
    words = status_words(sense.synset, T=64, object_name="screw")
    assert "fastener" in words and "woodscrew" in words
    assert not {"prison guard", "guard", "jailer", "turnkey"} & set(words)


def test_category_names_and_user_keywords():
    assert normalise_category("Hazelnut_256") == "hazelnut"
    assert normalise_category("01") == "01"
    assert resolve_keyword("hazelnut_256").synset == "hazelnut.n.02"
    nut = resolve_keyword(keyword="metal nut")
    assert (nut.object_name, nut.synset, nut.source) == ("metal nut", "nut.n.03", "keyword")
    assert resolve_keyword("widget", keyword="nut.n.03").synset == "nut.n.03"
    assert resolve_keyword("bottle", keyword="washer").synset.startswith("washer.n.")


def test_a_category_the_table_lacks_is_its_own_keyword_when_wordnet_knows_it(caplog):
    sense = resolve_keyword("widget")
    assert (sense.object_name, sense.synset, sense.source) == ("widget", "doodad.n.01", "category")
    assert "not in tgad's class table" in caplog.text and "doodad.n.01" in caplog.text
    assert (
        resolve_keyword("Light_Bulb").synset == "light_bulb.n.01"
    )  # case and underscores as folders write them
    assert resolve_keyword("widget", keyword="metal nut").source == "keyword"  # a keyword still wins


def test_unknown_keyword_and_category_are_one_line_errors():
    with pytest.raises(ValueError, match="no WordNet noun sense") as err:
        resolve_keyword(keyword="qwxzt")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="--keywords qwxzt_part=WORD"):
        resolve_keyword("qwxzt_part")
    with pytest.raises(ValueError, match="not a WordNet 3.0 synset"):
        resolve_keyword(keyword="screw.n.99")


def test_status_words_are_deterministic_across_processes():
    """Same words for every class in a fresh interpreter with another hash seed (set/dict order)."""
    here = {
        c: status_words(resolve_keyword(c).synset, 64, resolve_keyword(c).object_name) for c in MVTEC + BTAD
    }
    code = (
        "import json; from tgad.text.keywords import resolve_keyword as r; from tgad.text.wordnet_words import "
        f"status_words as s; print(json.dumps({{c: s(r(c).synset, 64, r(c).object_name) for c in {MVTEC + BTAD!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "PYTHONHASHSEED": "12345"},
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_candidate_prompts_follow_the_templates():
    words = ["vessel", "intact", "uniform"]
    cands = candidate_prompts("bottle", words, (DEFAULT_TEMPLATE, *PHOTO_TEMPLATES[:2]))
    assert len(cands) == 9
    assert cands[0].prompt == "a bottle with vessel" and cands[0].template == DEFAULT_TEMPLATE
    assert fill("a photo of a {word} {object}", "bottle", "intact") == "a photo of an intact bottle"
    assert fill("a photo of a {word} {object}", "bottle", "uniform") == "a photo of a uniform bottle"
    assert len(candidate_prompts("bottle", ["clean", "clean"])) == 1
    with pytest.raises(ValueError, match="{object}"):
        candidate_prompts("bottle", words, ["a photo of {thing}"])


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    model, tokenizer, _ = resolve_clip(TINY_CLIP, allow_random=True)
    return model, tokenizer


def test_encode_text_is_normalised_batched_and_cached(tiny_clip):
    model, tokenizer = tiny_clip
    prompts = [f"a bottle with word{i}" for i in range(7)]
    clear_text_cache()
    full = encode_text(model, tokenizer, prompts, batch_size=256)
    assert full.shape == (7, 64)
    assert torch.allclose(full.norm(dim=-1), torch.ones(7), atol=1e-5)
    again = encode_text(model, tokenizer, prompts, batch_size=3)  # cached: same numbers, no re-encoding
    assert text_cache_info()["hits"] == 1 and torch.equal(again, full)
    chunked = encode_text(model, tokenizer, prompts, batch_size=3, cache=False)
    assert torch.allclose(chunked, full, atol=1e-5)
    direct = torch.nn.functional.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
    assert torch.allclose(direct, full, atol=1e-5)


def test_text_cache_tells_models_apart(tiny_clip):
    model, tokenizer = tiny_clip
    torch.manual_seed(1)
    other, _, _ = resolve_clip(TINY_CLIP, allow_random=True)
    assert model_fingerprint(model) != model_fingerprint(other)
    a = encode_text(model, tokenizer, ["a screw with bolt"])
    b = encode_text(other, tokenizer, ["a screw with bolt"])
    assert not torch.allclose(a, b)


def test_encode_images_normalises_resizes_and_passes_gradients(tiny_clip):
    model, _ = tiny_clip
    images = [torch.rand(3, 80, 120), torch.rand(3, 64, 64)]
    x = prepare_images(model, images)
    assert x.shape == (2, 3, 64, 64)
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(3, 1, 1)
    assert torch.allclose(x[1], (images[1] - mean) / std, atol=1e-5)  # already at size: only normalised
    batch = torch.rand(2, 3, 64, 64, requires_grad=True)
    feats = encode_images(model, batch)
    assert feats.shape == (2, 64) and torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)
    feats.sum().backward()
    assert batch.grad is not None and batch.grad.abs().sum() > 0
