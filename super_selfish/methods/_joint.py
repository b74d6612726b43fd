"""Pieces shared by the joint-embedding methods: checks and auto-sized queues."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F

from .. import validate
from ..distributed import world_size
from ..errors import ConfigError, check
from ..memory import Queue

check_temperature = validate.temperature
check_positive_int = validate.positive_int


# ---------------------------------------------------------------------------- auto-sized queues
def initial_queue_size(requested: Optional[int], cap: int, dataset: Any, argument: str) -> int:
    """``requested`` when given; else ``min(cap, len(dataset))`` (``cap`` without a dataset).

    The auto size is trimmed to a multiple of the global batch at ``supervise`` time
    (:func:`fit_queue`).
    """
    if requested is not None:
        check_positive_int(requested, argument)
        return requested
    return cap if dataset is None else max(1, min(cap, len(dataset)))


def make_queue(size: int, dim: int, auto: bool) -> Queue:
    """A queue of ``size`` rows; ``auto``: sized by :func:`fit_queue` (and by checkpoints)."""
    return Queue(size, dim, resizable=auto)


def fit_queue(queue: Queue, batch_size: int, argument: str, multiple: bool = True) -> int:
    """Check (explicit size) or adapt (auto size) ``queue`` to the global batch; return its size.

    Rule for an auto-sized queue: the largest multiple of the global batch (``batch_size`` x
    processes) not above its initial size, and at least one global batch. An explicit size
    must be a multiple of the global batch (``multiple``) or at least one global batch.
    """
    batch = batch_size * world_size()
    size = queue.size
    if not queue.resizable:
        if multiple:
            check(
                size % batch == 0,
                argument,
                size,
                f"a multiple of the global batch size {batch} (e.g. "
                f"{max(batch, size // batch * batch)})",
            )
        else:
            check(size >= batch, argument, size, f"at least the global batch size {batch}")
        return size
    target = max(batch, size // batch * batch)
    if target != size:
        if int(queue.filled) > 0:
            raise ConfigError(
                f"Invalid {argument}={size} (restored from the checkpoint): expected a multiple "
                f"of the global batch size {batch}; resume with the batch size of the first "
                f"run or pass {argument} explicitly and train from scratch."
            )
        init = torch.randn(target, queue.items.shape[1], device=queue.items.device)
        queue.items = F.normalize(init, dim=1).to(queue.items.dtype)
        queue.pointer.zero_()
        queue.filled.zero_()
    return target


#: A default freeze window (DINO's last layer, SwAV's prototypes) is one epoch, as the papers'
#: code, but never more than this share of a run: a 1-epoch CPU run would otherwise never
#: train them at all.
MAX_FREEZE_FRACTION = 0.1


def in_freeze_window(sup: Any, steps: Optional[int]) -> bool:
    """Whether the current step falls in a head part's freeze window (DINO's last layer,
    SwAV's prototypes).

    Args:
        sup: the supervisor during ``supervise()`` (its ``global_step``, ``loader`` and
            ``total_steps``).
        steps: the window the user gave, in optimizer steps; None: one epoch, at most a tenth
            of the run (rounded up), so short runs still train the part.

    Returns:
        True while the part's gradients are to be dropped.
    """
    if steps is None:
        loader = getattr(sup, "loader", None)
        if loader is None:
            return False
        steps = max(1, len(loader))
        total = getattr(sup, "total_steps", None)
        if total:
            steps = min(steps, math.ceil(MAX_FREEZE_FRACTION * total))
    return sup.global_step < steps
