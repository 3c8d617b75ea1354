"""Where the work runs: one frozen description of the accelerator, the device count and the precision, resolved
once (``auto`` -> the GPU when one is present) and handed to every Lightning Trainer tgad builds: the
VarianceVQGAN fit, the Integrator and the anomalib detectors.

Why resolve early: the resolved values go into an ExtraSet's key and manifest (images made with bf16 on a GPU
are not the images made in float32 on a CPU), and a request for a GPU that is not there must fail in the
preflight with one line, not minutes later inside a Trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")


class HardwareError(ValueError):
    """A hardware request this machine cannot serve (the message names the flag and the fix)."""


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


@dataclass(frozen=True)
class Hardware:
    """An accelerator request. ``devices`` > 1 fits the generator with Lightning DDP (``ddp_spawn``: the
    fitted weights come back to the calling process); the Integrator and the detectors use one device.
    ``precision`` applies to the VarianceVQGAN fit (the costly part); the Integrator, whose judges compare
    feature distances, and the detectors, whose scores are the published models', run in float32."""

    accelerator: str = "auto"
    devices: int = 1
    precision: str = "auto"

    def resolved(self) -> Hardware:
        """Concrete values for this machine: ``cuda`` / ``mps`` / ``cpu`` and a precision (``auto``: bf16-mixed on
        a GPU that supports it, else 32-true). Raises HardwareError for a request it cannot serve."""
        if self.accelerator not in ACCELERATORS:
            raise HardwareError(
                f"--accelerator {self.accelerator!r}: choose one of {', '.join(ACCELERATORS)}"
            )
        if self.precision not in PRECISIONS:
            raise HardwareError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.devices < 1:
            raise HardwareError(f"--devices {self.devices}: must be >= 1")
        gpus = _gpu_count()
        accelerator = {"gpu": "cuda"}.get(self.accelerator, self.accelerator)
        if accelerator == "auto":
            accelerator = "cuda" if gpus else "mps" if _mps() else "cpu"
        if accelerator == "cuda" and not gpus:
            raise HardwareError(
                f"--accelerator {self.accelerator}: no CUDA GPU visible to torch {torch.__version__}; "
                "use --accelerator cpu (or auto)"
            )
        if accelerator == "mps" and not _mps():
            raise HardwareError(
                "--accelerator mps: this machine has no Apple MPS device; use --accelerator cpu"
            )
        if accelerator == "cuda" and self.devices > gpus:
            raise HardwareError(
                f"--devices {self.devices}: only {gpus} CUDA GPU(s) visible; use --devices {gpus}"
            )
        if accelerator == "mps" and self.devices > 1:
            raise HardwareError(f"--devices {self.devices}: MPS has one device; use --devices 1")
        precision = self.precision
        if precision == "auto":
            bf16 = accelerator == "cuda" and torch.cuda.is_bf16_supported()
            precision = "bf16-mixed" if bf16 else "32-true"
        return Hardware(accelerator, self.devices, precision)

    @property
    def is_default_cpu(self) -> bool:
        """One CPU in float32: what every ExtraSet was made with before this setting existed (their keys stay
        valid because such a request leaves the hardware out of the key)."""
        return (self.accelerator, self.devices, self.precision) == ("cpu", 1, "32-true")

    def describe(self) -> str:
        return f"{self.accelerator} x{self.devices} {self.precision}"

    def trainer_kwargs(self, devices: int | None = None) -> dict:
        """Lightning Trainer arguments; ``devices`` overrides the count (1 for the parts that do not use DDP)."""
        count = self.devices if devices is None else devices
        kwargs = {"accelerator": self.accelerator, "devices": count, "precision": self.precision}
        if count > 1:  # the VarianceVQGAN's GAN steps leave the discriminator or generator unused in turn
            kwargs["strategy"] = "ddp_spawn_find_unused_parameters_true"
        return kwargs
