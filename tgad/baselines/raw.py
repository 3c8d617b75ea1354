"""One way to build any anomalib model for tgad's scoring: raw outputs, no post-processor, no evaluator."""

from __future__ import annotations

from typing import Any, TypeVar

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
