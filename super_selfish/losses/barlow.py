"""Barlow Twins redundancy-reduction loss (Zbontar et al., 2021)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import validate


def standardize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean, unit (biased) variance per dimension over the batch, like an affine-free
    BatchNorm in training mode.

    Args:
        z: embeddings (N, D).
        eps: added to the variance before the square root.

    Returns:
        The standardised embeddings (N, D).
    """
    centred = z - z.mean(dim=0)
    return centred / torch.sqrt(centred.pow(2).mean(dim=0) + eps)


class BarlowTwinsLoss(nn.Module):
    """``sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2`` with ``C`` the cross-correlation
    matrix of the batch-standardised embeddings of the two views: ``C = z1n^T z2n / N``
    (Zbontar et al., 2021, ICML).

    ``lambd`` = 5e-3 is the paper's value. With ``gather`` set (distributed runs) the
    statistics and ``C`` are computed over the embeddings of all processes, as if the global
    batch were on one device (gradients flow back to every process).

    Args:
        lambd: weight of the off-diagonal (redundancy) term; paper: 5e-3.
        eps: added to the per-dimension variance.
        gather: use the embeddings of every process.
    """

    def __init__(self, lambd: float = 5e-3, eps: float = 1e-5, gather: bool = True):
        super().__init__()
        validate.non_negative_number(lambd, "lambd", " such as 5e-3")
        validate.positive_number(eps, "eps", " such as 1e-5")
        self.lambd = float(lambd)
        self.eps = float(eps)
        self.gather = gather

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The loss of a batch of paired embeddings (computed in float32).

        Args:
            z1: embeddings of the first views (N, D).
            z2: embeddings of the second views (N, D).

        Returns:
            The scalar loss.
        """
        from ..distributed import gather_with_grad

        with torch.autocast(z1.device.type, enabled=False):
            z1, z2 = z1.float(), z2.float()
            if self.gather:
                z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
            c = standardize(z1, self.eps).t() @ standardize(z2, self.eps) / z1.shape[0]
            diagonal = torch.diagonal(c)
            on_diag = (1 - diagonal).pow(2).sum()
            off_diag = c.pow(2).sum() - diagonal.pow(2).sum()
            return on_diag + self.lambd * off_diag
