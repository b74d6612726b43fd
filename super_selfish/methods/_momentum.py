"""The base of the methods that keep momentum (EMA) copies of online modules: BYOL, MoCo, DINO."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .. import momentum as ema
from ..errors import check
from ..supervisor import Supervisor

#: What earlier versions named the EMA copies (BYOL ``target_*``, DINO ``teacher_*``); their
#: checkpoints still load (see :func:`_rename_legacy_copies`).
_LEGACY_PREFIXES = ("target_", "teacher_")


class MomentumSupervisor(Supervisor):
    """A supervisor with momentum (EMA) copies of some of its modules.

    A method builds its online modules in ``__init__``, then declares which of them get a
    momentum copy with :meth:`add_momentum_copies`: ``add_momentum_copies("backbone",
    "projector")`` creates the frozen copies ``momentum_backbone`` and ``momentum_projector``
    (one naming for every method). After each optimizer step (in ``_update``) every pair of
    :meth:`momentum_pairs` moves by ``copy <- m * copy + (1 - m) * online``, with ``m`` from
    the schedule at the step about to be counted: ``momentum`` throughout (``"constant"``)
    or rising from ``momentum`` to 1 along a half cosine over the run's steps (``"cosine"``,
    BYOL's). The step's ``m`` is logged as ``momentum`` (step metrics and every history
    record), kept in ``current_momentum`` and saved in the checkpoint.

    Args:
        dataset, backbone, **kwargs: as for :class:`~super_selfish.supervisor.Supervisor`.
        momentum: the base coefficient tau in [0, 1] (BYOL and DINO: 0.996).
        momentum_schedule: ``"constant"`` or ``"cosine"``.
    """

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        momentum: float = 0.996,
        momentum_schedule: str = "cosine",
        **kwargs: Any,
    ):
        ema.check_momentum(momentum, momentum_schedule)
        super().__init__(dataset, backbone, **kwargs)
        self.momentum = float(momentum)
        self.momentum_schedule = momentum_schedule
        self.current_momentum = self.momentum
        self._momentum_names: tuple[str, ...] = ()
        self.register_load_state_dict_pre_hook(_rename_legacy_copies)

    def add_momentum_copies(self, *names: str) -> None:
        """Give each named online module a frozen EMA copy, ``momentum_<name>``.

        Args:
            *names: attributes holding online modules, e.g. ``"backbone", "projector"``.

        Raises:
            ConfigError: a name does not hold an ``nn.Module``.
        """
        for name in names:
            check(
                isinstance(getattr(self, name, None), nn.Module),
                "momentum copy",
                name,
                "the name of an nn.Module attribute built before add_momentum_copies",
            )
            setattr(self, f"momentum_{name}", ema.frozen_copy(getattr(self, name)))
        self._momentum_names += names

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The (online, momentum copy) module pairs updated after every step.

        Returns:
            One pair per name given to :meth:`add_momentum_copies`, in that order.
        """
        return [(getattr(self, n), getattr(self, f"momentum_{n}")) for n in self._momentum_names]

    @torch.no_grad()
    def _momentum_step(self) -> float:
        """Move every momentum copy with this step's coefficient; log and keep it.

        Runs after the optimizer step and before ``global_step`` counts the step, so the
        first step uses the schedule's value at step 0.

        Returns:
            The coefficient used.
        """
        m = ema.momentum_at(
            self.momentum, self.momentum_schedule, self.global_step, getattr(self, "total_steps", 1)
        )
        for online, copy in self.momentum_pairs():
            ema.ema_update(copy, online, m)
        self.current_momentum = m
        self.log(momentum=m)
        return m

    def _update(self, loss: torch.Tensor) -> None:
        """Backward and optimizer step (the base's), then the momentum copies' EMA step."""
        super()._update(loss)
        self._momentum_step()


def _rename_legacy_copies(sup: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load pre-hook: ``target_<name>.*`` / ``teacher_<name>.*`` keys of older checkpoints
    become ``momentum_<name>.*``.
    """
    for name in getattr(sup, "_momentum_names", ()):
        for old in _LEGACY_PREFIXES:
            head = f"{prefix}{old}{name}."
            for key in [k for k in state_dict if k.startswith(head)]:
                new = f"{prefix}momentum_{name}.{key[len(head) :]}"
                state_dict.setdefault(new, state_dict[key])
                del state_dict[key]
