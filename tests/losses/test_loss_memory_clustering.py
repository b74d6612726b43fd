"""Memory-bank, predictive and clustering losses against references: NCE (Z estimated once) and
its softmax form, CPC's InfoNCE over grid positions, DINO's loss and centre, Sinkhorn and SwAV
(with a queue)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from super_selfish.losses import CPCLoss, DINOLoss, MemoryBankNCELoss, SwAVLoss, sinkhorn


# ---------------------------------------------------------------------------- losses
def test_nce_loss_matches_reference():
    torch.manual_seed(0)
    b, n, d, n_items, t = 5, 7, 16, 100, 0.07
    q = torch.randn(b, d)
    pos = F.normalize(torch.randn(b, d), dim=1)
    neg = F.normalize(torch.randn(b, n, d), dim=2)
    loss = MemoryBankNCELoss(n_items, t, "nce")
    value = loss(q, pos, neg)
    qn = F.normalize(q, dim=1)
    s = torch.cat([(qn * pos).sum(1, keepdim=True), torch.einsum("bd,bnd->bn", qn, neg)], 1)
    e = torch.exp(s.double() / t)
    z = e.mean() * n_items
    p = e / z
    noise = n / n_items
    h = p / (p + noise)
    ref = -(torch.log(h[:, 0]) + torch.log(1 - h[:, 1:]).sum(1)).mean()
    assert value.item() == pytest.approx(ref.item(), rel=1e-4)
    # Z is estimated once, then fixed (and restored from checkpoints).
    log_z = loss.log_z.clone()
    q2 = torch.randn(b, d)
    value2 = loss(q2, pos, neg)
    assert torch.equal(loss.log_z, log_z)
    q2n = F.normalize(q2, dim=1)
    s2 = torch.cat([(q2n * pos).sum(1, keepdim=True), torch.einsum("bd,bnd->bn", q2n, neg)], 1)
    p2 = torch.exp(s2.double() / t) / z
    h2 = p2 / (p2 + noise)
    ref2 = -(torch.log(h2[:, 0]) + torch.log(1 - h2[:, 1:]).sum(1)).mean()
    assert value2.item() == pytest.approx(ref2.item(), rel=1e-4)
    soft = MemoryBankNCELoss(n_items, t, "softmax")(q, pos, neg)
    assert soft.item() == pytest.approx(
        F.cross_entropy(s / t, torch.zeros(b).long()).item(), rel=1e-5
    )


def test_cpc_loss_matches_reference():
    torch.manual_seed(0)
    n, d, g = 3, 6, 5
    targets = torch.randn(n, d, g, g)
    preds = [torch.randn(n, d, g, g) for _ in range(2)]
    value = CPCLoss((1, 3))(preds, targets)
    per_step = []
    for k, pred in zip((1, 3), preds):
        terms = []
        for b in range(n):
            for i in range(g - k):
                for j in range(g):
                    logits = torch.stack(
                        [
                            pred[b, :, i, j] @ targets[c, :, y, x]
                            for c in range(n)
                            for y in range(g)
                            for x in range(g)
                        ]
                    )
                    true = b * g * g + (i + k) * g + j
                    terms.append(torch.logsumexp(logits, 0) - logits[true])
        per_step.append(torch.stack(terms).mean())
    assert value.item() == pytest.approx(torch.stack(per_step).mean().item(), rel=1e-5)


def test_dino_loss_and_center_match_reference():
    torch.manual_seed(0)
    b, k = 4, 10
    loss = DINOLoss(k, student_temp=0.1, center_momentum=0.9)
    loss.center.copy_(torch.randn(1, k))
    center = loss.center.clone()
    student = [torch.randn(b, k) for _ in range(4)]
    teacher = [torch.randn(b, k) for _ in range(2)]
    value = loss(student, teacher, 0.04)
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        q = torch.softmax((t - center) / 0.04, dim=1)
        for v, s in enumerate(student):
            if v != i:
                total += -(q * torch.log_softmax(s / 0.1, dim=1)).sum(1).mean()
                pairs += 1
    assert pairs == 6 and value.item() == pytest.approx((total / pairs).item(), rel=1e-5)
    expected = 0.9 * center + 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    assert torch.allclose(loss.center, expected)


def naive_sinkhorn(scores, eps, iters):
    q = torch.exp(scores.double() / eps).t()
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iters):
        q = q / q.sum(1, keepdim=True) / k
        q = q / q.sum(0, keepdim=True) / b
    return (q * b).t()


def test_sinkhorn_marginals_and_swav_loss_match_reference():
    torch.manual_seed(0)
    b, k = 12, 5
    scores = F.normalize(torch.randn(b, 16), dim=1) @ F.normalize(torch.randn(k, 16), dim=1).t()
    q = sinkhorn(scores, 0.05, 3)
    assert torch.allclose(q.double(), naive_sinkhorn(scores, 0.05, 3), atol=1e-5)
    assert torch.allclose(q.sum(1), torch.ones(b), atol=1e-5)  # each sample: total mass 1
    converged = sinkhorn(scores, 0.05, 500)
    assert torch.allclose(converged.sum(0), torch.full((k,), b / k), atol=1e-3)  # equipartition
    assert (converged >= 0).all()
    views = [torch.randn(b, k) for _ in range(4)]
    value = SwAVLoss(0.1, 0.05, 3)(views, n_assign=2)
    total = 0.0
    for i in range(2):
        code = naive_sinkhorn(views[i], 0.05, 3).float()
        sub = sum(
            -(code * torch.log_softmax(views[v] / 0.1, dim=1)).sum(1).mean()
            for v in range(4)
            if v != i
        )
        total += sub / 3
    assert value.item() == pytest.approx((total / 2).item(), rel=1e-4)
    # A queue joins Sinkhorn; only the batch's codes are used.
    queue = torch.randn(20, k)
    with_queue = SwAVLoss(0.1, 0.05, 3)(views, 2, [queue, queue])
    total = 0.0
    for i in range(2):
        code = naive_sinkhorn(torch.cat([queue, views[i]]), 0.05, 3)[-b:].float()
        sub = sum(
            -(code * torch.log_softmax(views[v] / 0.1, dim=1)).sum(1).mean()
            for v in range(4)
            if v != i
        )
        total += sub / 3
    assert with_queue.item() == pytest.approx((total / 2).item(), rel=1e-4)
