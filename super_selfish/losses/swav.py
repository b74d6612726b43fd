"""Swapped prediction of online cluster assignments (SwAV, Caron et al. 2020)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .. import validate
from ..distributed import is_distributed, world_size
from ..errors import check


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft equipartitioned assignments ``Q`` (B, K) of ``B`` samples to ``K`` prototypes.

    ``Q`` starts as ``exp(scores / epsilon)`` and is rescaled alternately so that every
    prototype receives the same total mass (rows of the K x B matrix sum to 1/K) and every
    sample a total of 1/B, ``iterations`` times; the result is scaled so that each sample's
    assignment sums to exactly 1 (and each prototype's column of ``Q`` to about B/K).
    In distributed runs the sums run over the samples of all processes.

    Args:
        scores: prototype scores (B, K).
        epsilon: the entropic regularisation; SwAV: 0.05.
        iterations: Sinkhorn-Knopp iterations; SwAV: 3.

    Returns:
        The codes ``Q`` (B, K), each row summing to 1.
    """
    validate.positive_number(epsilon, "epsilon", " such as 0.05")
    validate.positive_int(iterations, "iterations", " such as 3")
    logits = scores.float() / epsilon
    peak = logits.max()
    if is_distributed():
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    q = torch.exp(logits - peak).t()  # (K, B); the constant shift cancels below
    k, b = q.shape
    b_total = b * world_size()

    def reduced(t: torch.Tensor) -> torch.Tensor:
        if is_distributed():
            dist.all_reduce(t)
        return t

    q /= reduced(q.sum())
    for _ in range(iterations):
        q /= reduced(q.sum(dim=1, keepdim=True))
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b_total
    q *= b_total
    return q.t()


class SwAVLoss(nn.Module):
    """Predict the Sinkhorn code of one view from the prototype scores of every other view
    (Caron et al., 2020, NeurIPS).

    ``scores[v]`` (B, K) are the scores of view ``v`` against the (normalised) prototypes; codes
    are computed for the first ``n_assign`` views (the global crops). ``queue_scores[i]``
    (optional, (L, K)) are scores of queued features, prepended to view ``i``'s batch before
    Sinkhorn to get better-balanced codes for small batches; only the batch's rows are used.
    The loss averages, over assigned views ``i`` and all other views ``v``,
    ``-sum_k q_i log softmax(scores_v / temperature)``.

    Args:
        temperature: of the softmax over prototypes; paper: 0.1.
        epsilon: Sinkhorn's entropic regularisation; paper: 0.05.
        sinkhorn_iterations: paper: 3.
    """

    def __init__(
        self, temperature: float = 0.1, epsilon: float = 0.05, sinkhorn_iterations: int = 3
    ):
        super().__init__()
        validate.temperature(temperature, example=" such as 0.1")
        validate.positive_number(epsilon, "epsilon", " such as 0.05")
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)

    def forward(
        self,
        scores: Sequence[torch.Tensor],
        n_assign: int = 2,
        queue_scores: Optional[Sequence[Optional[torch.Tensor]]] = None,
    ) -> torch.Tensor:
        """The swapped-prediction loss of a batch.

        Args:
            scores: per view, the prototype scores (B, K); the assigned views first.
            n_assign: how many views get codes (the global crops; paper: 2).
            queue_scores: per assigned view, scores of queued features (L, K) or None.

        Returns:
            The scalar loss.
        """
        n_views = len(scores)
        check(
            n_views >= 2 and 1 <= n_assign <= n_views,
            "n_assign",
            n_assign,
            f"between 1 and the number of views ({n_views}, at least 2)",
        )
        log_probs = [F.log_softmax(s.float() / self.temperature, dim=1) for s in scores]
        total = 0.0
        for i in range(n_assign):
            with torch.no_grad():
                batch = scores[i].detach()
                extra = queue_scores[i] if queue_scores is not None else None
                if extra is not None and len(extra):
                    batch = torch.cat([extra.detach().to(batch.dtype), batch])
                q = sinkhorn(batch, self.epsilon, self.sinkhorn_iterations)[-len(scores[i]) :]
            sub = sum(-(q * log_probs[v]).sum(dim=1).mean() for v in range(n_views) if v != i)
            total = total + sub / (n_views - 1)
        return total / n_assign
