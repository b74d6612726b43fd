"""Momentum (EMA) copies of modules and their schedules: one update for every EMA in the library.

:class:`~super_selfish.methods._momentum.MomentumSupervisor` (BYOL, MoCo, DINO) and the Polyak
average of ``supervise(ema=...)`` both move their copies with :func:`ema_update`.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn

from . import validate
from .errors import check

#: ``"constant"``: the base coefficient throughout; ``"cosine"``: from the base to 1 (BYOL).
SCHEDULES = ("constant", "cosine")


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that takes no gradients: updated only by :func:`ema_update`.

    Args:
        module: the online module.

    Returns:
        A deep copy whose parameters have ``requires_grad`` False.
    """
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(
    target: nn.Module, online: nn.Module, momentum: float, copy_buffers: bool = False
) -> None:
    """``target <- momentum * target + (1 - momentum) * online``, parameter by parameter.

    Args:
        target: the EMA copy (same architecture as ``online``).
        online: the module trained by the optimizer.
        momentum: the coefficient in [0, 1]; 1 leaves ``target`` unchanged.
        copy_buffers: also copy ``online``'s buffers (BatchNorm statistics) into ``target``;
            when False they are left to the target's own forward passes (BYOL, MoCo, DINO).
    """
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)
    if copy_buffers:
        for buffer, source in zip(target.buffers(), online.buffers()):
            buffer.copy_(source)


def cosine_momentum(base: float, step: int, total_steps: int, final: float = 1.0) -> float:
    """BYOL's schedule: ``base`` at step 0 rising to ``final`` along a half cosine.

    Args:
        base: the coefficient at step 0.
        step: the step (0-based).
        total_steps: the run's steps; the last one (``total_steps - 1``) gets ``final``.
        final: the coefficient at the end of the run.

    Returns:
        The coefficient of ``step``.
    """
    if total_steps <= 1:
        return final
    progress = min(step / (total_steps - 1), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def momentum_at(base: float, schedule: str, step: int, total_steps: int) -> float:
    """The EMA coefficient of ``step`` under ``schedule``.

    Args:
        base: the base coefficient (tau).
        schedule: ``"constant"`` (``base`` throughout) or ``"cosine"`` (``base`` to 1).
        step: the step (0-based).
        total_steps: the run's steps.

    Returns:
        The coefficient.
    """
    return base if schedule == "constant" else cosine_momentum(base, step, total_steps)


def check_momentum(value: Any, schedule: Any) -> None:
    """Require a coefficient in [0, 1] and a known schedule.

    Args:
        value: the ``momentum`` argument.
        schedule: the ``momentum_schedule`` argument.

    Raises:
        ConfigError: naming the argument that is wrong and what it expects.
    """
    check(
        validate.is_number(value) and 0.0 <= value <= 1.0,
        "momentum",
        value,
        "a number in [0, 1] such as 0.99 or 0.996",
    )
    check(schedule in SCHEDULES, "momentum_schedule", schedule, f"one of {SCHEDULES}")
