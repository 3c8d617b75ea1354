"""Any accelerator: ``auto`` resolves to what the machine has, impossible requests fail in one line before any
work, and precision and device count reach the generator fit, its key and its manifest (DDP on 2 CPU
processes stands in for 2 GPUs: same Lightning strategy, gloo instead of NCCL)."""

from __future__ import annotations

import pytest
import torch

from tests.test_generate import _write_dataset
from tgad.cli.main import main
from tgad.generate import is_complete, load_manifest
from tgad.generate.chain import generate_extra_set, request_from_flags
from tgad.hardware import Hardware, HardwareError

SMALL = dict(
    vqgan_iterations=3, integrator_overrides={"rounds": 1, "samples_per_round": 4, "update_steps": 1}
)


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


def test_precision_and_ddp_reach_the_fit_its_key_and_the_manifest(no_gpu, tmp_path):
    """The default is float32 on one CPU (the key of asking for it); bf16 and a 2-process DDP fit are other sets."""
    root = _write_dataset(tmp_path / "data")

    def make(name: str, hardware: Hardware | None) -> dict:
        out = tmp_path / name
        flags = dict(allow_random_clip=True, hardware=hardware, **SMALL)
        generate_extra_set(request_from_flags("mvtec", root, "hazelnut", 1, 0, 4, "tiny", **flags), out)
        manifest = load_manifest(out)
        assert is_complete(out, manifest["cache_key"])
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
    assert ddp["config"]["arguments"]["hardware"] == {
        "accelerator": "cpu",
        "devices": 2,
        "precision": "32-true",
    }
