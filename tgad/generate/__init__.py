"""Extra normal images for a category: the ExtraSet artifact, plain augmentation (the control) and the
generator chain (``tgad.generate.chain``)."""

from tgad.generate.artifact import (
    ExtraSetError,
    cache_key,
    extra_set_dir,
    is_complete,
    load_manifest,
    validate_manifest,
    write_extra_set,
)
from tgad.generate.augment import PlainAugConfig, augment_shots, make_plain_aug_set

__all__ = [
    "PlainAugConfig",
    "ExtraSetError",
    "augment_shots",
    "cache_key",
    "extra_set_dir",
    "is_complete",
    "load_manifest",
    "make_plain_aug_set",
    "validate_manifest",
    "write_extra_set",
]
