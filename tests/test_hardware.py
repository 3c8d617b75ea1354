"""Any accelerator: ``auto`` resolves to what the machine has, impossible requests fail in one line before any
work, and precision and device count reach the generator fit, its key and its manifest (DDP on 2 CPU
processes stands in for 2 GPUs: same Lightning strategy, gloo instead of NCCL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from tests.test_generate import _write_dataset
from tgad.cli.main import main
from tgad.generate import is_complete, load_manifest
from tgad.generate.chain import generate_extra_set, request_from_flags
from tgad.hardware import Hardware, HardwareError

SMALL = dict(
    vqgan_iterations=3, integrator_overrides={"rounds": 1, "samples_per_round": 4, "update_steps": 1}
)


class _RecordFit(Callback):
    """What a Trainer runs, written by every fit process (a DDP fit has two) to ``folder``: its precision plugin,
    strategy, rank and world size, and the dtype the module's first convolution computed in while training."""

    def __init__(self, folder: str):
        self.folder, self.conv_dtypes, self.hook = folder, set(), None

    def on_train_start(self, trainer, pl_module):
        conv = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Conv2d))
        self.hook = conv.register_forward_hook(lambda m, i, out: self.conv_dtypes.add(str(out.dtype)))

    def on_train_end(self, trainer, pl_module):
        self.hook.remove()
        record = {
            "module": type(pl_module).__name__,
            "precision": trainer.precision,
            "strategy": type(trainer.strategy).__name__,
            "world_size": trainer.world_size,
            "rank": trainer.global_rank,
            "conv_dtypes": sorted(self.conv_dtypes),
        }
        (Path(self.folder) / f"{record['module']}-{os.getpid()}.json").write_text(json.dumps(record))


@pytest.fixture
def recorded_fits(monkeypatch, tmp_path):
    """Every Trainer built in the test gets a :class:`_RecordFit`; returns a reader of the records by module."""
    folder = tmp_path / "fits"
    folder.mkdir()
    init = Trainer.__init__

    def init_recording(self, *args, callbacks=None, **kwargs):
        init(self, *args, callbacks=[*(callbacks or []), _RecordFit(str(folder))], **kwargs)

    monkeypatch.setattr(Trainer, "__init__", init_recording)

    def read() -> dict[str, list[dict]]:
        records = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
        for f in folder.glob("*.json"):
            f.unlink()
        by_module: dict[str, list[dict]] = {}
        for r in sorted(records, key=lambda r: r["rank"]):
            by_module.setdefault(r.pop("module"), []).append(r)
        return by_module

    return read


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """What torch reports on a machine with two bf16-capable GPUs (only resolution is tested with it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_auto_is_one_cpu_in_float32_without_a_gpu(no_gpu):
    hw = Hardware().resolved()
    assert (hw.accelerator, hw.devices, hw.precision) == ("cpu", 1, "32-true") and hw.is_default_cpu
    assert Hardware("cpu", 2).resolved().trainer_kwargs()["strategy"].startswith("ddp_spawn")
    assert "strategy" not in Hardware("cpu", 2).resolved().trainer_kwargs(devices=1)


def test_auto_takes_the_gpu_and_bf16_when_present(two_gpus):
    hw = Hardware(devices=2).resolved()
    assert (hw.accelerator, hw.devices, hw.precision) == ("cuda", 2, "bf16-mixed") and not hw.is_default_cpu
    assert Hardware("gpu", precision="32-true").resolved().precision == "32-true"
    with pytest.raises(HardwareError, match=r"--devices 3: only 2 CUDA GPU\(s\)"):
        Hardware("gpu", devices=3).resolved()


def test_impossible_requests_fail_in_one_line_before_any_work(no_gpu, tmp_path, capsys):
    with pytest.raises(HardwareError, match="--accelerator gpu: no CUDA GPU"):
        Hardware("gpu").resolved()
    with pytest.raises(HardwareError, match="--devices 0"):
        Hardware("cpu", 0).resolved()
    root = _write_dataset(tmp_path / "data")
    base = ["--dataset", "mvtec", "--root", str(root), "--allow-random-clip", "--preset", "tiny"]
    out = tmp_path / "set"
    cases = [
        ["generate", *base, "--category", "hazelnut", "--n", "4", "--out", str(out), "--accelerator", "cuda"],
        ["benchmark", *base, "--categories", "hazelnut", "--results-dir", str(tmp_path / "r"), "--no-wandb",
         "--accelerator", "gpu"],
    ]  # fmt: skip
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "--accelerator" in err and "no CUDA GPU" in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "r").exists()


def test_precision_and_ddp_reach_the_fit_its_key_and_the_manifest(no_gpu, tmp_path, recorded_fits):
    """float32 on one CPU is the default's key; bf16 and a 2-process DDP fit are other sets. What
    the Trainers ran is recorded inside the fits: the generator in the requested precision (its convolutions in
    bfloat16 under bf16-mixed) on the requested processes; the Integrator on one process in float32."""
    root = _write_dataset(tmp_path / "data")
    single = {"strategy": "SingleDeviceStrategy", "world_size": 1, "rank": 0}
    float32 = {"precision": "32-true", "conv_dtypes": ["torch.float32"]}
    ran = {}

    def make(name: str, hardware: Hardware | None) -> dict:
        out = tmp_path / name
        flags = dict(allow_random_clip=True, hardware=hardware, **SMALL)
        generate_extra_set(request_from_flags("mvtec", root, "hazelnut", 1, 0, 4, "tiny", **flags), out)
        manifest = load_manifest(out)
        assert is_complete(out, manifest["cache_key"])
        fits = recorded_fits()
        assert fits["Integrator"] == [{**single, **float32}], name  # the judges compare float32 distances
        ran[name] = fits["VarianceVQGAN"]
        return manifest

    default = make("default", None)
    explicit = make("explicit", Hardware("cpu", 1, "32-true"))
    bf16 = make("bf16", Hardware("cpu", 1, "bf16-mixed"))
    ddp = make("ddp", Hardware("cpu", 2, "32-true"))
    assert default["cache_key"] == explicit["cache_key"] and default["config"]["arguments"]["hardware"] == {
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
    }
    assert len({default["cache_key"], bf16["cache_key"], ddp["cache_key"]}) == 3
    assert [m["resources"]["hardware"] for m in (default, bf16, ddp)] == [
        "cpu x1 32-true",
        "cpu x1 bf16-mixed",
        "cpu x2 32-true",
    ]
    assert ran["default"] == ran["explicit"] == [{**single, **float32}]
    assert ran["bf16"] == [{**single, "precision": "bf16-mixed", "conv_dtypes": ["torch.bfloat16"]}]
    ddp_ranks = [{**float32, "strategy": "DDPStrategy", "world_size": 2, "rank": r} for r in (0, 1)]
    assert ran["ddp"] == ddp_ranks  # two processes, each fitting its share
    assert ddp["config"]["arguments"]["hardware"] == {
        "accelerator": "cpu",
        "devices": 2,
        "precision": "32-true",
    }
