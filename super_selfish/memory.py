"""Queues and memory banks: tensors stored as buffers so they are saved, loaded and moved
with the supervisor like any weight."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .distributed import gather
from .errors import check


class Queue(nn.Module):
    """FIFO of the last ``size`` vectors (MoCo keys, NNCLR support set, SwAV features).

    Rows are overwritten oldest first; in distributed runs the keys of all processes are
    enqueued in rank order, so every process holds the same queue.
    """

    def __init__(self, size: int, dim: int, normalize: bool = True):
        super().__init__()
        validate.positive_int(size, "queue size")
        init = torch.randn(size, dim)
        self.register_buffer("items", F.normalize(init, dim=1) if normalize else init)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.items.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue ``keys`` (gathered across processes), dequeuing the oldest rows."""
        keys = gather(keys.detach()).to(self.items.dtype)
        n = keys.shape[0]
        check(n <= self.size, "queue size", self.size, f"at least the global batch ({n})")
        idx = (self.pointer + torch.arange(n, device=keys.device)) % self.size
        self.items[idx] = keys
        self.pointer.copy_((self.pointer + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def valid(self) -> torch.Tensor:
        """Only the rows written so far (the random initial rows are not real keys)."""
        return self.items if int(self.filled) == self.size else self.items[:int(self.filled)]


class MemoryBank(nn.Module):
    """One L2-normalised vector per dataset image, updated with momentum (Wu et al., 2018).

    :meth:`negatives` samples ``n`` indices per query uniformly *without* the query's own
    index, so the positive is never used as a negative.
    """

    def __init__(self, n_items: int, dim: int, momentum: float = 0.5):
        super().__init__()
        validate.probability(momentum, "momentum")
        self.momentum = momentum
        self.register_buffer("items", F.normalize(torch.randn(n_items, dim), dim=1))

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor) -> None:
        """items[i] <- normalize(m * items[i] + (1 - m) * feature), gathered across processes."""
        index, features = gather(index), gather(features.detach()).to(self.items.dtype)
        mixed = self.momentum * self.items[index] + (1 - self.momentum) * features
        self.items[index] = F.normalize(mixed, dim=1)

    def negatives(self, index: torch.Tensor, n: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n, dim) bank rows drawn uniformly among all rows except each query's own."""
        n_items = self.items.shape[0]
        check(n < n_items, "number of negatives", n, f"fewer than the dataset size ({n_items})")
        draw = torch.randint(0, n_items - 1, (len(index), n), generator=generator)
        draw = draw.to(index.device)
        draw = draw + (draw >= index[:, None]).long()  # skip the positive's own row
        return self.items[draw]
