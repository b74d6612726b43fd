"""Reconstruction losses of the autoencoding methods (context encoder, MAE)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import validate


class MaskedMSELoss(nn.Module):
    """Squared error weighted by a region mask: 1 inside the mask, ``outside_weight`` outside.

    ``mask`` is (N, 1, H, W) (or broadcastable) with 1 where pixels were erased. The loss is
    ``sum(w * (pred - target)**2) / (sum(w) * C)``, the mean squared error per weighted pixel
    and channel. ``outside_weight=0`` scores only the erased region (context encoder).

    Args:
        outside_weight: weight of the pixels outside the mask.
    """

    def __init__(self, outside_weight: float = 0.0):
        super().__init__()
        validate.non_negative_number(outside_weight, "outside_weight")
        self.outside_weight = float(outside_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The weighted mean squared error.

        Args:
            pred: reconstructions (N, C, H, W).
            target: the original images (N, C, H, W).
            mask: 1 where pixels were erased, (N, 1, H, W) or broadcastable.

        Returns:
            The scalar loss.
        """
        mask = mask.to(pred.dtype)
        weight = mask + self.outside_weight * (1 - mask)
        weight = weight.expand_as(pred[:, :1])
        squared = (pred - target).pow(2).sum(dim=1, keepdim=True)
        return (weight * squared).sum() / (weight.sum().clamp_min(1e-8) * pred.shape[1])


class MaskedPatchLoss(nn.Module):
    """MAE loss: per-patch mean squared error, averaged over the masked patches only.

    ``pred`` and ``target`` are (N, L, P) patch vectors, ``mask`` (N, L) with 1 for masked
    patches. With ``normalize_targets`` each target patch is standardised by its own mean and
    variance first (He et al., 2021: normalised pixels give better representations).

    Args:
        normalize_targets: standardise each target patch (the paper's ``norm_pix_loss``).
        eps: added to the patch variance.
    """

    def __init__(self, normalize_targets: bool = True, eps: float = 1e-6):
        super().__init__()
        self.normalize_targets = normalize_targets
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The mean squared error over the masked patches.

        Args:
            pred: predicted patches (N, L, P).
            target: the image's patches (N, L, P).
            mask: 1 for the masked patches (N, L).

        Returns:
            The scalar loss.
        """
        if self.normalize_targets:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, unbiased=True, keepdim=True)
            target = (target - mean) / (var + self.eps).sqrt()
        per_patch = (pred - target).pow(2).mean(dim=-1)
        mask = mask.to(per_patch.dtype)
        return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)
