"""Optimizers of the self-supervised recipes: the named ones and LARS.

:data:`OPTIMIZERS` maps the names used by :mod:`super_selfish.recipes`, ``supervise(optimizer=
"lars")`` and the CLI's ``--optimizer`` to a factory ``f(params, lr=..., **hyper)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Optional

import torch

from . import validate
from .errors import check, unknown_name


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You, Gitman & Ginsburg, 2017,
    "Large Batch Training of Convolutional Networks"), as SimCLR, BYOL, Barlow Twins, VICReg,
    NNCLR and SwAV use it.

    For every parameter tensor ``w`` with gradient ``g`` in a group with weight decay ``wd``:

    1. ``u = g + wd * w``;
    2. when the tensor is adapted, ``u = trust * u`` with
       ``trust = eta * ||w|| / ||u||`` (1 when either norm is 0);
    3. ``v = momentum * v + u``; ``w = w - lr * v``.

    Tensors with at most one dimension (biases, normalisation weights) are not adapted
    (``exclude_1d=True``, as in the SimCLR and BYOL papers); they take no weight decay when
    they sit in a group with ``weight_decay=0``, which is how
    :meth:`super_selfish.Supervisor._param_groups` builds the groups.

    Args:
        params: parameters or parameter groups.
        lr: the learning rate (the global rate, before the layer-wise trust ratio).
        momentum: heavy-ball momentum, 0.9 in the papers.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        eta: the trust coefficient (0.001 in the papers).
        exclude_1d: leave biases and normalisation weights out of the adaptation.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        exclude_1d: bool = True,
    ):
        validate.positive_number(lr, "lr")
        check(
            validate.is_number(momentum) and 0.0 <= momentum < 1.0,
            "momentum",
            momentum,
            "a number in [0, 1)",
        )
        validate.non_negative_number(weight_decay, "weight_decay")
        validate.positive_number(eta, "eta", " (the trust coefficient) such as 0.001")
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, exclude_1d=exclude_1d
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        """One update of every parameter with a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if group["weight_decay"] != 0:
                    update = update.add(p, alpha=group["weight_decay"])
                if not (group["exclude_1d"] and p.ndim <= 1):
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    trust = torch.where(
                        (w_norm > 0) & (u_norm > 0),
                        group["eta"] * w_norm / u_norm,
                        torch.ones_like(w_norm),
                    )
                    update = update.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(update).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


#: Optimizer names -> classes; :func:`factory` adds each recipe's momentum or betas.
OPTIMIZERS: dict[str, type] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "lars": LARS,
}


def factory(
    name: str,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    lars_exclude_1d: bool = True,
) -> Callable[..., torch.optim.Optimizer]:
    """``f(params, lr=...)`` for optimizer ``name``: SGD and LARS with ``momentum``, Adam and
    AdamW with ``betas``.

    Args:
        name: one of :data:`OPTIMIZERS` (``adam``, ``adamw``, ``sgd``, ``lars``).
        momentum: heavy-ball momentum of SGD and LARS.
        betas: Adam's and AdamW's moment coefficients.
        lars_exclude_1d: LARS's ``exclude_1d`` (leave biases and normalisation weights out of
            the adaptation).

    Returns:
        A callable taking the parameter groups and ``lr=`` that builds the optimizer.
    """
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, OPTIMIZERS)
    cls = OPTIMIZERS[name]
    if name == "lars":
        return functools.partial(cls, momentum=momentum, exclude_1d=lars_exclude_1d)
    if name == "sgd":
        return functools.partial(cls, momentum=momentum)
    return functools.partial(cls, betas=tuple(betas))
