"""Triplet loss with semi-hard negative mining inside the batch (Schroff et al., 2015,
FaceNet), as used for Exemplar training in Kolesnikov et al. (2019).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import validate
from ..errors import check


def pairwise_distances(embeddings: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Euclidean (or squared) distances between all rows; safe to differentiate.

    Args:
        embeddings: (M, D).
        squared: return squared distances.

    Returns:
        The (M, M) distance matrix.
    """
    sq_norm = embeddings.pow(2).sum(1)
    sq = (sq_norm[:, None] + sq_norm[None, :] - 2 * embeddings @ embeddings.t()).clamp(min=0)
    # The clamp keeps sqrt's gradient finite where two rows coincide (the diagonal).
    return sq if squared else sq.clamp(min=1e-12).sqrt()


class SemiHardTripletLoss(nn.Module):
    """Mean over all anchor-positive pairs of ``max(d(a, p) - d(a, n) + margin, 0)``.

    For every pair of distinct samples ``(a, p)`` with the same label, the negative ``n``
    (a sample with another label) is the *semi-hard* one: the closest to ``a`` among those
    farther from ``a`` than ``p`` is. When every negative is closer than ``p``, the farthest
    negative is used instead. Anchors without any negative in the batch contribute nothing.

    Args:
        margin: the triplet margin (0.2).
        normalize: L2-normalise the embeddings first (default), so distances lie in [0, 2].
        squared: use squared Euclidean distances (default: plain Euclidean).
    """

    def __init__(self, margin: float = 0.2, normalize: bool = True, squared: bool = False):
        super().__init__()
        validate.non_negative_number(margin, "margin", " such as 0.2")
        self.margin = float(margin)
        self.normalize = normalize
        self.squared = squared

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean semi-hard triplet loss of the batch.

        Args:
            embeddings: (M, D).
            labels: (M,) integer labels; samples with equal labels are positives.

        Returns:
            The scalar loss.
        """
        check(
            embeddings.dim() == 2 and len(embeddings) == len(labels),
            "embeddings",
            tuple(embeddings.shape),
            f"a (M, D) tensor with one row per label ({len(labels)})",
        )
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        dist = pairwise_distances(embeddings.float(), self.squared)
        m = len(labels)
        same = labels[:, None] == labels[None, :]
        positive = same & ~torch.eye(m, dtype=torch.bool, device=labels.device)
        negative = ~same
        # Per anchor, the distances to its negatives in ascending order (non-negatives last).
        neg_sorted, _ = torch.where(negative, dist, torch.full_like(dist, float("inf"))).sort(1)
        n_neg = negative.sum(1, keepdim=True)  # (M, 1)
        # First negative strictly farther than each positive: d(a, n) > d(a, p).
        first_farther = torch.searchsorted(neg_sorted.contiguous(), dist.contiguous(), right=True)
        has_semi_hard = first_farther < n_neg
        farthest = (n_neg - 1).clamp(min=0).expand(m, m)
        chosen = torch.where(has_semi_hard, first_farther, farthest)
        d_neg = neg_sorted.gather(1, chosen.clamp(max=m - 1))
        valid = positive & (n_neg > 0)
        losses = (dist - d_neg + self.margin).clamp(min=0)
        losses = torch.where(valid, losses, torch.zeros_like(losses))
        return losses.sum() / valid.sum().clamp(min=1)
