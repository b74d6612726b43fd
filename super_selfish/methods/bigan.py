"""BiGAN (Donahue et al., 2017, "Adversarial Feature Learning")."""

from __future__ import annotations

import functools
from typing import Any, Optional

import torch
import torch.nn as nn

from .. import validate
from ..data import Batch
from ..decoders import LatentGenerator
from ..discriminators import JointDiscriminator
from ..errors import check
from ..heads import MLPHead
from ..losses import AdversarialLoss
from . import _heads
from .adversarial import AdversarialSupervisor
from .autoencoding import first_view
from .registry import register

PRIORS = ("gaussian", "uniform")


@register("bigan")
class BiGANSupervisor(AdversarialSupervisor):
    """Generator G (z -> x), encoder E (x -> z) and a joint discriminator D(x, z).

    E is the backbone followed by a linear layer to ``latent_dim`` = 128 (``encoder_head``);
    G (:class:`~super_selfish.decoders.LatentGenerator`) maps z from the ``prior``
    (``gaussian`` N(0, I), or ``uniform`` on [-1, 1]) through a linear layer to a small map
    and the shared :class:`~super_selfish.decoders.ConvDecoder` to an image in [0, 1]; D
    (:class:`~super_selfish.discriminators.JointDiscriminator`) scores (image, code) pairs.

    Objective (BCE with logits): D learns to tell (x, E(x)) (label 1) from (G(z), z)
    (label 0); E and G, trained together by the main optimizer, minimise the same loss with
    the labels swapped (the non-saturating form), so E's parameters receive the adversarial
    gradient through D(x, E(x)). Each step first updates D on detached pairs, then E and G
    through the updated D. The reported ``loss`` is D's loss (computed in ``_forward`` on the
    step's pairs); ``g_loss`` is logged. :meth:`get_backbone` returns E's backbone.
    Augmentation: ``none``. Optimizer: the paper's Adam with ``betas=(0.5, 0.999)`` at
    ``default_lr`` 2e-4 for all three networks.

    Heads as arguments: ``encoder_head`` (features to ``latent_dim``), ``generator`` (codes to
    images in [0, 1]) and ``discriminator`` (one logit per (image, code) pair) take modules of
    your own (None: the paper's, above); each is trained, saved and restored like the built-in
    one (rebuild with ``from_checkpoint(name, encoder_head=...)``; table in
    ``docs/methods.md``).
    """

    default_augment = "none"
    default_lr = 2e-4
    default_optimizer = functools.partial(torch.optim.Adam, betas=(0.5, 0.999))

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        latent_dim: int = 128,
        prior: str = "gaussian",
        generator_channels: int = 256,
        encoder_head: Optional[nn.Module] = None,
        generator: Optional[nn.Module] = None,
        discriminator: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        validate.positive_int(latent_dim, "latent_dim")
        check(prior in PRIORS, "prior", prior, f"one of {PRIORS}")
        super().__init__(dataset, backbone, **kwargs)
        channels = self.backbone.in_channels
        self.latent_dim, self.prior = latent_dim, prior
        self.encoder_head = _heads.resolve(
            self,
            "encoder_head",
            encoder_head,
            lambda: MLPHead([self.backbone.feature_dim, latent_dim], norm="none"),
        )
        if encoder_head is not None:
            _heads.check_width(
                "encoder_head",
                self.encoder_head,
                self.backbone.feature_dim,
                latent_dim,
                "latent_dim",
            )
        self.generator = _heads.resolve(
            self,
            "generator",
            generator,
            lambda: LatentGenerator(
                latent_dim,
                self.image_size,
                channels,
                channels=generator_channels,
                norm=self.hparams["norm"],
            ),
            "mapping (N, latent_dim) codes to images in [0, 1]",
        )
        self.discriminator = _heads.resolve(
            self,
            "discriminator",
            discriminator,
            lambda: JointDiscriminator(channels, latent_dim),
            "scoring (images, codes) pairs with one logit each",
        )
        self.adversarial = AdversarialLoss()
        self._pending = None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """E(x): latent codes (N, latent_dim) of images."""
        return self.encoder_head(self.backbone(images))

    def sample_latent(self, n: int, device: torch.device) -> torch.Tensor:
        """``n`` latent codes from the prior (Gaussian, or uniform in [-1, 1])."""
        if self.prior == "gaussian":
            return torch.randn(n, self.latent_dim, device=device)
        return torch.rand(n, self.latent_dim, device=device) * 2 - 1

    def generate(self, n: int) -> torch.Tensor:
        """G(z) for ``n`` codes from the prior: images (n, C, S, S) in [0, 1]."""
        return self.generator(self.sample_latent(n, self.device))

    def _forward(self, batch: Batch) -> torch.Tensor:
        real = first_view(self, batch.images)
        codes = self.encode(real)
        z = self.sample_latent(len(real), real.device)
        fake = self.generator(z)
        self._pending = (real, codes, z, fake)
        return self.adversarial.discriminator(
            self.discriminator(real, codes.detach()), self.discriminator(fake.detach(), z)
        )

    def _discriminator_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss  # _forward scored the detached pairs with the current D

    def _generator_loss(self, loss: torch.Tensor) -> torch.Tensor:
        real, codes, z, fake = self._pending
        return self.adversarial(self.discriminator(real, codes), real=False) + self.adversarial(
            self.discriminator(fake, z), real=True
        )
