"""taming-transformers VQGAN checkpoints start the VarianceVQGAN: a file written in taming's key layout by an
independent reference VQModel (``tests/helpers/taming_reference.py``) loads into the ``taming_tiny`` preset and
encodes, quantises, decodes and discriminates exactly as the reference does; a file that does not fit is one
line naming the key, and the file is never fully unpickled."""

from __future__ import annotations

import hashlib
import pickle
import sys
import types

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.helpers.taming_reference import EMBED, F16_1024, RefVQModel, reference
from tgad.cli.main import main
from tgad.models.variance_vqgan import VarianceVQGAN, VQGANConfig
from tgad.models.variance_vqgan.taming_import import TamingCheckpointError, load_taming_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lightning_checkpoint(ref: nn.Module, path, monkeypatch, **extra) -> None:
    """A Lightning 1.x-style file: the state dict plus bookkeeping, with a callback class as a dict key as
    Lightning 1.x pickled it (a module under pytorch_lightning, faked here)."""
    fake = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:  # only its name reaches the file
        pass

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = fake.__name__, "ModelCheckpoint"
    fake.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    callbacks = {ModelCheckpoint: {"best_model_score": torch.tensor(0.1), "best_model_path": "x.ckpt"}}
    ckpt = {"state_dict": ref.state_dict(), "global_step": 7, "epoch": 2, "callbacks": callbacks, **extra}
    torch.save({**ckpt, "pytorch-lightning_version": "1.0.8"}, path)
    monkeypatch.delitem(sys.modules, fake.__name__)


@pytest.fixture
def taming_file(tmp_path, monkeypatch):
    ref = reference()
    path = tmp_path / "last.ckpt"
    _lightning_checkpoint(ref, path, monkeypatch)
    return ref, path


def test_taming_checkpoint_round_trips(taming_file):
    ref, path = taming_file
    # As a real Lightning 1.x file: a plain weights_only load refuses it; the import reads its tensors.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == [
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
    ]
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    model, disc, report = load_taming_checkpoint(path, "taming_tiny")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z_ref, q_ref, idx_ref = ref.encode(x * 2 - 1)
        enc = model.encode(x)
        assert torch.allclose(enc.z_e, z_ref, atol=1e-5)
        assert torch.equal(enc.indices, idx_ref) and torch.equal(enc.quantized, q_ref)
        assert torch.allclose(model.decode(enc.quantized), (ref.decode(q_ref) + 1) / 2, atol=1e-5)
        assert torch.allclose(disc.eval()(x), ref.loss.discriminator.main(x * 2 - 1), atol=1e-5)
    n_generator = sum(k.startswith(("encoder.", "decoder.", "quant", "post_quant")) for k in ref.state_dict())
    assert report.tensors == n_generator and report.discriminator_loaded and report.skipped == 2
    assert report.weights.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.global_step == 7 and report.weights.source == "local_file"
    # tgad's sampling runs on the imported latents: tau = 0 gives the input back, tau > 0 moves codes.
    same = model.sample(x, 2, tau=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(same.images, x.unsqueeze(1).expand_as(same.images))
    moved = model.sample(x, 2, tau=3.0, generator=torch.Generator().manual_seed(0))
    assert moved.changed.mean() > 0


def test_bare_state_dict_and_no_discriminator(tmp_path):
    ref = reference(seed=3)
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("loss.")}
    torch.save(state, tmp_path / "model.pt")
    model, disc, report = load_taming_checkpoint(tmp_path / "model.pt", VQGANConfig.preset("taming_tiny"))
    assert disc is not None and not report.discriminator_loaded and report.skipped == 0
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode(x).indices, ref.encode(x * 2 - 1)[2])


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("shape", "decoder.conv_in.weight"),
        ("missing", "encoder.mid.attn_1.q.bias"),
        ("missing", "post_quant_conv.weight"),
        ("missing", "loss.discriminator.main.3.running_mean"),
        ("unexpected", "quantize.used"),
        ("codebook", "quantize.embedding.weight"),
        ("discriminator", "loss.discriminator.main.2.weight"),
    ],
)
def test_mismatched_checkpoint_is_one_line_naming_the_key(tmp_path, change, key):
    state = reference().state_dict()
    if change == "shape":
        state[key] = torch.zeros(32, 8, 3, 3)
    elif change == "missing":
        del state[key]
    elif change == "unexpected":
        state[key] = torch.arange(10)
    elif change == "codebook":
        state[key] = torch.zeros(128, EMBED)
    else:
        state[key] = torch.zeros(64, 16, 4, 4)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError) as err:
        load_taming_checkpoint(path, "taming_tiny")
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert f"'{key}'" in message
    if change == "discriminator":  # what the file's PatchGAN is, read from its shapes
        assert "disc_layers=2, disc_channels=32" in message


def test_cli_import_check_ok_and_mismatch_exit_2(taming_file, tmp_path, capsys):
    ref, path = taming_file
    assert main(["vqgan", "import-check", str(path), "--preset", "taming_tiny"]) == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() in capsys.readouterr().out
    state = ref.state_dict()
    state["encoder.conv_in.weight"] = torch.zeros(128, 3, 3, 3)  # a wider net's first layer
    torch.save({"state_dict": state}, tmp_path / "wide.ckpt")
    wrong = main(["vqgan", "import-check", str(tmp_path / "wide.ckpt"), "--preset", "taming_tiny"])
    err = capsys.readouterr().err.strip()
    assert wrong == 2 and len(err.splitlines()) == 1
    assert "'encoder.conv_in.weight'" in err and "taming_f16_1024" in err
    # the default reads the layout from the file: the reference's own, found without naming a preset
    assert main(["vqgan", "import-check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "its own layout" in out and "channel_mult=(1, 1, 2)" in out and "codebook_size=64" in out
    inconsistent = main(
        ["vqgan", "import-check", str(tmp_path / "wide.ckpt")]
    )  # conv_in wider than its levels
    assert inconsistent == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_architecture_is_read_from_the_tensors_of_the_imagenet_layout():
    """taming_architecture on vqgan_imagenet_f16_1024's tensors (meta device) gives the preset made for it."""
    from tgad.models.variance_vqgan.taming_import import taming_architecture

    with torch.device("meta"):
        state = RefVQModel(F16_1024).state_dict()
    fields = taming_architecture(state)
    preset = VQGANConfig.preset("taming_f16_1024")
    assert fields == {name: getattr(preset, name) for name in fields}
    assert set(fields) >= {"channel_mult", "attn_levels", "z_channels", "codebook_size", "disc_layers"}


def test_f16_1024_preset_has_the_layout_of_taming_imagenet_model():
    """Key for key and shape for shape, the vqgan_imagenet_f16_1024 layout (built on the meta device: no memory)."""
    from tgad.models.variance_vqgan.taming_import import _target_key
    from tgad.models.variance_vqgan.torch_model import PatchDiscriminator, VarianceVQGANModel

    cfg = VQGANConfig.preset("taming_f16_1024")
    with torch.device("meta"):
        ref, model = RefVQModel(F16_1024), VarianceVQGANModel(cfg)
        disc = PatchDiscriminator(cfg.disc_channels, cfg.disc_layers, norm="batch")
    theirs = {_target_key(k): v.shape for k, v in ref.state_dict().items() if _target_key(k)}
    ours = {k: v.shape for k, v in model.state_dict().items() if k.startswith(("encoder.", "decoder."))}
    assert theirs == ours and len(ours) > 300
    assert model.quantizer.codebook.shape == ref.quantize.embedding.weight.shape == (1024, 256)
    prefix = "loss.discriminator.main."
    theirs_disc = {
        "net." + k[len(prefix) :]: v.shape for k, v in ref.state_dict().items() if k.startswith(prefix)
    }
    assert theirs_disc == {k: v.shape for k, v in disc.state_dict().items()}
    assert cfg.downsample == 16


RAN: list[str] = []


def _side_effect(tag: str) -> str:
    RAN.append(tag)
    return tag


class _Payload:
    """Unpickling this calls _side_effect: what a hostile file would do with a worse function."""

    def __reduce__(self):
        return (_side_effect, ("unpickled",))


def test_file_is_read_with_weights_only(tmp_path):
    path = tmp_path / "hostile.ckpt"
    torch.save({"state_dict": reference().state_dict(), "hyper_parameters": _Payload()}, path)
    torch.load(path, weights_only=False)  # the file does run code when fully unpickled ...
    assert RAN == ["unpickled"]
    with pytest.raises(TamingCheckpointError) as err:  # ... and the import never unpickles it
        load_taming_checkpoint(path, "taming_tiny")
    assert RAN == ["unpickled"]
    message = str(err.value)
    assert "\n" not in message and "_side_effect" in message and "weights_only=False" in message


def test_lightning_module_starts_from_taming_and_trains(taming_file, tmp_path):
    ref, path = taming_file
    module = VarianceVQGAN.from_taming(
        path, config=VQGANConfig.preset("taming_tiny", disc_start=0), perceptual_backbone=""
    )
    assert module.init_weights.discriminator_loaded and module.init_weights.weights.path == path
    module.eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(module.model.encode(x).indices, ref.encode(x * 2 - 1)[2])
    codebook = module.model.quantizer.codebook.clone()
    module.train()  # Lightning keeps a module's mode: eval here would freeze the EMA
    # The imported codebook is refined by the EMA, not redrawn from the first batch.
    from tests.test_variance_vqgan_training import _trainer

    trainer = _trainer(tmp_path, max_steps=4)
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=1))
    moved = (module.model.quantizer.codebook - codebook).norm(dim=1)
    # Refined: 0.14 of the codes' mean norm here; redrawn from the batch, 3.2.
    assert 0 < moved.mean() < 0.5 * codebook.norm(dim=1).mean()
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["init_weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="not a taming layout"):
        VarianceVQGAN.from_taming(path, config=VQGANConfig.preset("tiny"), perceptual_backbone="")
