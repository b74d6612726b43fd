"""Denoising autoencoder (Vincent et al., 2008, "Extracting and Composing Robust Features
with Denoising Autoencoders").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import decoders, validate
from ..data import Batch
from ..errors import check
from ..supervisor import Supervisor
from . import _heads
from .autoencoding import first_view
from .registry import register

NOISES = ("mask", "gaussian")


@register("denoise")
class DenoiseSupervisor(Supervisor):
    """Corrupt the image, encode it with the backbone, decode the clean image; MSE loss.

    The decoder (:class:`super_selfish.decoders.ConvDecoder`, sigmoid output) upsamples the
    backbone's feature map back to the input size. Noise: ``noise="mask"`` (default) sets a
    random fraction ``p`` = 0.5 of the pixels to 0, the same pixels in every channel (the
    paper's masking noise); ``noise="gaussian"`` adds Gaussian noise of standard deviation
    ``std`` = 0.2 and clips to [0, 1]. The loss is the mean squared error against the clean
    image over all pixels. Augmentation: ``none`` (pass ``augment=`` for more). Needs a
    convolutional backbone (one whose ``feature_map`` is (N, C, h, w)).

    Heads as arguments: ``decoder`` (None: the one above) takes a module of your own, called as
    ``decoder(feature_map, size=(H, W))`` and returning images in [0, 1]; it is trained, saved
    and restored like the built-in one (rebuild with ``from_checkpoint(name, decoder=...)``;
    table in ``docs/methods.md``).
    """

    default_augment = "none"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        noise: str = "mask",
        p: float = 0.5,
        std: float = 0.2,
        decoder: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        check(noise in NOISES, "noise", noise, f"one of {NOISES}")
        check(0 <= p < 1, "p", p, "a masking fraction in [0, 1)")
        validate.non_negative_number(std, "std", " (the noise standard deviation)")
        super().__init__(dataset, backbone, **kwargs)
        self.noise, self.p, self.std = noise, float(p), float(std)
        self.decoder = _heads.resolve(
            self,
            "decoder",
            decoder,
            lambda: decoders.for_backbone(
                self.backbone,
                self.image_size,
                self.backbone.in_channels,
                norm=self.hparams["norm"],
                output="sigmoid",
            ),
            "called as decoder(feature_map, size=(H, W)) and returning images",
        )

    def corrupt(self, images: torch.Tensor) -> torch.Tensor:
        """Noisy copy of float images in [0, 1] (drawn from the global RNG, seeded per run)."""
        if self.noise == "mask":
            n, _, h, w = images.shape
            keep = torch.rand(n, 1, h, w, device=images.device) >= self.p
            return images * keep.to(images.dtype)
        return (images + self.std * torch.randn_like(images)).clamp(0, 1)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Encode and decode float images to the same size, in [0, 1]."""
        return self.decoder(self.backbone.feature_map(images), size=images.shape[-2:])

    def _forward(self, batch: Batch) -> torch.Tensor:
        clean = first_view(self, batch.images)
        return F.mse_loss(self.reconstruct(self.corrupt(clean)), clean)
