"""The standard GAN objective with logits (Goodfellow et al., 2014), non-saturating form."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class AdversarialLoss(nn.Module):
    """Binary cross entropy with logits against "real" (1) or "fake" (0) labels.

    ``loss(logits, real=True)`` is ``-mean(log sigmoid(logits))``. The discriminator minimises
    :meth:`discriminator` (real scored real, fake scored fake); a generator minimises
    ``loss(D(fake), real=True)``, the non-saturating generator loss.
    """

    def forward(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        """Mean binary cross entropy of ``logits`` against one label for the whole batch.

        Args:
            logits: discriminator outputs, any shape.
            real: score them as real (target 1) or fake (target 0).

        Returns:
            The scalar loss.
        """
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Discriminator loss: BCE(real, 1) + BCE(fake, 0).

        Args:
            real_logits: the discriminator's outputs on real samples.
            fake_logits: its outputs on generated (detached) samples.

        Returns:
            The scalar loss.
        """
        return self(real_logits, True) + self(fake_logits, False)
