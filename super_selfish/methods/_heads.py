"""Heads given as constructor arguments, as in the original Super-Selfish.

Every supervisor takes its heads as keyword arguments (``projector=``, ``predictor=``,
``head=``, ``decoder=``, ... per method; the table is in ``docs/methods.md``). None builds the
paper's head; a module is used as it is: trained, saved and restored like the built-in one.
Rebuild a run trained with a module of your own with
``from_checkpoint(name, projector=<the same kind of module>)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

from ..errors import check


def resolve(
    sup: nn.Module,
    argument: str,
    given: Optional[nn.Module],
    build: Callable[[], nn.Module],
    expects: str = "",
    in_dim: Optional[int] = None,
) -> nn.Module:
    """``given`` when it is a module (recorded in ``hparams["custom_heads"]``), else ``build()``.

    Args:
        sup: the supervisor being built (after ``Supervisor.__init__``).
        argument: the constructor argument, e.g. ``"projector"``.
        given: the user's module, or None for the paper's head.
        build: makes the paper's head.
        expects: what the module receives and returns, for the error message.
        in_dim: the width of the vectors the head receives: lazy layers of a user head
            (``nn.LazyLinear``) are materialised with it, so the optimizer sees real weights.

    Returns:
        The head to use.

    Raises:
        ConfigError: ``given`` is neither None nor an ``nn.Module``.
    """
    if given is None:
        return build()
    check(
        isinstance(given, nn.Module),
        argument,
        type(given).__name__,
        f"None (the paper's {argument}) or an nn.Module{' ' + expects if expects else ''}",
    )
    if in_dim is not None and any(is_lazy(p) for p in given.parameters()):
        output_dim(given, in_dim)
    custom = sup.hparams.setdefault("custom_heads", [])
    if argument not in custom:
        custom.append(argument)
    return given


def output_dim(module: nn.Module, in_dim: int) -> int:
    """The width of ``module``'s output for a batch of ``in_dim``-d vectors.

    Probed with two zero rows in eval mode (BatchNorm uses its running statistics), without
    gradients; the module's mode is restored.
    """
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, in_dim, device=device))
    finally:
        module.train(training)
    return int(out.shape[-1])


def check_width(argument: str, module: nn.Module, in_dim: int, expected: int, setting: str) -> None:
    """Check that a user head returns ``expected`` values per image (a size set elsewhere)."""
    width = output_dim(module, in_dim)
    check(
        width == expected,
        argument,
        f"a module returning {width} values",
        f"a module returning {expected} values per image ({setting})",
    )
