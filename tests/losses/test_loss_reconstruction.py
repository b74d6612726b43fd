"""Reconstruction and adversarial losses against their formulas: masked MSE (with a weight for
the unmasked pixels) and the GAN losses of generator and discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from super_selfish.losses import AdversarialLoss, MaskedMSELoss


def test_masked_mse_and_adversarial_losses_match_formulas():
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    ref = ((pred - target) ** 2 * mask).sum() / (mask.sum() * 3)
    assert torch.allclose(MaskedMSELoss()(pred, target, mask), ref)
    w = mask + 0.25 * (1 - mask)
    ref = ((pred - target) ** 2 * w).sum() / (w.sum() * 3)
    assert torch.allclose(MaskedMSELoss(0.25)(pred, target, mask), ref)
    real, fake = torch.randn(5), torch.randn(5)
    adv = AdversarialLoss()
    assert torch.allclose(adv(fake, real=True), -F.logsigmoid(fake).mean())
    assert torch.allclose(
        adv.discriminator(real, fake), -F.logsigmoid(real).mean() - F.logsigmoid(-fake).mean()
    )
