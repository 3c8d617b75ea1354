"""tgad.assets.clip: where CLIP weights come from, and the guard against silently random CLIP."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from tgad.assets import clip as clip_assets
from tgad.assets.cache import sha256_file
from tgad.assets.clip import TINY_CLIP, resolve_clip
from tgad.assets.weights import AssetError


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A tiny CLIP saved by the test: (model, .pt path)."""
    torch.manual_seed(3)
    model, _, _ = resolve_clip(TINY_CLIP, allow_random=True)
    path = tmp_path / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.fixture
def fake_tag_in_hf_cache(tmp_path, monkeypatch):
    """Pretend ``tgad-tiny-clip`` has a pretrained tag ``fake`` whose weights sit in a local HF hub cache."""
    torch.manual_seed(4)
    model, _, _ = resolve_clip(TINY_CLIP, allow_random=True)
    hub = tmp_path / "hf"
    snapshot = hub / "models--tgad--tiny-clip" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (hub / "models--tgad--tiny-clip" / "refs").mkdir()
    (hub / "models--tgad--tiny-clip" / "refs" / "main").write_text("a" * 40)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, snapshot / "open_clip_model.safetensors"
    )
    cfgs = {"fake": {"hf_hub": "tgad/tiny-clip/"}}
    monkeypatch.setattr(clip_assets, "_pretrained_cfg", lambda name, tag: cfgs.get(tag, {}))
    return model, str(hub)


def test_random_weights_are_refused_by_default():
    with pytest.raises(AssetError) as err:
        resolve_clip(TINY_CLIP)
    message = str(err.value)
    assert "\n" not in message
    assert "checkpoint file" in message and "allow_random_clip" in message


def test_random_weights_when_allowed_are_marked_and_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="tgad.assets.clip"):
        model, tokenizer, resolved = resolve_clip(TINY_CLIP, allow_random=True)
    assert resolved.source == "random" and resolved.is_random
    assert resolved.describe() == f"{TINY_CLIP}:RANDOM"
    assert "RANDOM WEIGHTS" in caplog.text
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert tokenizer(["a bottle"]).shape[0] == 1


def test_local_checkpoint_file_is_loaded_exactly(tiny_checkpoint):
    saved, path = tiny_checkpoint
    model, _, resolved = resolve_clip(TINY_CLIP, str(path))
    assert resolved.source == "local_file" and resolved.path == path.resolve()
    assert resolved.sha256 == sha256_file(path)
    assert _same_weights(model, saved)


def test_local_file_wins_over_cache_and_random(tiny_checkpoint, fake_tag_in_hf_cache):
    saved, path = tiny_checkpoint
    cached_model, hub = fake_tag_in_hf_cache
    # the tag alone resolves from the cache ...
    from_cache, _, resolved = resolve_clip(TINY_CLIP, "fake", cache_dir=hub)
    assert resolved.source == "cache" and resolved.tag == "fake" and _same_weights(from_cache, cached_model)
    # ... but an explicit file beats the cache and random, whatever else is allowed
    model, _, resolved = resolve_clip(TINY_CLIP, str(path), allow_random=True, cache_dir=hub)
    assert resolved.source == "local_file"
    assert _same_weights(model, saved) and not _same_weights(model, cached_model)


def test_missing_file_unknown_tag_and_offline_tag_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AssetError, match="is not a file"):
        resolve_clip(TINY_CLIP, str(tmp_path / "missing.pt"), allow_random=True)
    with pytest.raises(AssetError, match="neither a file nor a pretrained tag"):
        resolve_clip(TINY_CLIP, "no-such-tag", allow_random=True)
    with pytest.raises(AssetError, match="downloads are off") as err:  # no network attempt, no model built
        resolve_clip("ViT-B-32", "openai", cache_dir=str(tmp_path / "empty"))
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_architecture_is_a_clear_error(tiny_checkpoint, tmp_path):
    _, path = tiny_checkpoint
    state = torch.load(path, weights_only=True)
    state["text_projection"] = torch.zeros(64, 32)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(AssetError, match="does not load into tgad-tiny-clip"):
        resolve_clip(TINY_CLIP, str(bad))


def test_torchscript_archive_like_openais_original_files_loads(tiny_checkpoint, tmp_path):
    """OpenAI's ViT-B-32.pt is a TorchScript archive, which torch.load(weights_only=True) refuses."""
    saved, _ = tiny_checkpoint
    saved.output_dict = False
    tokens = torch.zeros(1, 77, dtype=torch.long)
    traced = torch.jit.trace(saved, (torch.rand(1, 3, 64, 64), tokens), check_trace=False, strict=False)
    path = tmp_path / "ViT-tiny.pt"
    traced.save(str(path))
    model, _, resolved = resolve_clip(TINY_CLIP, str(path))
    assert resolved.source == "local_file" and _same_weights(model, saved)
