"""Synthetic-defect validation of an extra set: does it add *normal* variation and leave defects alone?

An analysis, never part of the method: it uses held-out *training* normals of the class (never the shots,
never a test image), more normal images than a 1-shot user has, so nothing in tgad chooses anything per class
from it. For a class with at least ``MIN_HELD_OUT`` training images beyond the shots:

* **held-out normals**: up to ``n_normals`` training images taken from the *end* of the k-shot permutation
  (``tgad.data.shots.shot_order``; seeds take their shots from its start), minus the row's shots; the same
  images for every seed and condition, so columns compare across rows;
* **synthetic defects**: one per held-out normal, of the validation family
  (``tgad.features.synthetic_defects.VALIDATION_KINDS``: CutPaste patches and scars, DRAEM-style textures),
  seeded by ``defect_seed`` only.

Measured in PatchCore's own features (``tgad.features.patches.PatchFeatures`` over the detector's layers) with
PatchCore's image score, the largest nearest-patch distance to the bank:

* ``spread``: the mean nearest-patch distance of the extra images to the shots' patches, divided by that of the
  held-out normals (1.0 = as far from the shots as real normals are; near 0 = copies of the shots);
* ``normal_cov`` / ``defect_cov``: the relative drop of the mean image score of the held-out normals / of the
  synthetic defects when the extra set joins the shots in the bank (a useful set: normal_cov >> defect_cov);
* ``auroc`` / ``auroc_shots``: held-out normals vs synthetic defects with and without the extra set;
* ``auroc_gaussian`` (issue 23): ``auroc`` measured as PaDiM measures, a Gaussian per patch position fitted
  to the shots plus the extra set (the same features; covariance + 0.01 I, the regulariser alone for one
  image) and an image's score its largest Mahalanobis distance: PaDiM rows are judged by what a PaDiM bank
  learns from the extra set, not by PatchCore's nearest patch;
* ``paired`` (issue 23): the share of held-out normals whose own synthetic defect scores above them (ties
  count half), with the extra set in the bank. Each defect is compared with the image it was made from only,
  so an extra set that lowers the scores of whole held-out images (e.g. poses the shots lack) moves both
  sides alike; ``auroc`` ranks every defect against every normal and rewards exactly that.

The defects come from a named family (``tgad.features.synthetic_defects.VALIDATION_FAMILIES``): ``v1``
(the default, what every committed row used) or ``v2`` (defects at the scale and kind of real ones).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tgad.data.shots import shot_order
from tgad.evaluation.auroc import image_auroc
from tgad.features.patches import PatchFeatures, nearest_distances
from tgad.features.synthetic_defects import VALIDATION_FAMILIES, VALIDATION_KINDS, make_defects

MIN_HELD_OUT = 10  # training images beyond the shots a class needs for the validation columns
COLUMNS = (
    "val_spread",
    "val_normal_cov",
    "val_defect_cov",
    "val_auroc",
    "val_auroc_shots",
    "val_images",
    "val_auroc_gaussian",  # since issue 23: the AUROC as PaDiM scores (a Gaussian per position)
)
# Issue 23: ``evaluate(..., extended=True)`` adds these. Benchmark rows carry them once
# ``tgad.benchmark.results.COLUMNS`` has them (``validation_family`` is text, so it does not start with val_,
# whose cells must be numbers); until then the rows keep ``COLUMNS`` and experiments/revalidate.py writes both.
EXTENDED_COLUMNS = (*COLUMNS, "val_paired", "validation_family")
GAUSSIAN_REGULARISER = 0.01 + 1e-5  # anomalib PaDiM: 0.01 I on each covariance, 1e-5 I before inverting


@dataclass(frozen=True)
class ValidationSettings:
    n_normals: int = 16
    defect_seed: int = 0
    kinds: tuple[str, ...] = VALIDATION_KINDS

    @classmethod
    def of_family(cls, family: str, **overrides) -> ValidationSettings:
        """The settings whose defects are the kinds of ``family`` (a key of ``VALIDATION_FAMILIES``). A field,
        not a name, carries the family, so the v1 settings (and every cache keyed by them) stay as they were."""
        if family not in VALIDATION_FAMILIES:
            raise ValueError(f"validation family {family!r}: choose from {sorted(VALIDATION_FAMILIES)}")
        return cls(kinds=VALIDATION_FAMILIES[family], **overrides)

    @property
    def family(self) -> str:
        """The name of the family whose kinds these are, else ``custom:<kinds>``."""
        names = [name for name, kinds in VALIDATION_FAMILIES.items() if kinds == tuple(self.kinds)]
        return names[0] if names else "custom:" + "+".join(self.kinds)


def paired_score(normal: torch.Tensor, defect: torch.Tensor) -> float:
    """The share of pairs (normal_i, defect_i), both (N,) image scores of the same image in the same bank, where
    the defect scores higher; a tie counts half, so a defect that changes nothing gives exactly 0.5."""
    if normal.shape != defect.shape:
        raise ValueError(f"paired score: {tuple(normal.shape)} normals vs {tuple(defect.shape)} defects")
    return float(((defect > normal).float() + 0.5 * (defect == normal).float()).mean())


def held_out_names(train_names: Sequence[str], shot_names: Sequence[str], n_normals: int) -> list[str]:
    """Held-out normals: the last ``n_normals`` names of the shot permutation that are not shots, or [] when the
    train split has fewer than ``MIN_HELD_OUT`` images beyond the shots."""
    rest = [n for n in shot_order(train_names) if n not in set(shot_names)]
    if len(rest) < MIN_HELD_OUT:
        return []
    return rest[-n_normals:]


@torch.no_grad()
def _features(features: PatchFeatures, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """(N, 3, H, W) -> (N, P, C)."""
    return torch.cat([features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def image_scores(
    features: torch.Tensor, d0: torch.Tensor, bank: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """(B,) PatchCore image scores max_p min(d0_p, d(f_p, bank)) of images whose patches ``features`` (B, P, C)
    lie ``d0`` (B, P) from another bank, exactly, visiting patches in decreasing ``d0`` and stopping once no
    remaining patch can raise the maximum (min(d0, .) <= d0): a fraction of the full search on most images."""
    scores = []
    for feats, base in zip(features, d0, strict=True):
        order = base.argsort(descending=True)
        best = torch.tensor(0.0)
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            if base[part[0]] <= best:
                break
            near = nearest_distances(feats[part][None], bank)[0]  # (chunk,)
            best = torch.maximum(best, torch.minimum(base[part], near).max())
        scores.append(best)
    return torch.stack(scores)


def gaussian_image_scores(train: torch.Tensor, query: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """(M,) PaDiM-style image scores of ``query`` (M, P, C): the largest over positions of the Mahalanobis
    distance to a Gaussian per position fitted to ``train`` (N, P, C), covariance unbiased + ``0.01 I`` (the
    regulariser alone for N = 1, as ``tgad.baselines.padim`` does: 0 / 0 otherwise)."""
    n, positions, channels = train.shape
    mean = train.mean(0)  # (P, C)
    eye = torch.eye(channels, dtype=train.dtype) * GAUSSIAN_REGULARISER
    best = torch.zeros(len(query), dtype=train.dtype)
    for start in range(0, positions, chunk):  # positions in chunks: (chunk, C, C) covariances at a time
        part = slice(start, start + chunk)
        centred = (train[:, part] - mean[part]).transpose(0, 1)  # (N, c, C) -> (c, N, C)
        cov = centred.transpose(1, 2) @ centred / max(n - 1, 1) if n > 1 else torch.zeros_like(eye)
        # Cholesky, not inv: batched LU of this size fails in MKL on two threads ("Pivots given to lu_solve");
        # d^2 = delta^T S^-1 delta = |L^-1 delta|^2 with S = L L^T (S is SPD: a covariance + 0.01 I)
        lower = torch.linalg.cholesky(cov + eye)  # (c, C, C)
        delta = (query[:, part] - mean[part]).permute(1, 2, 0)  # (M, c, C) -> (c, C, M)
        whitened = torch.linalg.solve_triangular(lower, delta, upper=False)  # (c, C, M)
        distance = whitened.pow(2).sum(1).sqrt()  # (c, M)
        best = torch.maximum(best, distance.amax(0))
    return best


class ExtraSetValidator:
    """The held-out normals, their synthetic defects and the shots' patch bank of one (category, shots, seed);
    :meth:`evaluate` scores any number of extra sets against them."""

    def __init__(
        self,
        features: PatchFeatures,
        shots: torch.Tensor,
        normals: torch.Tensor,
        settings: ValidationSettings,
    ) -> None:
        self.features, self.settings = features, settings
        defects = self.defects = make_defects(normals, 1, settings.kinds, settings.defect_seed)
        self.shot_bank = _features(features, shots).flatten(0, 1)  # (k*P, C), shots' patches consecutive
        self.normal_features = _features(features, normals)  # (H, P, C)
        self.defect_features = _features(features, defects.images)  # (D, P, C)
        self.normal_d0 = nearest_distances(self.normal_features, self.shot_bank)  # (H, P)
        self.defect_d0 = nearest_distances(self.defect_features, self.shot_bank)  # (D, P)
        self.n_images = len(normals) + len(defects.images)

    STATE = ("shot_bank", "normal_features", "defect_features", "normal_d0", "defect_d0")

    def state(self) -> dict[str, torch.Tensor]:
        """Everything :meth:`evaluate` needs besides the feature extractor (``from_state`` rebuilds from it):
        building it costs the features of the shots, the held-out normals and their defects."""
        return {name: getattr(self, name) for name in self.STATE} | {"n_images": torch.tensor(self.n_images)}

    @classmethod
    def from_state(
        cls, features: PatchFeatures, state: dict[str, torch.Tensor], settings: ValidationSettings
    ) -> ExtraSetValidator:
        """The validator whose ``state()`` was ``state``; it scores extra sets exactly as the original did (its
        defect images are not kept: ``defects`` is None)."""
        validator = cls.__new__(cls)
        validator.features, validator.settings, validator.defects = features, settings, None
        for name in cls.STATE:
            setattr(validator, name, state[name])
        validator.n_images = int(state["n_images"])
        return validator

    @torch.no_grad()
    def evaluate(self, extra: torch.Tensor | None, extended: bool = False) -> dict[str, float | str]:
        """The ``COLUMNS`` for an extra set (N, 3, H, W) in [0, 1]; None = the shots alone (no coverage).
        ``extended``: the ``EXTENDED_COLUMNS`` (adds ``val_paired`` and ``validation_family``)."""
        normal0, defect0 = self.normal_d0.amax(1), self.defect_d0.amax(1)  # (H,), (D,) image scores
        auroc_shots = image_auroc(
            torch.cat([normal0, defect0]), torch.cat([torch.zeros(len(normal0)), torch.ones(len(defect0))])
        )
        out = {"val_auroc_shots": auroc_shots, "val_images": float(self.n_images)}
        if extra is None:
            out |= {
                "val_spread": math.nan,
                "val_normal_cov": 0.0,
                "val_defect_cov": 0.0,
                "val_auroc": auroc_shots,
            }
            out["val_auroc_gaussian"] = self._gaussian_auroc(None)
            return out | self._extended(normal0, defect0) if extended else out
        extra_features = _features(self.features, extra)  # (N, P, C)
        spread = nearest_distances(extra_features, self.shot_bank).mean() / self.normal_d0.mean()
        bank = extra_features.flatten(0, 1)  # (N*P, C)
        normal1 = image_scores(self.normal_features, self.normal_d0, bank)
        defect1 = image_scores(self.defect_features, self.defect_d0, bank)
        auroc = image_auroc(
            torch.cat([normal1, defect1]), torch.cat([torch.zeros(len(normal1)), torch.ones(len(defect1))])
        )
        out |= {
            "val_spread": float(spread),
            "val_normal_cov": float(1 - normal1.mean() / normal0.mean()),
            "val_defect_cov": float(1 - defect1.mean() / defect0.mean()),
            "val_auroc": auroc,
            "val_auroc_gaussian": self._gaussian_auroc(extra_features),
        }
        return out | self._extended(normal1, defect1) if extended else out

    def _gaussian_auroc(self, extra_features: torch.Tensor | None) -> float:
        """Held-out normals vs synthetic defects scored by a Gaussian per position fitted to the shots plus
        ``extra_features`` (N, P, C; None: the shots alone), as PaDiM scores (< 1 s at one thread for 66
        images of 1024 positions)."""
        positions = self.normal_features.shape[1]
        train = self.shot_bank.view(-1, positions, self.shot_bank.shape[-1])  # (k*P, C) -> (k, P, C)
        if extra_features is not None:
            train = torch.cat([train, extra_features])
        scores = gaussian_image_scores(train, torch.cat([self.normal_features, self.defect_features]))
        labels = torch.cat([torch.zeros(len(self.normal_features)), torch.ones(len(self.defect_features))])
        return image_auroc(scores, labels)

    def _extended(self, normal: torch.Tensor, defect: torch.Tensor) -> dict[str, float | str]:
        """The columns ``extended`` adds, from the image scores of the held-out normals and of their defects
        (``make_defects`` made defect i from normal i: one per image, in order)."""
        return {"val_paired": paired_score(normal, defect), "validation_family": self.settings.family}
