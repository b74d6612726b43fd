"""Negative cosine similarity with a stop-gradient target (BYOL, SimSiam)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import check

MODES = ("cosine", "squared")


class NegativeCosineLoss(nn.Module):
    """Mean over the batch of ``-cos(p_i, z_i)`` (``mode="cosine"``, SimSiam, Chen & He, 2021)
    or of ``2 - 2 cos(p_i, z_i)`` = ``|p_i/|p_i| - z_i/|z_i||^2`` (``mode="squared"``, BYOL,
    Grill et al., 2020).

    ``z`` is the target: with ``stop_gradient`` (the default) no gradient flows into it.

    Args:
        mode: ``"cosine"`` (SimSiam) or ``"squared"`` (BYOL).
        stop_gradient: detach the target ``z`` (both papers do).
    """

    def __init__(self, mode: str = "cosine", stop_gradient: bool = True):
        super().__init__()
        check(mode in MODES, "mode", mode, f"one of {MODES}")
        self.mode = mode
        self.stop_gradient = stop_gradient

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The loss of predictions ``p`` against targets ``z`` (computed in float32).

        Args:
            p: predictions (N, D).
            z: targets (N, D).

        Returns:
            The scalar loss.
        """
        if self.stop_gradient:
            z = z.detach()
        with torch.autocast(p.device.type, enabled=False):
            cos = F.cosine_similarity(p.float(), z.float(), dim=1).mean()
        return 2 - 2 * cos if self.mode == "squared" else -cos
