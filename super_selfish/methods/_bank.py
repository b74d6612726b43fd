"""Pieces shared by the memory-bank methods (instance discrimination, PIRL, CMC)."""

from __future__ import annotations

from typing import Any, Optional

import torch

from .. import validate
from ..errors import check
from ..memory import MemoryBank
from ..supervisor import Supervisor


def bank_size(dataset: Any, requested: Optional[int]) -> int:
    """One row per dataset image; ``requested`` (or 2 without a dataset: the size is then
    taken from the checkpoint when loading).
    """
    if dataset is not None:
        n = len(dataset)
        check(
            requested is None or requested == n,
            "memory_size",
            requested,
            f"None or the dataset size {n} (one memory-bank row per image)",
        )
        check(n >= 2, "dataset size", n, "at least 2 images for a memory bank")
        return n
    if requested is not None:
        validate.int_at_least(requested, "memory_size", 2)
        return requested
    return 2


def make_bank(
    dataset: Any, dim: int, momentum: float, requested: Optional[int] = None
) -> MemoryBank:
    """One bank row per dataset image; built without a dataset, it takes the saved size."""
    return MemoryBank(
        bank_size(dataset, requested),
        dim,
        momentum,
        resizable=dataset is None and requested is None,
    )


def n_negatives(requested: int, n_items: int) -> int:
    """``requested`` negatives, capped below the bank size (the positive is never drawn)."""
    validate.positive_int(requested, "n_negatives", " such as 4096")
    return min(requested, n_items - 1)


class MemoryBankSupervisor(Supervisor):
    """Supervisor whose memory banks are updated after the optimizer step.

    ``_forward`` calls :meth:`_defer_bank_update`; the update runs in ``_update`` once the step
    is taken, so a batch skipped for a non-finite loss leaves the banks untouched, and the loss
    always reads the banks as they were before this batch.

    ``default_lr`` is 3e-4, not 1e-3: a bank row is refreshed once per epoch, so it holds
    features of an older network, and the faster the network drifts the staler the positives
    and negatives (measurements in ``docs/methods.md``).
    """

    default_lr = 3e-4

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._pending_bank: list[tuple[MemoryBank, torch.Tensor, torch.Tensor]] = []

    def _defer_bank_update(
        self, bank: MemoryBank, index: torch.Tensor, features: torch.Tensor
    ) -> None:
        self._pending_bank.append((bank, index, features.detach()))

    def _negatives(self, bank: MemoryBank, index: torch.Tensor, n: int) -> torch.Tensor:
        """(B, n, dim) bank rows, never the query's own, drawn from the run's generator."""
        return bank.negatives(
            index, n_negatives(n, bank.items.shape[0]), generator=getattr(self, "_aug_gen", None)
        )

    def _update(self, loss: torch.Tensor) -> None:
        super()._update(loss)
        pending, self._pending_bank = self._pending_bank, []
        for bank, index, features in pending:
            bank.update(index, features)

    def _train_step(self, batch: Any, epoch: int, step: int) -> Optional[float]:
        self._pending_bank = []  # drop updates of a skipped (non-finite) batch
        return super()._train_step(batch, epoch, step)
