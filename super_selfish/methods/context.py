"""Context encoder (Pathak et al., 2016, "Context Encoders: Feature Learning by Inpainting")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn as nn

from .. import decoders, validate
from ..data import Batch
from ..discriminators import ConvDiscriminator
from ..errors import check
from ..losses import AdversarialLoss, MaskedMSELoss
from . import _heads
from .adversarial import AdversarialSupervisor
from .autoencoding import first_view
from .registry import register


@register("context")
class ContextSupervisor(AdversarialSupervisor):
    """Inpaint randomly erased blocks from their context, with an optional adversarial loss.

    Each image loses ``n_blocks`` = 5 random rectangles (sides drawn uniformly in
    ``block_size`` = (0.1, 0.3) of the image side; they may overlap), filled with the
    backbone's mean colour (the paper's random-block variant). The backbone encodes the
    erased image and a :class:`~super_selfish.decoders.ConvDecoder` predicts the full image.

    Loss: ``L2 + adversarial_weight * adversarial``. The L2 term is the squared error on the
    erased pixels (``outside_weight`` = 0 gives the rest of the image no weight); the
    adversarial term (``adversarial_weight`` = 0.001 as in the paper; 0 disables it and no
    discriminator is built) asks a :class:`~super_selfish.discriminators.ConvDiscriminator` to
    take the inpainted image (real context, predicted blocks) for a real one. The discriminator
    is trained by its own optimizer before each encoder-decoder step (see
    :class:`~super_selfish.methods.adversarial.AdversarialSupervisor`). The reported ``loss``
    is the L2 term; ``d_loss`` and ``g_loss`` are logged per step.
    Needs a convolutional backbone.

    Heads as arguments: ``decoder`` (called as ``decoder(feature_map, size=(H, W))``, returning
    images in [0, 1]) and ``discriminator`` (one logit per image; only with
    ``adversarial_weight`` > 0) take modules of your own (None: the paper's, above); each is
    trained, saved and restored like the built-in one (rebuild with ``from_checkpoint(name,
    decoder=...)``; table in ``docs/methods.md``).
    """

    default_augment = "none"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        n_blocks: int = 5,
        block_size: Sequence[float] = (0.1, 0.3),
        adversarial_weight: float = 0.001,
        outside_weight: float = 0.0,
        decoder: Optional[nn.Module] = None,
        discriminator: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        validate.positive_int(n_blocks, "n_blocks")
        check(
            len(block_size) == 2 and 0 < block_size[0] <= block_size[1] <= 1,
            "block_size",
            block_size,
            "a (low, high) pair of fractions of the image side in (0, 1]",
        )
        validate.non_negative_number(
            adversarial_weight, "adversarial_weight", " (0 disables the discriminator)"
        )
        check(
            discriminator is None or adversarial_weight > 0,
            "discriminator",
            type(discriminator).__name__,
            "None with adversarial_weight=0 (no adversarial term), or pass adversarial_weight > 0",
        )
        super().__init__(dataset, backbone, **kwargs)
        self.n_blocks, self.block_size = n_blocks, (float(block_size[0]), float(block_size[1]))
        self.adversarial_weight = float(adversarial_weight)
        channels = self.backbone.in_channels
        self.decoder = _heads.resolve(
            self,
            "decoder",
            decoder,
            lambda: decoders.for_backbone(
                self.backbone,
                self.image_size,
                channels,
                norm=self.hparams["norm"],
                output="sigmoid",
            ),
            "called as decoder(feature_map, size=(H, W)) and returning images",
        )
        self.discriminator = (
            _heads.resolve(
                self,
                "discriminator",
                discriminator,
                lambda: ConvDiscriminator(channels),
                "returning one real/fake logit per image",
            )
            if adversarial_weight > 0
            else None
        )
        self.reconstruction = MaskedMSELoss(outside_weight)
        self.adversarial = AdversarialLoss()
        self._pending = None
        self._record_hparams(block_size=list(self.block_size))

    def erase_mask(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(n, 1, height, width) float mask, 1 inside the union of the random blocks."""
        low, high = self.block_size
        shape = (n, self.n_blocks)
        bh = ((low + (high - low) * torch.rand(shape, device=device)) * height).round()
        bw = ((low + (high - low) * torch.rand(shape, device=device)) * width).round()
        bh, bw = bh.clamp(1, height), bw.clamp(1, width)
        top = (torch.rand(shape, device=device) * (height - bh + 1)).floor()
        left = (torch.rand(shape, device=device) * (width - bw + 1)).floor()
        rows = torch.arange(height, device=device).view(1, 1, height, 1)
        cols = torch.arange(width, device=device).view(1, 1, 1, width)
        top, left, bh, bw = (t[..., None, None] for t in (top, left, bh, bw))
        inside = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
        return inside.any(dim=1, keepdim=True).float()

    def inpaint(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted full images (in [0, 1]) from images whose ``mask`` region is erased."""
        fill = self.backbone.mean.to(images.dtype)
        erased = images * (1 - mask) + fill * mask
        return self.decoder(self.backbone.feature_map(erased), size=images.shape[-2:])

    def _forward(self, batch: Batch) -> torch.Tensor:
        images = first_view(self, batch.images)
        mask = self.erase_mask(len(images), *images.shape[-2:], images.device)
        pred = self.inpaint(images, mask)
        composite = images * (1 - mask) + pred * mask
        self._pending = (images, composite)
        return self.reconstruction(pred, images, mask)

    def _discriminator_loss(self, loss: torch.Tensor) -> torch.Tensor:
        real, fake = self._pending
        return self.adversarial.discriminator(
            self.discriminator(real), self.discriminator(fake.detach())
        )

    def _generator_loss(self, loss: torch.Tensor) -> torch.Tensor:
        _, fake = self._pending
        adversarial = self.adversarial(self.discriminator(fake), real=True)
        self.log(reconstruction=float(loss.detach()), adversarial=float(adversarial.detach()))
        return loss + self.adversarial_weight * adversarial
