"""PaDiM that stays defined with ONE training image.

anomalib's PaDiM fits a Gaussian per feature-map position with the unbiased covariance (ddof = 1) plus 0.01 I.
With a single training image that covariance is 0 / 0: the inverse covariance is NaN, so is every anomaly
score, and an AUROC of NaN scores is an artifact (every 1-shot ``shots`` row of PaDiM read 0.6471 image AUROC
whichever the shot; issue 23's transistor_256 table). With one image there is no spread to estimate, so the
covariance here is PaDiM's own regulariser alone (0.01 I, plus the same 1e-5 I before inversion): the
Mahalanobis distance becomes the Euclidean distance to that image's features, scaled. Two or more images fit
exactly as anomalib does.
"""

from __future__ import annotations

import torch
from anomalib.models import Padim

REGULARISER = 0.01 + 1e-5  # anomalib's 0.01 I on the covariance and 1e-5 I before the inversion


class OneImagePadim(Padim):
    """``anomalib.models.Padim``; with one training image the per-position covariance is ``REGULARISER * I``."""

    def fit(self) -> None:
        images = sum(len(bank) for bank in self.model.memory_bank)  # (B, C, H, W) tensors, one per batch
        super().fit()
        gaussian = self.model.gaussian
        if images == 1:  # unbiased covariance of one observation: 0 / 0 (NaN)
            channels = gaussian.inv_covariance.shape[-1]
            identity = torch.eye(channels, device=gaussian.inv_covariance.device) / REGULARISER
            gaussian.inv_covariance = identity.expand_as(gaussian.inv_covariance).clone()  # (H*W, C, C)
