"""Memory-bank contrast: noise-contrastive estimation (Wu et al., 2018) or a sampled softmax.

Used by instance discrimination, PIRL and CMC: a query is scored against its positive (its own
memory-bank row) and ``n`` negatives drawn from the bank.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .. import validate
from ..distributed import is_distributed, world_size
from ..errors import check

MODES = ("nce", "softmax")


class MemoryBankNCELoss(nn.Module):
    """Contrast ``query`` with one ``positive`` and ``n`` ``negatives`` (all L2-normalised).

    Scores are ``s = query . key / temperature``.

    * ``mode="nce"`` (Wu et al., 2018, Sec. 3.2; also PIRL and CMC): each key is classified as
      data or noise. With ``P(i|v) = exp(s_i) / Z`` and uniform noise ``P_n = 1 / n_items``,
      ``h = P / (P + n * P_n)`` and the loss is ``-log h(positive) - sum_j log(1 - h(negative_j))``,
      averaged over the batch. The normaliser ``Z`` is estimated once, from the first batch
      (``Z = n_items * mean(exp(s))`` over all its scores, averaged over processes), and then
      kept fixed, as in the paper; it is a buffer, so checkpoints keep it.
    * ``mode="softmax"``: cross entropy of the positive among ``1 + n`` keys (InfoNCE).

    Computed in float32 (also under autocast) in the log domain (``-log h = softplus(-a)``,
    ``-log(1 - h) = softplus(a)``, ``a = s - log Z - log(n * P_n)``), so it does not overflow.
    """

    def __init__(self, n_items: int, temperature: float = 0.07, mode: str = "nce"):
        super().__init__()
        validate.temperature(temperature, example=" such as 0.07")
        check(mode in MODES, "mode", mode, f"one of {MODES}")
        validate.int_at_least(n_items, "n_items", 2, " (the memory-bank size)")
        self.n_items = n_items
        self.temperature = float(temperature)
        self.mode = mode
        # log Z, estimated from the first batch (NCE mode only); z_estimated says whether it is.
        self.register_buffer("log_z", torch.zeros(()))
        self.register_buffer("z_estimated", torch.zeros((), dtype=torch.bool))
        self._z_ready = False

    def _load_from_state_dict(self, *args, **kwargs):  # a loaded Z may still be unset
        self._z_ready = False
        super()._load_from_state_dict(*args, **kwargs)

    def scores(
        self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Scaled cosine scores of each query against its positive and its negatives.

        Args:
            query: queries (B, D), normalised here.
            positive: the positive keys (B, D), already normalised (bank rows).
            negatives: negatives (B, n, D), already normalised.

        Returns:
            Scores (B, 1 + n), the positive first.
        """
        query = F.normalize(query.float(), dim=1)
        keys = torch.cat([positive.float()[:, None], negatives.float()], dim=1)
        return torch.einsum("bd,bkd->bk", query, keys) / self.temperature

    def forward(
        self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """The mean loss of the batch (NCE or softmax, computed in float32).

        Args:
            query: queries (B, D).
            positive: each query's memory-bank row (B, D).
            negatives: rows drawn from the bank (B, n, D).

        Returns:
            The scalar loss.
        """
        check(
            negatives.ndim == 3 and negatives.shape[0] == query.shape[0],
            "negatives",
            tuple(negatives.shape),
            f"(batch {query.shape[0]}, n, dim)",
        )
        with torch.autocast(query.device.type, enabled=False):  # 1/0.07 needs float32
            return self._loss(self.scores(query, positive, negatives), negatives.shape[1])

    def _loss(self, logits: torch.Tensor, n_neg: int) -> torch.Tensor:
        if self.mode == "softmax":
            target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
            return F.cross_entropy(logits, target)
        if not self._z_ready:  # a Python flag: no device sync once Z is known
            if not bool(self.z_estimated):
                self._estimate_log_z(logits.detach())
            self._z_ready = True
        a = logits - self.log_z - math.log(n_neg / self.n_items)
        loss = F.softplus(-a[:, 0]) + F.softplus(a[:, 1:]).sum(dim=1)
        return loss.mean()

    @torch.no_grad()
    def _estimate_log_z(self, logits: torch.Tensor) -> None:
        """Log Z = log(n_items * mean(exp(scores))), averaged over processes."""
        estimate = (
            torch.logsumexp(logits.flatten(), 0) - math.log(logits.numel()) + math.log(self.n_items)
        )
        if is_distributed():
            dist.all_reduce(estimate)
            estimate /= world_size()
        self.log_z.copy_(estimate)
        self.z_estimated.fill_(True)
