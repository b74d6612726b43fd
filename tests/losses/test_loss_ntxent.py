"""NT-Xent (SimCLR's loss) against a per-sample reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from super_selfish.losses import NTXentLoss


def reference_ntxent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        sims = [torch.exp(z[i] @ z[j] / t) for j in range(2 * n) if j != i]
        total = total - torch.log(torch.exp(z[i] @ z[partner] / t) / sum(sims))
    return total / (2 * n)


def test_ntxent_matches_reference_and_prefers_identical_views():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    loss = NTXentLoss(temperature=0.3)
    assert torch.allclose(loss(z1, z2), reference_ntxent(z1, z2, 0.3), atol=1e-5)
    assert loss(z1, z1) < loss(z1, z2)
    assert loss(z1, z1 + 0.01 * torch.randn_like(z1)) < loss(z1, z2)
