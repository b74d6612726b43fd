"""Queues and memory banks: tensors stored as buffers so they are saved, loaded and moved
with the supervisor like any weight.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import validate
from .distributed import gather
from .errors import check


def _adopt_saved_size(memory: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load pre-hook of a resizable queue or bank: take the row count stored in the checkpoint."""
    saved = state_dict.get(prefix + "items")
    if memory.resizable and saved is not None and saved.shape != memory.items.shape:
        memory.items = torch.empty(
            saved.shape, dtype=memory.items.dtype, device=memory.items.device
        )


class Queue(nn.Module):
    """FIFO of the last ``size`` vectors (MoCo keys, NNCLR support set, SwAV features).

    Rows are overwritten oldest first; in distributed runs the keys of all processes are
    enqueued in rank order, so every process holds the same queue.

    Args:
        size: rows kept.
        dim: size of each vector.
        normalize: start from L2-normalised random rows.
        resizable: the size is provisional (chosen without the dataset or batch size): loading
            a checkpoint adopts the saved size, and the owner may resize it before training.
    """

    def __init__(self, size: int, dim: int, normalize: bool = True, resizable: bool = False):
        super().__init__()
        validate.positive_int(size, "queue size")
        init = torch.randn(size, dim)
        self.register_buffer("items", F.normalize(init, dim=1) if normalize else init)
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.resizable = resizable
        self.register_load_state_dict_pre_hook(_adopt_saved_size)

    @property
    def size(self) -> int:
        """The number of rows."""
        return self.items.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue ``keys`` (gathered across processes), dequeuing the oldest rows.

        Args:
            keys: (B, dim) vectors, at most the queue's size in total over the processes.
        """
        keys = gather(keys.detach()).to(self.items.dtype)
        n = keys.shape[0]
        check(n <= self.size, "queue size", self.size, f"at least the global batch ({n})")
        idx = (self.pointer + torch.arange(n, device=keys.device)) % self.size
        self.items[idx] = keys
        self.pointer.copy_((self.pointer + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def valid(self) -> torch.Tensor:
        """Only the rows written so far (the random initial rows are not real keys).

        Returns:
            The filled rows (at most ``size``, dim).
        """
        return self.items if int(self.filled) == self.size else self.items[: int(self.filled)]


class MemoryBank(nn.Module):
    """One L2-normalised vector per dataset image, updated with momentum (Wu et al., 2018).

    :meth:`negatives` samples ``n`` indices per query uniformly *without* the query's own
    index, so the positive is never used as a negative.

    Args:
        n_items: rows, one per dataset image.
        dim: size of each vector.
        momentum: weight of a row's old value in :meth:`update`.
        resizable: the size is provisional (built without a dataset): loading a checkpoint
            adopts the saved size.
    """

    def __init__(self, n_items: int, dim: int, momentum: float = 0.5, resizable: bool = False):
        super().__init__()
        validate.probability(momentum, "momentum")
        self.momentum = momentum
        self.register_buffer("items", F.normalize(torch.randn(n_items, dim), dim=1))
        self.resizable = resizable
        self.register_load_state_dict_pre_hook(_adopt_saved_size)

    @torch.no_grad()
    def update(self, index: torch.Tensor, features: torch.Tensor) -> None:
        """``items[i] <- normalize(m * items[i] + (1 - m) * feature)``, gathered across processes.

        Args:
            index: dataset indices of the rows (B,).
            features: the new features (B, dim).
        """
        index, features = gather(index), gather(features.detach()).to(self.items.dtype)
        mixed = self.momentum * self.items[index] + (1 - self.momentum) * features
        self.items[index] = F.normalize(mixed, dim=1)

    def negatives(
        self, index: torch.Tensor, n: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Rows drawn uniformly among all rows except each query's own.

        Args:
            index: each query's own row (B,).
            n: negatives per query, fewer than the number of rows.
            generator: the random stream to draw from.

        Returns:
            The negatives (B, n, dim).
        """
        n_items = self.items.shape[0]
        check(n < n_items, "number of negatives", n, f"fewer than the dataset size ({n_items})")
        draw = torch.randint(0, n_items - 1, (len(index), n), generator=generator)
        draw = draw.to(index.device)
        draw = draw + (draw >= index[:, None]).long()  # skip the positive's own row
        return self.items[draw]
