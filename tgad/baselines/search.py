"""PatchCore's exact nearest-patch search, computed in reused blocks.

anomalib's ``PatchcoreModel.nearest_neighbors`` builds the full distance matrix of 1,024 test patches against
the whole bank (1,024 x 66,560 floats = 272 MB for a 1-shot row with 64 extra images), then passes over it five
more times (scale, two adds, clamp, sqrt) before taking the minimum. Each matrix is a fresh allocation that,
with ``MALLOC_MMAP_THRESHOLD_`` set, page-faults in; those passes cost more than half as much as the matrix
product itself. ``nearest_patches`` computes the same expression, ``sqrt(max(0, -2 q.b + |q|^2 + |b|^2))``, in
the same order of operations, one block of the bank at a time into one reused buffer, and takes the square
root of the minimum only (sqrt and clamp are monotonic). It is still the exhaustive, exact search: every patch
meets every bank row.
"""

from __future__ import annotations

import types

import torch

BANK_BLOCK = 4096  # bank rows per block: a 1,024 x 4,096 float block is 16 MB, reused for every block


@torch.no_grad()
def nearest_patches(
    queries: torch.Tensor, bank: torch.Tensor, block: int = BANK_BLOCK
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, C) queries, (N, C) bank -> (n,) Euclidean distance to the nearest bank row and (n,) its index.

    Ties keep the lowest index. Up to float rounding the same as anomalib's full-matrix search (a test checks
    it); processes the queries 1,024 at a time so the buffer stays at ``1024 x block`` floats.
    """
    if bank.shape[0] == 0:
        raise ValueError("nearest_patches: the memory bank is empty; fit on a training image first")
    queries, bank = queries.contiguous(), bank.contiguous()
    query_sq = queries.pow(2).sum(dim=-1, keepdim=True)  # (n, 1)
    bank_sq = bank.pow(2).sum(dim=-1)  # (N,)
    n, rows = len(queries), 1024
    best = torch.empty(n, dtype=queries.dtype, device=queries.device)
    where = torch.empty(n, dtype=torch.long, device=queries.device)
    buffer = torch.empty(min(rows, n) * min(block, len(bank)), dtype=queries.dtype, device=queries.device)
    for q0 in range(0, n, rows):
        q = queries[q0 : q0 + rows]
        low = where_low = None
        for b0 in range(0, len(bank), block):
            part = bank[b0 : b0 + block]
            d2 = buffer[: len(q) * len(part)].view(len(q), len(part))
            torch.mm(q, part.T, out=d2)  # (q, m) dot products, then anomalib's order of operations
            d2.mul_(-2).add_(query_sq[q0 : q0 + rows]).add_(bank_sq[b0 : b0 + block])
            value, index = d2.min(dim=1)
            if low is None:
                low, where_low = value, index
            else:
                better = value < low  # strict: an equal later row does not replace an earlier one
                low = torch.where(better, value, low)
                where_low = torch.where(better, index + b0, where_low)
        best[q0 : q0 + rows], where[q0 : q0 + rows] = low, where_low
    return best.clamp_min_(0).sqrt_(), where


def use_fast_search(patchcore):
    """Make an anomalib ``Patchcore`` (LightningModule) find each patch's nearest bank row with
    ``nearest_patches``; searches for several neighbours (PatchCore's re-weighting of 8 patches) stay anomalib's."""
    torch_model = patchcore.model
    stock = torch_model.nearest_neighbors

    def nearest_neighbors(self, embedding: torch.Tensor, n_neighbors: int) -> tuple[torch.Tensor, ...]:
        if n_neighbors != 1:
            return stock(embedding, n_neighbors)
        return nearest_patches(embedding, self.memory_bank)

    torch_model.nearest_neighbors = types.MethodType(nearest_neighbors, torch_model)
    return patchcore
