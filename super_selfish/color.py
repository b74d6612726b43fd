"""Lab colour space for colour-split methods (CMC, split-brain), batched via kornia."""

from __future__ import annotations

import torch
from kornia.color import lab_to_rgb, rgb_to_lab


def to_lab(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] (or uint8) to Lab scaled to about [0, 1]: L/100, (ab + 128)/255.

    Args:
        images: RGB batch (N, 3, H, W), uint8 or float (clamped to [0, 1]).

    Returns:
        Float batch (N, 3, H, W): scaled L, a and b.
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255
    lab = rgb_to_lab(images.clamp(0, 1))
    return torch.cat([lab[:, :1] / 100.0, (lab[:, 1:] + 128.0) / 255.0], dim=1)


def from_lab(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_lab`, back to RGB in [0, 1].

    Args:
        lab: batch (N, 3, H, W) scaled as :func:`to_lab` returns it.

    Returns:
        RGB float batch (N, 3, H, W) clamped to [0, 1].
    """
    raw = torch.cat([lab[:, :1] * 100.0, lab[:, 1:] * 255.0 - 128.0], dim=1)
    return lab_to_rgb(raw).clamp(0, 1)
