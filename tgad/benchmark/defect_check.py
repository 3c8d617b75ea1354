"""The benchmark's synthetic-defect check columns (``val_*``): the synthetic-defect validation
(``tgad.evaluation.validation``) of each row's extra set, with one validator per (category, shots, seed) and
results cached per ExtraSet. (Named a check, not "validate": it is neither Lightning's validation loop nor
the data checks of ``tgad.data``.)

The validator itself (the features of the shots, the held-out normals and their synthetic defects, and their
distances to the shots' patches) is cached too, under ``extra_sets/validation/shots_*.pt``, keyed by everything
it depends on: every condition, and every later command on the same results folder, reuses it.

Analysis only: the numbers go into the results CSV and the summary and choose nothing.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import asdict
from pathlib import Path

import torch

from tgad.assets import LITE0, resolve_backbone_weights
from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import BenchmarkConfig, Row
from tgad.benchmark.results_repair import shots_text
from tgad.data.images import read_resized as load_images
from tgad.evaluation.validation import COLUMNS, ExtraSetValidator, ValidationSettings, held_out_names
from tgad.features.patches import detector_features
from tgad.generate.artifact import load_manifest

log = logging.getLogger(__name__)

# Bump when the validator's computation changes: cached validator states of another version are recomputed.
STATE_VERSION = 1


class DefectCheck:
    """Synthetic-defect check columns for benchmark rows (empty where the class has too few held-out normals)."""

    def __init__(self, config: BenchmarkConfig, settings: ValidationSettings = ValidationSettings()) -> None:
        self.config, self.settings = config, settings
        self._features = None
        self._validators: dict[tuple, ExtraSetValidator | None] = {}

    def _validator(self, row: Row, dm) -> ExtraSetValidator | None:
        """``dm``: the row's datamodule, set up (its shots and train split; extra folders do not enter)."""
        key = (row.category, row.shots, row.seed)
        if key not in self._validators:
            self._validators[key] = self._build(row.category, row.shots, row.seed, dm)
        return self._validators[key]

    def _detector(self):
        if self._features is None:
            self._features = detector_features()
        return self._features

    def _build(self, category: str, shots: int | None, seed: int, dm) -> ExtraSetValidator | None:
        """The validator of (category, shots, seed) from ``dm`` (set up): from its cached state when that
        matches, else computed (and cached)."""
        train = dm.samples[dm.samples.split == "train"]
        names = [Path(p).name for p in train.image_path]
        held = held_out_names(names, dm.shot_ids, self.settings.n_normals)
        if not held:
            log.info("%s k=%s: too few training images beyond the shots for the validation", category, shots)
            return None
        features = self._detector()  # first: a first-ever run converts the weights into the cache it names
        depends = {
            "version": STATE_VERSION,
            "dataset": self.config.grid.dataset,
            "category": category,
            "image_size": self.config.detectors.image_size,
            "shots": list(dm.shot_ids),
            "held_out": held,
            "settings": _settings_dict(self.settings),
            "detector": _detector_weights(),
        }
        path = self.state_path(category, shots, seed)
        state = _load_state(path, depends)
        if state is not None:
            return ExtraSetValidator.from_state(features, state, self.settings)
        by_name = dict(zip(names, train.image_path, strict=True))
        shot_images = load_images(dm.shot_paths, self.config.detectors.image_size)
        normals = load_images([by_name[n] for n in held], self.config.detectors.image_size)
        validator = ExtraSetValidator(features, shot_images, normals, self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as handle:
            torch.save({"depends": depends, "state": validator.state()}, handle)
        return validator

    def state_path(self, category: str, shots: int | None, seed: int) -> Path:
        """Where the validator of (category, shots, seed) is cached."""
        name = f"shots_{category}_k{shots_text(shots)}_seed{seed}.pt"
        return self.config.out_dir / "extra_sets" / "validation" / name

    def columns(self, row: Row, dm, extra_path: Path | None) -> dict[str, float]:
        """The ``val_*`` cells of ``row`` whose extra set is ``extra_path`` (None: the shots alone); ``dm``:
        the row's datamodule, set up."""
        if not self.config.output.defect_check:
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
                # a cache written before a column existed (val_auroc_gaussian) is computed again
                if saved.get("settings") == _settings_dict(self.settings) and set(COLUMNS) <= set(
                    saved["columns"]
                ):
                    return saved["columns"]
        validator = self._validator(row, dm)
        if validator is None:
            return {}
        extra = None
        if extra_path is not None:
            files = [extra_path / record["file"] for record in load_manifest(extra_path)["images"]]
            extra = load_images(files, self.config.detectors.image_size)
        columns = validator.evaluate(extra)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(cache) as handle:
                json.dump({"settings": _settings_dict(self.settings), "columns": columns}, handle)
        return columns


def _detector_weights() -> str:
    """The weights of the validation's feature extractor (``detector_features``' default backbone)."""
    return resolve_backbone_weights(LITE0, None, False).describe()


def _load_state(path: Path, depends: dict) -> dict[str, torch.Tensor] | None:
    """The cached validator state at ``path`` if it was computed from ``depends``, else None."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:  # damaged: recompute
        log.warning("%s: unreadable validator cache (%s); recomputing it", path, err)
        return None
    return saved["state"] if isinstance(saved, dict) and saved.get("depends") == depends else None


def _settings_dict(settings: ValidationSettings) -> dict:
    return json.loads(json.dumps(asdict(settings)))


__all__ = ["COLUMNS", "DefectCheck"]
