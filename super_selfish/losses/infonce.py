"""InfoNCE with explicit negatives (MoCo v1/v2 queue) or in-batch keys (MoCo v3, NNCLR)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import validate


class InfoNCELoss(nn.Module):
    """Cross entropy of each query over its positive key and a set of negatives.

    Inputs are L2-normalised here, so raw projections can be passed. Two layouts:

    * ``forward(query, key, negatives)``: the logits of query ``i`` are
      ``[q_i . k_i, q_i . n_1, ..., q_i . n_K] / temperature`` and the target is column 0
      (He et al., 2020, MoCo). ``negatives`` is ``(K, D)`` (shared, e.g. a queue) or
      ``(N, K, D)`` (one set per query); it may be empty (K = 0).
    * ``forward(query, key)``: the keys of the batch are the candidates: query ``i`` must pick
      ``key[i]`` among all keys (Chen et al., 2021, MoCo v3; Dwibedi et al., 2021, NNCLR).
      With ``gather`` set, the keys of every process are candidates (gradients flow back).

    Computed in float32 even under autocast (small temperatures need the precision).

    Args:
        temperature: divides the cosine similarities; MoCo v2: 0.2, MoCo v3: 1.0 (ResNet),
            NNCLR: 0.1.
        gather: in-batch layout only: the keys of every process are candidates.
    """

    def __init__(self, temperature: float = 0.2, gather: bool = True):
        super().__init__()
        validate.temperature(temperature)
        self.temperature = float(temperature)
        self.gather = gather

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, negatives: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """The mean InfoNCE loss of the batch.

        Args:
            query: queries (N, D).
            key: each query's positive key (N, D).
            negatives: (K, D) shared or (N, K, D) per-query negatives; None: the other keys of
                the batch are the negatives.

        Returns:
            The scalar loss.
        """
        with torch.autocast(query.device.type, enabled=False):
            q = F.normalize(query.float(), dim=1)
            k = F.normalize(key.float(), dim=1)
            if negatives is None:
                return self._in_batch(q, k)
            n = F.normalize(negatives.float(), dim=-1)
            positive = (q * k).sum(dim=1, keepdim=True)
            negative = q @ n.t() if n.ndim == 2 else torch.einsum("nd,nkd->nk", q, n)
            logits = torch.cat([positive, negative], dim=1) / self.temperature
            target = torch.zeros(len(q), dtype=torch.long, device=q.device)
            return F.cross_entropy(logits, target)

    def _in_batch(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        from ..distributed import gather_with_grad, rank

        keys = gather_with_grad(k) if self.gather else k
        offset = rank() * len(q) if self.gather else 0
        logits = q @ keys.t() / self.temperature
        target = torch.arange(len(q), device=q.device) + offset
        return F.cross_entropy(logits, target)
