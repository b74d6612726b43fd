"""Train any method under PyTorch Lightning (the ``lightning`` extra).

.. code-block:: python

    import lightning
    from super_selfish import BYOLSupervisor
    from super_selfish.lightning import SupervisorModule

    module = SupervisorModule(BYOLSupervisor("cifar10-sample"), batch_size=256, seed=0)
    lightning.Trainer(max_epochs=10).fit(module)
    backbone = module.supervisor.get_backbone()

:class:`SupervisorModule` runs the supervisor's own training step, so everything a method does
beyond backward and step stays as in ``supervise()``: momentum (EMA) updates after each step,
queues and memory banks, the learning-rate schedule, warm-up and the schedules that follow
``global_step`` (EMA momentum, DINO's teacher temperature), the data order and augmentations
drawn from the run's seed. Lightning does the rest: devices, precision (``"bf16-mixed"``,
``"16-mixed"``; backward and the optimizer step go through the Trainer), DDP (each process
gets its share of the data), loggers, checkpoints. With the same seed on the CPU a run gives
the weights of ``supervise()`` (``tests/integrations/test_integrations.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch

from .extras import require
from .supervisor import Callback, Supervisor

L = require("lightning", "lightning", "super_selfish.lightning.SupervisorModule")


class _TrainerSteps:
    """Stands in for the supervisor's gradient scaler under Lightning: ``Supervisor._update``
    then does its backward and optimizer step through the Trainer (precision plugin,
    strategy, step counter), and the rest of its update (scheduler, EMA) as always.
    """

    def __init__(self, module: SupervisorModule):
        self.module = module

    def scale(self, loss: torch.Tensor) -> _TrainerSteps._Backward:
        return self._Backward(self.module, loss)

    class _Backward:
        def __init__(self, module: SupervisorModule, loss: torch.Tensor):
            self.module, self.loss = module, loss

        def backward(self) -> None:
            self.module.manual_backward(self.loss)

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Clipping happens in ``on_before_optimizer_step``, after Lightning unscaled."""

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.module.optimizers().step()

    def update(self) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SupervisorModule(L.LightningModule):  # type: ignore[misc,name-defined]
    """A ``lightning.LightningModule`` that trains ``supervisor`` as ``supervise()`` would.

    Args:
        supervisor: any method, built with its dataset.
        lr, optimizer, batch_size, shuffle, num_workers, lr_scheduler, weight_decay,
            warmup_epochs, seed, grad_clip, skip_nonfinite, callbacks: as in
            :meth:`Supervisor.supervise <super_selfish.supervisor.Supervisor.supervise>`.
            The schedules span the Trainer's ``max_epochs`` (or ``max_steps`` when set).
        name: the run name (``sup.run_name``, used by callbacks that write files).

    The trained parts stay in ``module.supervisor``; ``supervisor.history`` gets one record
    per epoch, and ``supervisor.save(name)`` writes a super_selfish checkpoint. Lightning
    checkpoints hold every weight and buffer (momentum copies, queues, banks), the optimizer
    and scheduler, and the run's step, history and random streams.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        lr: Optional[float] = None,
        optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
        batch_size: int = 256,
        shuffle: bool = True,
        num_workers: Optional[int] = None,
        lr_scheduler: Any = None,
        *,
        weight_decay: Optional[float] = None,
        warmup_epochs: Optional[float] = None,
        seed: Optional[int] = None,
        grad_clip: Optional[float] = None,
        skip_nonfinite: bool = False,
        callbacks: Sequence[Callback] = (),
        name: str = "store/lightning",
    ):
        super().__init__()
        self.supervisor = supervisor
        self.automatic_optimization = False
        # None: from the method's recipe, resolved in setup() once the run's length is known
        supervisor._validate_supervise(
            lr, 1, batch_size, num_workers, weight_decay, "fp32", 1, warmup_epochs, lr_scheduler
        )
        self.options = dict(
            lr=lr,
            optimizer=optimizer,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            lr_scheduler=lr_scheduler,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
        )
        self.seed, self.grad_clip, self.skip_nonfinite = seed, grad_clip, skip_nonfinite
        self.sup_callbacks: list[Callback] = list(callbacks)
        self.run_name = name
        self._epoch_losses: list[float] = []
        self._epoch_images = 0
        self._epoch_started = 0.0

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Build the loader, optimizer and scheduler exactly as ``supervise()`` does."""
        if stage != "fit":
            return
        sup, trainer = self.supervisor, self.trainer
        if sup.dataset is None:
            raise ValueError(f"{type(sup).__name__} was built without a dataset: pass one.")
        sup.run_name, sup.interrupted, sup.save_checkpoints = self.run_name, False, False
        sup.callbacks = self.sup_callbacks
        sup.precision = "fp32"  # Lightning's precision plugin autocasts the training step
        sup._scaler = _TrainerSteps(self)  # type: ignore[assignment]
        sup._external_ddp = trainer.world_size > 1
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        keys = ("lr", "optimizer", "weight_decay", "warmup_epochs", "lr_scheduler")
        resolved = sup.recipe().resolve(
            self.options["batch_size"], epochs, **{k: self.options[k] for k in keys}
        )
        self.options.update({k: resolved[k] for k in keys})
        sup.run_options = {
            **{k: resolved[k] for k in keys},
            "optimizer": resolved["optimizer_name"],
            "lr_scheduler": str(resolved["lr_scheduler"]),
            "recipe": sup.recipe().describe(),
            "from_recipe": resolved["from_recipe"],
        }
        sup.base_lr = self.options["lr"]
        sup._seed_run(sup.seed if self.seed is None else self.seed, trainer.world_size > 1)
        sup._load_pretrained(self.run_name, False)
        sup._init_data_optimizer(epochs=epochs, **self.options)
        if trainer.max_steps and trainer.max_steps > 0:  # the schedules end at max_steps
            sup.total_steps = trainer.max_steps
            warmup = int(self.options["warmup_epochs"] * len(sup.loader))
            sup.scheduler = sup._make_scheduler(
                self.options["lr_scheduler"], trainer.max_steps, warmup
            )
        sup._train_options = dict(
            progress=False, keep_last=1, skip_nonfinite=self.skip_nonfinite, grad_clip=None
        )

    def configure_optimizers(self) -> Any:
        """The supervisor's optimizer and per-step scheduler (so Lightning saves them)."""
        sup = self.supervisor
        if sup.scheduler is None:
            return sup.optimizer
        # Stepped by the supervisor after every optimizer step; listed here to be saved.
        return {
            "optimizer": sup.optimizer,
            "lr_scheduler": {"scheduler": sup.scheduler, "interval": "step"},
        }

    def train_dataloader(self) -> Any:
        """The supervisor's loader (its batching, sampler and device views)."""
        return self.supervisor.loader

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """Move a batch with its own ``to`` (JPEG batches decode on the device)."""
        return batch.to(device)  # Batch, or EncodedBatch (JPEGs decoded on the device)

    # ------------------------------------------------------------------ training
    def on_train_start(self) -> None:
        """Run the supervisor's callbacks' ``on_train_start``."""
        for cb in self.supervisor.callbacks:
            cb.on_train_start(self.supervisor)

    def on_train_epoch_start(self) -> None:
        """Per-epoch set-up as ``supervise()`` does it: random streams, sampler epoch, counters."""
        sup = self.supervisor
        sup._epoch_seed_state = sup._data_gen.get_state()
        sampler = getattr(sup.loader, "sampler", None)
        if isinstance(sampler, torch.utils.data.DistributedSampler):
            sampler.set_epoch(self.current_epoch)
        self._epoch_losses, self._epoch_images = [], 0
        sup._epoch_losses = self._epoch_losses
        self._epoch_started = time.perf_counter()

    def training_step(self, batch: Any, batch_idx: int) -> Optional[torch.Tensor]:
        """One supervisor step (forward, backward, step, momentum); logs its metrics."""
        sup = self.supervisor
        loss = sup._train_step(batch, self.current_epoch, batch_idx)
        if loss is None:  # a skipped non-finite batch
            return None
        self._epoch_losses.append(loss)
        self._epoch_images += len(batch.images) * self.trainer.world_size
        self.log("loss", loss, prog_bar=True, batch_size=len(batch.images))
        for key, value in sup._step_metrics.items():
            self.log(key, value, batch_size=len(batch.images))
        return torch.tensor(loss)

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Gradient clipping, after Lightning has unscaled fp16 gradients."""
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.supervisor.parameters() if p.requires_grad], self.grad_clip
            )

    def on_train_epoch_end(self) -> None:
        """Close the epoch as ``supervise()`` does (history record, callbacks) and log it."""
        sup = self.supervisor
        sup.epoch = self.current_epoch + 1
        sup._end_epoch(
            self.current_epoch,
            self._epoch_losses,
            self._epoch_images,
            time.perf_counter() - self._epoch_started,
            self.run_name,
        )
        record = sup.history[-1]
        numbers = {
            f"epoch/{k}": float(v)
            for k, v in record.items()
            if isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and k != "epoch"
        }
        if numbers:
            self.log_dict(numbers)

    def on_train_end(self) -> None:
        """Run the callbacks' ``on_train_end`` and close the loader."""
        sup = self.supervisor
        for cb in sup.callbacks:
            cb.on_train_end(sup, sup.history)
        sup.loader.close()

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the supervisor's run state (epoch, step, history, random streams)."""
        sup = self.supervisor
        checkpoint["super_selfish"] = {
            "method": sup.method,
            "hparams": dict(sup.hparams),
            "epoch": sup.epoch,
            "global_step": sup.global_step,
            "history": [dict(r) for r in sup.history],
            "rng": {"data": sup._data_gen.get_state(), "augment": sup._aug_gen.get_state()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the run state saved by :meth:`on_save_checkpoint`."""
        state = checkpoint.get("super_selfish")
        if state is None:
            return
        sup = self.supervisor
        sup.epoch, sup.global_step = state["epoch"], state["global_step"]
        sup.history = list(state["history"])
        if hasattr(sup, "_data_gen"):
            sup._data_gen.set_state(state["rng"]["data"])
            sup._aug_gen.set_state(state["rng"]["augment"])
