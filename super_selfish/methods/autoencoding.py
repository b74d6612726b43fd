"""Helpers shared by the autoencoding and generative methods (denoise, context, split-brain,
MAE, BiGAN).
"""

from __future__ import annotations

import torch

from ..supervisor import Supervisor


def first_view(sup: Supervisor, images: torch.Tensor) -> torch.Tensor:
    """The method's single float view in [0, 1] of a uint8 batch (plain conversion when the
    supervisor has no views, e.g. built with ``augment=None`` and ``default_augment=None``).
    """
    if sup.views is None:
        return images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return sup.augment_views(images)[0]
