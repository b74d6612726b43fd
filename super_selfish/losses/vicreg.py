"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, 2022)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import validate


def _variance(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """Hinge on the per-dimension standard deviation: mean_j max(0, gamma - sqrt(var_j + eps))."""
    return F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal covariances, divided by the dimension."""
    centred = z - z.mean(dim=0)
    cov = centred.t() @ centred / (z.shape[0] - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / z.shape[1]


class VICRegLoss(nn.Module):
    """``invariance * MSE(z1, z2) + variance * (v(z1) + v(z2)) / 2 + covariance * (c(z1) + c(z2))``.

    ``v`` is the mean hinge ``max(0, gamma - sqrt(Var(z_j) + eps))`` over dimensions (unbiased
    variance), ``c`` the sum of squared off-diagonal covariances over the dimension. Defaults
    are the paper's: 25, 25, 1, gamma 1, eps 1e-4. The variance term averages the two branches
    as in the authors' reference code (the paper's equation writes their sum; the published
    coefficients were tuned with the code). With ``gather`` set, variance and covariance use
    the embeddings of all processes; the invariance term is per process. The last terms are
    kept in :attr:`terms` (detached) for logging.

    Args:
        invariance: weight of the MSE term (paper: 25).
        variance: weight of the variance hinge (paper: 25).
        covariance: weight of the covariance term (paper: 1).
        gamma: target standard deviation of each dimension (paper: 1).
        eps: added to the variance (paper: 1e-4).
        gather: variance and covariance over the embeddings of every process.
    """

    def __init__(
        self,
        invariance: float = 25.0,
        variance: float = 25.0,
        covariance: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        gather: bool = True,
    ):
        super().__init__()
        for name, value in (
            ("invariance", invariance),
            ("variance", variance),
            ("covariance", covariance),
            ("gamma", gamma),
        ):
            validate.non_negative_number(value, name)
        validate.positive_number(eps, "eps", " such as 1e-4")
        self.invariance, self.variance, self.covariance = invariance, variance, covariance
        self.gamma, self.eps = gamma, eps
        self.gather = gather
        self.terms: dict[str, torch.Tensor] = {}

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the three terms (also kept in :attr:`terms`).

        Args:
            z1: embeddings of the first views (N, D).
            z2: embeddings of the second views (N, D).

        Returns:
            The scalar loss.
        """
        from ..distributed import gather_with_grad

        with torch.autocast(z1.device.type, enabled=False):
            z1, z2 = z1.float(), z2.float()
            invariance = F.mse_loss(z1, z2)
            if self.gather:
                z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
            variance = (
                _variance(z1, self.gamma, self.eps) + _variance(z2, self.gamma, self.eps)
            ) / 2
            covariance = _covariance(z1) + _covariance(z2)
        self.terms = {
            "invariance": invariance.detach(),
            "variance": variance.detach(),
            "covariance": covariance.detach(),
        }
        return (
            self.invariance * invariance + self.variance * variance + self.covariance * covariance
        )
