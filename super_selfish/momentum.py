"""Momentum (EMA) encoders shared by MoCo, BYOL, DINO and friends."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that takes no gradients: updated only by :func:`ema_update`."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter.

    Buffers (BatchNorm running statistics) are left to the target's own forward passes.
    """
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def cosine_momentum(base: float, step: int, total_steps: int, final: float = 1.0) -> float:
    """BYOL's schedule: ``base`` at step 0 rising to ``final`` along a half cosine."""
    if total_steps <= 1:
        return final
    progress = min(step / (total_steps - 1), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2
