"""NT-Xent, the normalised-temperature cross entropy of SimCLR (Chen et al., 2020)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import validate


class NTXentLoss(nn.Module):
    """Each of the 2N embeddings must pick its partner view among the other 2N - 1.

    ``z1[i]`` and ``z2[i]`` are the two views of image ``i``. With ``gather`` set (distributed
    runs), embeddings of every process are used as negatives and gradients flow back.

    Args:
        temperature: divides the cosine similarities (SimCLR: 0.5 for CIFAR-10, 0.1 for
            ImageNet).
        gather: use the embeddings of every process as negatives.
    """

    def __init__(self, temperature: float = 0.5, gather: bool = True):
        super().__init__()
        validate.temperature(temperature, example=" such as 0.1 or 0.5")
        self.temperature = float(temperature)
        self.gather = gather
        self._targets: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def _positive_index(
        self, n_local: int, offset: int, n_total: int, device: torch.device
    ) -> torch.Tensor:
        """Column of each local row's positive, built once per batch layout."""
        key = (n_local, offset, device)
        if key not in self._targets:
            i = torch.arange(n_local, device=device) + offset
            self._targets[key] = torch.cat([i + n_total, i])
        return self._targets[key]

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The mean NT-Xent loss over the 2N embeddings.

        Args:
            z1: embeddings of the first views (N, D).
            z2: embeddings of the second views (N, D).

        Returns:
            The scalar loss.
        """
        from ..distributed import gather_with_grad, rank

        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        n_local = z1.shape[0]
        if self.gather:
            all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
        else:
            all1, all2 = z1, z2
        n_total = all1.shape[0]
        offset = rank() * n_local if self.gather else 0
        keys = torch.cat([all1, all2])
        queries = torch.cat([z1, z2])
        logits = queries @ keys.t() / self.temperature
        # A sample is never its own negative: mask the self-similarity entry.
        self_index = torch.cat(
            [
                torch.arange(n_local, device=z1.device) + offset,
                torch.arange(n_local, device=z1.device) + offset + n_total,
            ]
        )
        logits[torch.arange(2 * n_local, device=z1.device), self_index] = float("-inf")
        return F.cross_entropy(logits, self._positive_index(n_local, offset, n_total, z1.device))
