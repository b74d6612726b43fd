"""Joint-embedding losses against per-sample references: InfoNCE (queue, per-query and in-batch
negatives), negative cosine (stop-gradient), Barlow Twins, VICReg, and their statistics over
every process's embeddings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from super_selfish.losses import BarlowTwinsLoss, InfoNCELoss, NegativeCosineLoss, VICRegLoss


# ---------------------------------------------------------------------------- losses
def _unit(v):
    return v / math.sqrt(sum(float(x) ** 2 for x in v))


def _dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def _log_softmax_first(logits):
    top = max(logits)
    return logits[0] - (top + math.log(sum(math.exp(v - top) for v in logits)))


def test_infonce_queue_against_reference():
    g = torch.Generator().manual_seed(0)
    q, k, negs = (
        torch.randn(5, 4, generator=g),
        torch.randn(5, 4, generator=g),
        torch.randn(7, 4, generator=g),
    )
    per_query = torch.randn(5, 3, 4, generator=g)
    t = 0.2
    shared, own = 0.0, 0.0
    for i in range(5):
        qi = _unit(q[i])
        logits = [_dot(qi, _unit(k[i])) / t] + [_dot(qi, _unit(n)) / t for n in negs]
        shared -= _log_softmax_first(logits) / 5
        logits = [_dot(qi, _unit(k[i])) / t] + [_dot(qi, _unit(n)) / t for n in per_query[i]]
        own -= _log_softmax_first(logits) / 5
    loss = InfoNCELoss(t)
    assert loss(q, k, negs).item() == pytest.approx(shared, rel=1e-5)
    assert loss(q, k, per_query).item() == pytest.approx(own, rel=1e-5)
    assert loss(q, k, negs[:0]).item() == pytest.approx(0.0, abs=1e-6)


def test_infonce_in_batch_against_reference():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    t = 0.1
    expected = 0.0
    for i in range(6):
        logits = [_dot(_unit(q[i]), _unit(k[j])) / t for j in range(6)]
        logits = [logits[i]] + logits[:i] + logits[i + 1 :]
        expected -= _log_softmax_first(logits) / 6
    assert InfoNCELoss(t)(q, k).item() == pytest.approx(expected, rel=1e-5)


def test_negative_cosine_against_reference_and_stop_gradient():
    g = torch.Generator().manual_seed(2)
    p = torch.randn(4, 6, generator=g, requires_grad=True)
    z = torch.randn(4, 6, generator=g, requires_grad=True)
    cos = [_dot(_unit(p[i].detach()), _unit(z[i].detach())) for i in range(4)]
    assert NegativeCosineLoss()(p, z).item() == pytest.approx(-sum(cos) / 4, rel=1e-5)
    squared = NegativeCosineLoss(mode="squared")(p, z)
    assert squared.item() == pytest.approx(sum(2 - 2 * c for c in cos) / 4, rel=1e-5)
    squared.backward()
    assert p.grad is not None and z.grad is None


def test_barlow_against_reference():
    g = torch.Generator().manual_seed(3)
    n, d, lambd, eps = 8, 5, 5e-3, 1e-5
    z1, z2 = torch.randn(n, d, generator=g) * 3 + 1, torch.randn(n, d, generator=g)

    def standardized(z, j):
        col = [float(z[b, j]) for b in range(n)]
        mean = sum(col) / n
        var = sum((v - mean) ** 2 for v in col) / n
        return [(v - mean) / math.sqrt(var + eps) for v in col]

    a = [standardized(z1, j) for j in range(d)]
    b = [standardized(z2, j) for j in range(d)]
    expected = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][s] * b[j][s] for s in range(n)) / n
            expected += (1 - c) ** 2 if i == j else lambd * c**2
    assert BarlowTwinsLoss(lambd)(z1, z2).item() == pytest.approx(expected, rel=1e-5)


def test_vicreg_against_reference():
    g = torch.Generator().manual_seed(4)
    n, d = 10, 4
    z1, z2 = torch.randn(n, d, generator=g) * 0.5, torch.randn(n, d, generator=g) * 2

    def var_term(z):
        total = 0.0
        for j in range(d):
            col = [float(z[b, j]) for b in range(n)]
            mean = sum(col) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in col) / (n - 1) + 1e-4)
            total += max(0.0, 1.0 - std)
        return total / d

    def cov_term(z):
        means = [sum(float(z[b, j]) for b in range(n)) / n for j in range(d)]
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    c = sum(
                        (float(z[b, i]) - means[i]) * (float(z[b, j]) - means[j]) for b in range(n)
                    ) / (n - 1)
                    total += c**2
        return total / d

    invariance = sum(
        (float(z1[b, j]) - float(z2[b, j])) ** 2 for b in range(n) for j in range(d)
    ) / (n * d)
    expected = (
        25 * invariance + 25 * (var_term(z1) + var_term(z2)) / 2 + 1 * (cov_term(z1) + cov_term(z2))
    )
    loss = VICRegLoss()
    assert loss(z1, z2).item() == pytest.approx(expected, rel=1e-5)
    assert loss.terms["invariance"].item() == pytest.approx(invariance, rel=1e-5)


def test_losses_use_the_embeddings_of_every_process(monkeypatch):
    """Simulated rank 1 of 2: statistics and candidates span the gathered (global) batch."""
    from super_selfish import distributed

    g = torch.Generator().manual_seed(5)
    other = {}  # what "rank 0" contributes to each gathered tensor

    def fake_gather(t):
        key = tuple(t.shape), float(t.detach().sum())
        other.setdefault(key, torch.randn(t.shape, generator=g))
        return torch.cat([other[key], t])

    monkeypatch.setattr(distributed, "gather_with_grad", fake_gather)
    monkeypatch.setattr(distributed, "rank", lambda group=None: 1)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    barlow = BarlowTwinsLoss()(z1, z2)
    o1, o2 = other[(6, 5), float(z1.sum())], other[(6, 5), float(z2.sum())]
    expected = BarlowTwinsLoss(gather=False)(torch.cat([o1, z1]), torch.cat([o2, z2]))
    assert barlow.item() == pytest.approx(expected.item(), rel=1e-6)

    vic = VICRegLoss()(z1, z2)
    o1, o2 = other[(6, 5), float(z1.sum())], other[(6, 5), float(z2.sum())]
    full = VICRegLoss(gather=False)
    full(torch.cat([o1, z1]), torch.cat([o2, z2]))
    expected = (
        25 * F.mse_loss(z1, z2) + 25 * full.terms["variance"] + full.terms["covariance"]
    )  # invariance stays per process
    assert vic.item() == pytest.approx(expected.item(), rel=1e-6)

    q, k = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    loss = InfoNCELoss(0.5)(q, k)
    local = F.normalize(k, dim=1)  # the other process's keys arrive already normalised
    keys = torch.cat([other[(4, 3), float(local.sum())], local])
    logits = F.normalize(q, dim=1) @ keys.t() / 0.5
    expected = F.cross_entropy(logits, torch.arange(4) + 4)  # positives at offset rank * n
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
