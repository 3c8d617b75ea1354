"""One way to build any anomalib model for tgad's scoring: raw outputs, no post-processor, no evaluator."""

from __future__ import annotations

from typing import Any, TypeVar

from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize

T = TypeVar("T")


def raw_model(model_class: type[T], image_size: int, **kwargs: Any) -> T:
    """``model_class(**kwargs)`` resized to ``image_size`` by its own pre-processor, with raw scores and maps:
    ``tgad.evaluation`` scores unnormalised values (anomalib's default min-max normalisation needs a validation
    pass and otherwise turns good scores into AUROC 0.5)."""
    return model_class(
        pre_processor=model_class.configure_pre_processor(image_size=(image_size, image_size)),
        post_processor=False,
        evaluator=False,
        visualizer=False,
        **kwargs,
    )


def normalise_like(model: Any, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """``model`` with its pre-processor's ``Normalize`` set to ``mean``/``std``, the statistics its backbone's
    weights were trained with (``ResolvedWeights.mean/std``). anomalib's pre-processors normalise with ImageNet's
    whatever the backbone; the TF-ported EfficientNet-Lite0 weights expect (0.5, 0.5, 0.5) / (0.5, 0.5, 0.5).
    A model without a ``Normalize`` step (EfficientAd's) is returned unchanged."""
    old = getattr(model, "pre_processor", None)
    steps = list(getattr(getattr(old, "transform", None), "transforms", []))
    if not any(isinstance(step, Normalize) for step in steps):
        return model
    steps = [Normalize(mean=list(mean), std=list(std)) if isinstance(s, Normalize) else s for s in steps]
    model.pre_processor = PreProcessor(transform=Compose(steps))
    return model
