"""Shared machinery of the methods with a discriminator (context encoder, BiGAN).

:class:`AdversarialSupervisor` keeps the discriminator out of the main optimizer, gives it
its own optimizer (same class and learning rate, learning rate kept in step with the main
schedule), and overrides :meth:`_update` with the usual GAN step order:

1. the discriminator on real vs detached fake samples, with its own optimizer step;
2. the generator side (encoder, decoder, generator) with its loss computed through the
   *updated* discriminator, whose parameters are frozen meanwhile, via the base ``_update``
   (clipping, scaler, scheduler).

Both optimizers are written to and restored from checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import torch
import torch.nn as nn

from .. import console
from ..errors import ConfigError, DivergenceError
from ..supervisor import Supervisor


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients into ``module``'s parameters (inputs still get them)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Decay for matrices and kernels, none for biases and norm weights (as the base class)."""
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


class AdversarialSupervisor(Supervisor):
    """Base class for methods with a ``self.discriminator`` trained by ``self.optimizer_d``.

    Subclasses set ``self.discriminator`` (an ``nn.Module``, or ``None`` to train without an
    adversary) in ``__init__``, return from ``_forward`` the loss reported for the step, and
    implement :meth:`_discriminator_loss` and :meth:`_generator_loss`, which receive that
    loss and whatever ``_forward`` stored in ``self._pending``.
    Distributed (DDP) training is not supported: the discriminator step runs outside the
    DDP-wrapped forward, so its gradients would not be averaged across processes.
    """

    discriminator: Optional[nn.Module]
    optimizer_d: Optional[torch.optim.Optimizer] = None

    # ------------------------------------------------------------------ optimizers
    def _adversary_parameters(self) -> list[nn.Parameter]:
        disc = getattr(self, "discriminator", None)
        return [] if disc is None else [p for p in disc.parameters() if p.requires_grad]

    def _param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The main optimizer's parameters: everything trainable except the discriminator."""
        excluded = {id(p) for p in self._adversary_parameters()}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in excluded]
        if not params:
            raise ConfigError(f"{type(self).__name__} has no trainable parameters.")
        return _groups(params, weight_decay)

    def _on_fit_start(
        self,
        batch_size: int,
        *,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        weight_decay: float,
        **run: Any,
    ) -> None:
        """The discriminator's optimizer (same factory, rate and decay), before a resumed
        run's optimizer states are restored.
        """
        if self._ddp is not None:
            raise ConfigError(
                f"{type(self).__name__} does not support distributed training "
                "yet (its discriminator step is outside DistributedDataParallel):"
                " run it on one process (distributed=False)."
            )
        disc_params = self._adversary_parameters()
        self.optimizer_d = (
            optimizer(_groups(disc_params, weight_decay), lr=lr) if disc_params else None
        )
        self._sync_discriminator_lr()

    def _sync_discriminator_lr(self) -> None:
        """The discriminator follows the main schedule (warm-up, cosine)."""
        if self.optimizer_d is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            for group in self.optimizer_d.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------ the GAN step
    def _discriminator_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Loss of the discriminator on real vs detached fake samples."""
        raise NotImplementedError

    def _generator_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """Loss of the generator side, scored by the (updated, frozen) discriminator."""
        raise NotImplementedError

    def _finite(self, value: torch.Tensor, what: str) -> bool:
        """True when ``value`` is finite; else skip the step (``skip_nonfinite``) or raise."""
        if torch.isfinite(value.detach()).all():
            return True
        if self._train_options.get("skip_nonfinite"):
            console.warn(
                f"non-finite {what} at global step {self.global_step + 1}: step "
                "skipped (skip_nonfinite=True)"
            )
            self.optimizer.zero_grad(set_to_none=True)
            self.optimizer_d.zero_grad(set_to_none=True)
            self._pending = None
            return False
        raise DivergenceError(
            f"The {what} of {type(self).__name__} became {value.item()} at global step "
            f"{self.global_step + 1}. Likely causes: a learning rate too high (now "
            f"{self.optimizer.param_groups[0]['lr']:.3g}) or a discriminator that "
            "overpowers the generator; lower lr or adversarial_weight, or pass "
            "skip_nonfinite=True to skip such steps."
        )

    def _update(self, loss: torch.Tensor) -> None:
        if getattr(self, "discriminator", None) is None or self.optimizer_d is None:
            super()._update(loss)
            self._pending = None
            return
        with self._autocast():
            d_loss = self._discriminator_loss(loss)
        if not self._finite(d_loss, "discriminator loss"):
            return
        self.optimizer_d.zero_grad(set_to_none=True)
        self._scaler.scale(d_loss).backward()
        clip = self._train_options["grad_clip"]
        if clip is not None:
            self._scaler.unscale_(self.optimizer_d)
            nn.utils.clip_grad_norm_(self._adversary_parameters(), clip)
        self._scaler.step(self.optimizer_d)
        self.optimizer_d.zero_grad(set_to_none=True)  # keep them out of the main clipping
        with frozen(self.discriminator), self._autocast():
            g_loss = self._generator_loss(loss)
        if not self._finite(g_loss, "generator loss"):
            self._scaler.update()  # closes the discriminator's scaler step
            return
        super()._update(g_loss)  # main optimizer, clipping, scaler.update(), scheduler
        self._sync_discriminator_lr()
        self._pending = None
        self.log(d_loss=float(d_loss.detach()), g_loss=float(g_loss.detach()))

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_payload(self) -> dict[str, Any]:
        payload = super()._checkpoint_payload()
        if self.optimizer_d is not None:
            payload["optimizer_d"] = self.optimizer_d.state_dict()
        return payload

    def _restore_training_state(self, payload: dict[str, Any]) -> None:
        super()._restore_training_state(payload)
        if self.optimizer_d is not None and "optimizer_d" in payload:
            self.optimizer_d.load_state_dict(payload["optimizer_d"])
            self._sync_discriminator_lr()
