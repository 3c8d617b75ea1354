"""The benchmark's validation columns: the synthetic-defect validation (``tgad.evaluation.validation``) of
each row's extra set, with one validator per (category, shots, seed) and results cached per ExtraSet.

Analysis only: the numbers go into the results CSV and the summary and choose nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import BenchmarkConfig, Row
from tgad.data.images import read_resized as load_images
from tgad.evaluation.validation import COLUMNS, ExtraSetValidator, ValidationSettings, held_out_names
from tgad.features.patches import detector_features

log = logging.getLogger(__name__)


class Validations:
    """Validation columns for benchmark rows (empty where the class has too few held-out normals)."""

    def __init__(self, config: BenchmarkConfig, settings: ValidationSettings = ValidationSettings()) -> None:
        self.config, self.settings = config, settings
        self._features = None
        self._validators: dict[tuple, ExtraSetValidator | None] = {}

    def _validator(self, row: Row) -> ExtraSetValidator | None:
        key = (row.category, row.shots, row.seed)
        if key not in self._validators:
            from tgad.benchmark.runner import make_datamodule

            dm = make_datamodule(self.config, row.category, row.shots, row.seed, [])
            dm.prepare_data()
            dm.setup()
            train = dm.samples[dm.samples.split == "train"]
            names = [Path(p).name for p in train.image_path]
            held = held_out_names(names, dm.shot_ids, self.settings.n_normals)
            if not held:
                log.info("%s k=%s: too few training images beyond the shots for the validation", *key[:2])
                self._validators[key] = None
            else:
                if self._features is None:
                    self._features = detector_features()
                by_name = dict(zip(names, train.image_path, strict=True))
                shots = load_images(dm.shot_paths, self.config.size)
                normals = load_images([by_name[n] for n in held], self.config.size)
                self._validators[key] = ExtraSetValidator(self._features, shots, normals, self.settings)
        return self._validators[key]

    def columns(self, row: Row, extra_path: Path | None) -> dict[str, float]:
        """The ``val_*`` cells of ``row`` whose extra set is ``extra_path`` (None: the shots alone)."""
        if not self.config.validate:
            return {}
        cache = None
        if extra_path is not None:
            cache = (
                self.config.out_dir
                / "extra_sets"
                / "validation"
                / f"{extra_path.parent.parent.name}_{extra_path.parent.name}_{extra_path.name}.json"
            )
            if cache.is_file():
                saved = json.loads(cache.read_text())
                if saved.get("settings") == _settings_dict(self.settings):
                    return saved["columns"]
        validator = self._validator(row)
        if validator is None:
            return {}
        extra = None
        if extra_path is not None:
            from tgad.generate.artifact import load_manifest

            files = [extra_path / record["file"] for record in load_manifest(extra_path)["images"]]
            extra = load_images(files, self.config.size)
        columns = validator.evaluate(extra)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(cache) as handle:
                json.dump({"settings": _settings_dict(self.settings), "columns": columns}, handle)
        return columns


def _settings_dict(settings: ValidationSettings) -> dict:
    return json.loads(json.dumps(asdict(settings)))


__all__ = ["COLUMNS", "Validations"]
