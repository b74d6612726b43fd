"""The semi-hard triplet loss (Exemplar) against a brute-force reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from super_selfish.losses import SemiHardTripletLoss


# ---------------------------------------------------------------------- triplet loss
def brute_force_semi_hard(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    emb = F.normalize(emb.double(), dim=1)
    m, losses = len(labels), []
    for a in range(m):
        negatives = [float((emb[a] - emb[n]).norm()) for n in range(m) if labels[n] != labels[a]]
        if not negatives:
            continue
        for p in range(m):
            if p == a or labels[p] != labels[a]:
                continue
            d_ap = float((emb[a] - emb[p]).norm())
            farther = [d for d in negatives if d > d_ap]
            d_an = min(farther) if farther else max(negatives)
            losses.append(max(d_ap - d_an + margin, 0.0))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("seed", range(6))
def test_semi_hard_triplet_matches_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    m = 24
    labels = torch.randint(0, 6, (m,), generator=gen)
    emb = torch.randn(m, 8, generator=gen, dtype=torch.float64)
    margin = [0.2, 0.5, 1.0][seed % 3]
    loss = SemiHardTripletLoss(margin)(emb.clone().requires_grad_(), labels)
    assert loss.item() == pytest.approx(brute_force_semi_hard(emb, labels, margin), abs=1e-5)


def test_semi_hard_triplet_falls_back_to_farthest_negative_and_has_gradients():
    # Anchor 0 and its positive 1 are far apart; both negatives sit closer to the anchor.
    emb = torch.tensor([[1.0, 0.0], [-1.0, 0.1], [1.0, 0.3], [1.0, -0.2]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2])
    loss = SemiHardTripletLoss(0.2)(emb, labels)
    assert loss.item() == pytest.approx(brute_force_semi_hard(emb.detach(), labels, 0.2), abs=1e-5)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    # Two views per image, as Exemplar uses it: coincident views give zero distance, no NaN.
    twins = torch.randn(4, 16).repeat(2, 1).requires_grad_()
    SemiHardTripletLoss(0.2)(twins, torch.arange(4).repeat(2)).backward()
    assert torch.isfinite(twins.grad).all()
