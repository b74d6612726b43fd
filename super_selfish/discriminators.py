"""Discriminators for the adversarial methods (context encoder, BiGAN).

Both take images in [0, 1] at any size (global average pooling before the linear output) and
return one logit per sample, to be used with a BCE-with-logits GAN loss
(:class:`super_selfish.losses.AdversarialLoss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .errors import check


class ConvDiscriminator(nn.Module):
    """Strided 4x4 convs with LeakyReLU(0.2), global average pooling and a linear logit.

    No normalisation layers, so real and fake batches can be scored separately without batch
    statistics telling them apart. :meth:`features` gives the pooled vector (used by
    :class:`JointDiscriminator`).

    Args:
        in_channels: channels of the input images.
        widths: output channels of the strided convolutions (each halves the side).

    Raises:
        ConfigError: ``widths`` is empty or holds a non-positive count.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256)):
        super().__init__()
        check(
            len(widths) >= 1 and all(int(w) > 0 for w in widths),
            "widths",
            widths,
            "one or more positive channel counts",
        )
        layers: list[nn.Module] = []
        cin = in_channels
        for w in widths:
            layers += [nn.Conv2d(cin, int(w), 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            cin = int(w)
        self.body = nn.Sequential(*layers)
        self.feature_dim = cin
        self.logit = nn.Linear(cin, 1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled conv features (N, ``widths[-1]``) of images in [0, 1]."""
        return self.body(images * 2 - 1).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """One real-vs-fake logit (N,) per image."""
        return self.logit(self.features(images)).squeeze(1)


class JointDiscriminator(nn.Module):
    """BiGAN's D(x, z): a conv path for the image, a linear path for the latent code, and an
    MLP over both, giving one logit per (image, code) pair.

    Args:
        in_channels: channels of the input images.
        latent_dim: size of the latent code z.
        widths: conv channels of the image path (as in :class:`ConvDiscriminator`).
        hidden: width of the latent path and of the joint MLP.
    """

    def __init__(
        self,
        in_channels: int,
        latent_dim: int,
        widths: Sequence[int] = (64, 128, 256),
        hidden: int = 512,
    ):
        super().__init__()
        self.image = ConvDiscriminator(in_channels, widths)
        del self.image.logit  # only its features are used
        self.latent = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2, inplace=True))
        self.joint = nn.Sequential(
            nn.Linear(self.image.feature_dim + hidden, hidden),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, images: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One logit (N,) per (image, latent code) pair."""
        both = torch.cat([self.image.features(images), self.latent(z)], dim=1)
        return self.joint(both).squeeze(1)
