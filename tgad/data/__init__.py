"""Datasets as samples tables and few-shot LightningDataModules (thin over anomalib).

``MVTecAD``, ``BTAD``, ``LOCO`` and ``Embedded`` share one base, ``FewShotDataModule``: k-shot choice
(``tgad.data.shots``), extra normal folders appended to training only, and one-line ``DataError``s.
Names are imported lazily, so ``tgad.data.shots`` and ``tgad.data.errors`` load without anomalib: the CLI
starts without ``anomalib.data``, 1.7-2.6 s more (measured after ``import tgad.cli.main``, -X importtime).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FewShotDataModule": "datamodule",
    "extra_normal_rows": "datamodule",
    "MVTecAD": "real_datasets",
    "BTAD": "real_datasets",
    "LOCO": "real_datasets",
    "MVTEC_CATEGORIES": "real_datasets",
    "BTAD_CATEGORIES": "real_datasets",
    "LOCO_CATEGORIES": "real_datasets",
    "Embedded": "embedded",
    "embedded_root": "embedded",
    "DataError": "errors",
    "read_rgb": "images",
    "read_resized": "images",
    "read_mask": "images",
    "index_mvtec": "indexing",
    "index_btad": "indexing",
    "index_loco": "indexing",
    "validate_samples": "indexing",
    "choose_shots": "shots",
    "shot_order": "shots",
}
__all__ = [*sorted(_EXPORTS), "DATAMODULES"]


def __getattr__(name: str):
    if name == "DATAMODULES":
        return {
            "mvtec": __getattr__("MVTecAD"),
            "btad": __getattr__("BTAD"),
            "loco": __getattr__("LOCO"),
            "embedded": __getattr__("Embedded"),
        }
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tgad.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tgad.data' has no attribute {name!r}")
