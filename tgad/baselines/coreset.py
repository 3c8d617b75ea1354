"""PatchCore's memory bank under one rule for every condition, and its greedy coreset, computed with one
matrix-vector product per step.

**Bank rule** (the same for every condition, so a 1-shot control is not starved): a bank of at most
``bank_budget`` patch rows is kept whole; a larger one is reduced to exactly ``bank_budget`` rows by the greedy
coreset. 1-shot PatchCore in the literature keeps every patch of the shot; with anomalib's fixed ratio (0.1) one
256-px shot kept ~100 patches while shots + 64 extra images kept ~6,600, and every "- shots" delta was inflated.

anomalib's ``KCenterGreedy.update_distances`` materialises ``features - center`` (N x d) at every step; with
``MALLOC_MMAP_THRESHOLD_`` set (needed to keep PatchCore's memory down) that allocation page-faults and a 10%
coreset of 51k patches takes ~120 s here. Expanding ``|f - c|^2 = |f|^2 - 2 f.c + |c|^2`` picks the same
centres (up to float rounding) in seconds. The first centre comes from a seeded generator, so a fit is
reproducible (anomalib draws it from torch's global RNG).
"""

from __future__ import annotations

import types

import torch
from anomalib.models.components.sampling import KCenterGreedy
from tqdm.auto import tqdm


class FastKCenterGreedy(KCenterGreedy):
    def __init__(self, embedding: torch.Tensor, sampling_ratio: float, seed: int = 0) -> None:
        super().__init__(embedding=embedding, sampling_ratio=sampling_ratio)
        self.seed = seed

    def select_coreset_idxs(self) -> list[int]:
        if self.embedding.ndim == 2:
            self.model.fit(self.embedding)
            features = self.model.transform(self.embedding)
        else:
            features = self.embedding.reshape(self.embedding.shape[0], -1)
        features = features.float()
        sq_norms = (features * features).sum(dim=1)  # (N,)
        generator = torch.Generator().manual_seed(self.seed)
        idx = int(torch.randint(self.n_observations, (1,), generator=generator))
        selected = [idx]
        min_sq = torch.full((self.n_observations,), float("inf"))
        sq = torch.empty(self.n_observations)  # reused: a fresh (N,) buffer per step page-faults under mmap
        for _ in tqdm(range(self.coreset_size - 1), desc="coreset", leave=False, mininterval=2.0):
            torch.mv(features, features[idx], out=sq)
            sq.mul_(-2.0).add_(sq_norms).add_(sq_norms[idx]).clamp_min_(0.0)  # (N,) squared distances to idx
            torch.minimum(min_sq, sq, out=min_sq)
            min_sq[idx] = 0.0
            idx = int(torch.argmax(min_sq))
            selected.append(idx)
        return selected


def bank_rows(n_patches: int, bank_budget: int) -> int:
    """Rows the memory bank keeps under the bank rule: all of them up to ``bank_budget``, else the budget."""
    if bank_budget < 1:
        raise ValueError(f"bank_budget must be >= 1, got {bank_budget}")
    return min(n_patches, bank_budget)


def use_fast_coreset(patchcore, seed: int = 0, bank_budget: int | None = None):
    """Make an anomalib ``Patchcore`` (LightningModule) build its memory bank with the bank rule (module
    docstring) and ``FastKCenterGreedy``. ``bank_budget=None`` keeps anomalib's fixed sampling ratio."""
    torch_model = patchcore.model

    def subsample_embedding(self, sampling_ratio: float, embeddings: torch.Tensor | None = None) -> None:
        if len(self.embedding_store) == 0:
            raise ValueError("PatchCore embedding store is empty: fit on at least one training image first")
        bank = torch.vstack(self.embedding_store)
        self.embedding_store.clear()
        if bank_budget is not None:
            rows = bank_rows(len(bank), bank_budget)
            if rows == len(bank):
                self.memory_bank = bank
                return
            greedy = FastKCenterGreedy(bank, rows / len(bank), seed=seed)
            greedy.coreset_size = rows  # exactly the budget (the ratio's float rounding can lose a row)
        else:
            greedy = FastKCenterGreedy(bank, sampling_ratio, seed=seed)
        self.memory_bank = greedy.sample_coreset()

    torch_model.subsample_embedding = types.MethodType(subsample_embedding, torch_model)
    return patchcore
