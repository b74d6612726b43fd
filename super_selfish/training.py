"""The training loop and its runtime: devices, DDP, mixed precision, compile, signals, history.

:class:`TrainingLoop` is a mixin of :class:`super_selfish.Supervisor`: it runs the epochs
(the ``_epochs`` hook), one guarded step at a time (``_train_step``: forward, divergence check,
the ``_update`` hook), writes the per-epoch history and checkpoints, and sets up and tears down
what a run needs around the model (device placement, process group and SyncBatchNorm,
channels-last, ``torch.compile``, the AMP scaler). Methods never override these; they override
the hooks in :mod:`super_selfish.supervisor`.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn as nn

from . import console, data, store
from . import distributed as dist_utils
from .distributed import is_main_process, rank, world_size
from .errors import DivergenceError, check

if TYPE_CHECKING:
    from .supervisor import Supervisor

PRECISIONS = ("fp32", "bf16", "fp16")
_RANK_SEED_STRIDE = 7919  # seed offset between processes of a distributed run


def validate_device(device: Any) -> None:
    """Raise :class:`ConfigError` unless ``device`` is None or a device usable here.

    Args:
        device: None, a ``torch.device`` or a string such as ``"cpu"`` or ``"cuda:1"``.

    Raises:
        ConfigError: the string does not parse, or names CUDA (or a CUDA index) this machine
            does not have.
    """
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    check(parsed is not None, "device", device, "None, 'cpu', 'cuda' or 'cuda:N'")
    check(
        parsed.type != "cuda" or torch.cuda.is_available(),
        "device",
        device,
        "'cpu' (no CUDA device is available here)",
    )
    count = torch.cuda.device_count() if parsed.type == "cuda" else 0
    check(
        parsed.type != "cuda" or parsed.index is None or parsed.index < count,
        "device",
        device,
        f"'cpu' or 'cuda:N' with N < {count} (CUDA devices here)",
    )


def default_device() -> torch.device:
    """CUDA when available, else CPU; chosen at training time, never at import.

    Returns:
        ``torch.device("cuda")`` or ``torch.device("cpu")``.
    """
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to_channels_last(_module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: 4-d inputs of the backbone body in channels-last memory format."""
    return tuple(
        a.contiguous(memory_format=torch.channels_last)
        if isinstance(a, torch.Tensor) and a.ndim == 4
        else a
        for a in args
    )


class Callback:
    """Observer of a training run; override any of these (monitors, loggers, plots).

    Every hook receives the supervisor being trained and does nothing by default.
    """

    def on_train_start(self, sup: Supervisor) -> None:
        """Called once the run is set up (model, data, optimizer), before the first step.

        Args:
            sup: the supervisor being trained.
        """

    def on_step_end(self, sup: Supervisor, step: int, metrics: dict[str, float]) -> None:
        """Called after each optimizer step.

        Args:
            sup: the supervisor being trained.
            step: the global step just completed.
            metrics: the step's scalars (the loss and whatever the method logs).
        """

    def on_epoch_end(self, sup: Supervisor, record: dict[str, Any]) -> None:
        """Called at the end of each epoch, before the record is written to the history.

        Args:
            sup: the supervisor being trained.
            record: the epoch's record (epoch, loss, lr, ...); callbacks may add fields.
        """

    def on_train_end(self, sup: Supervisor, history: list[dict[str, Any]]) -> None:
        """Called once after the last epoch (not when a signal stops the run early).

        Args:
            sup: the supervisor being trained.
            history: every epoch record of the run.
        """


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked after each step, so a step is never cut."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    @contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, _frame: Any) -> None:
            if self.signal is not None:  # a second Ctrl-C stops at once
                signal.default_int_handler(signum, _frame)
            self.signal = signum

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


class TrainingLoop:
    """Epochs, steps, history and the runtime around them (a mixin of ``Supervisor``)."""

    if TYPE_CHECKING:  # the Supervisor's attributes, for type checkers reading the mixin alone

        def __getattr__(self, name: str) -> Any: ...

    def _seed_run(self, seed: Optional[int], distributed: bool) -> None:
        """The run's random streams. Data order: one seed for all processes (rank 0's when
        drawn), so the distributed split agrees. Augmentations and the global RNG: a distinct
        stream per process.
        """
        data_seed = seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_())
        if seed is None and distributed:
            data_seed = dist_utils.broadcast_int(data_seed)
        self._data_gen = torch.Generator().manual_seed(data_seed)
        self._aug_gen = torch.Generator().manual_seed(
            self._data_gen.initial_seed() + 1 + _RANK_SEED_STRIDE * rank()
        )
        if seed is not None:
            torch.manual_seed(seed + 2 + _RANK_SEED_STRIDE * rank())

    def _setup_runtime(
        self,
        device: Any,
        distributed: Optional[bool],
        sync_batchnorm: Optional[bool],
        precision: str,
        channels_last: bool,
        compile: bool | dict[str, Any],
    ) -> None:
        """Device, process group, SyncBN, channels-last, compile, AMP scaler and DDP wrapper.

        Runs before the optimizer is built: SyncBN conversion keeps the same Parameter objects,
        so the optimizer (and DDP, wrapped last) see exactly the tensors used in forward.
        """
        from . import distributed as dist_utils

        if distributed is None:  # automatic under torchrun (WORLD_SIZE > 1) or a user's group
            distributed = dist_utils.launched_distributed()
        if distributed:
            if device is None or (
                torch.device(device).type == "cuda" and torch.device(device).index is None
            ):
                device = dist_utils.local_device()  # cuda:LOCAL_RANK, else the CPU
            dist_utils.init_from_env(device)
        if device is not None:
            self.to(device)
        elif not self._placed:
            self.to(default_device())
        if channels_last:
            self.to(memory_format=torch.channels_last)
            if getattr(self, "_channels_last_hook", None) is None:
                self._channels_last_hook = self.backbone.body.register_forward_pre_hook(
                    _to_channels_last
                )
        if compile and not getattr(self, "_compiled", False):
            # In place (nn.Module.compile): parameter names, hence checkpoints, are unchanged.
            self.backbone.body.compile(**(compile if isinstance(compile, dict) else {}))
            self._compiled = True
        self.precision = precision
        self._scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        if distributed and dist_utils.world_size() > 1:
            if sync_batchnorm is None:
                sync_batchnorm = True
            if sync_batchnorm:  # same Parameter objects: the optimizer, built next, sees them
                dist_utils.convert_sync_batchnorm(self, device=self.device)
            # Parameters and buffers are broadcast from rank 0 here; not a submodule (no cycle).
            object.__setattr__(self, "_ddp", dist_utils.ddp_wrap(self))
        else:
            object.__setattr__(self, "_ddp", None)

    def _teardown_runtime(self) -> None:
        """End of ``supervise``: drop the DDP wrapper and turn SyncBatchNorm back into
        BatchNorm (same tensors), so the trained model can be evaluated or fine-tuned in one
        process without waiting for the others. The process group is left to the caller.
        """
        loader = getattr(self, "loader", None)
        if loader is not None:  # end the persistent loader workers
            loader.close()
        if self._ddp is not None:
            object.__setattr__(self, "_ddp", None)
            dist_utils.revert_sync_batchnorm(self)

    def _splits_data(self) -> bool:
        """Whether each process trains on its own share of the data: DistributedDataParallel
        from ``supervise``, or from another training loop (Lightning) that says so.
        """
        return self._ddp is not None or self._external_ddp

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _epochs(self, epochs: int, name: str) -> None:
        """Run epochs from the current one; checkpoint after each, stop cleanly on a signal."""
        start_epoch, skip = self.epoch, self._resume_step
        for cb in self.callbacks:
            cb.on_train_start(self)
        with _StopRequest().installed() as stop:
            for epoch in range(start_epoch, epochs):
                self._epoch_seed_state = self._data_gen.get_state()
                if isinstance(self.loader.sampler, torch.utils.data.DistributedSampler):
                    self.loader.sampler.set_epoch(epoch)
                self.train()
                losses, n_images, started = [], 0, time.perf_counter()
                if skip:  # resumed mid-epoch: the epoch's loss includes the steps done before
                    losses = list(getattr(self, "_resume_losses", []))
                self._epoch_losses = losses
                bar = console.progress_bar(
                    total=len(self.loader),
                    initial=skip,
                    leave=False,
                    desc=f"{self.method} epoch {epoch + 1}/{epochs}",
                    disable=not (self._train_options["progress"] and is_main_process()),
                )
                for step, batch in enumerate(self.loader):
                    if step < skip:
                        continue
                    loss = self._train_step(batch.to(self.device), epoch, step)
                    if loss is not None:
                        losses.append(loss)
                        n_images += len(batch.images) * world_size()
                    elapsed = time.perf_counter() - started
                    bar.set_postfix(
                        loss=f"{loss if loss is not None else float('nan'):.4f}",
                        lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                        img_s=f"{n_images / max(elapsed, 1e-9):.0f}",
                        refresh=False,
                    )
                    bar.update(1)
                    stop_now = stop.signal is not None
                    if self._ddp is not None:  # every process stops after the same step
                        stop_now = dist_utils.any_process(stop_now)
                    if stop_now:
                        bar.close()
                        self._stop_for_signal(name, epoch, step + 1, stop.signal or signal.SIGTERM)
                        return
                bar.close()
                skip = 0
                self.epoch = epoch + 1
                self._end_epoch(epoch, losses, n_images, time.perf_counter() - started, name)
        for cb in self.callbacks:
            cb.on_train_end(self, self.history)

    def _train_step(self, batch: data.Batch, epoch: int, step: int) -> Optional[float]:
        """Forward, divergence guard, update; returns the loss value (None when skipped)."""
        self._step_metrics = {}
        with self._autocast():
            loss = self._ddp(batch) if self._ddp is not None else self._forward(batch)
        finite = bool(torch.isfinite(loss.detach()).all())
        if self._splits_data():  # all processes must skip (or stop) together, else DDP hangs
            finite = dist_utils.all_processes(finite)
        if not finite:
            if self._train_options["skip_nonfinite"]:
                self._check_finite_state(
                    f"epoch {epoch + 1}, step {step + 1}", parameters_only=True
                )
                console.warn(
                    f"non-finite loss at epoch {epoch + 1}, step {step + 1}: "
                    "batch skipped (skip_nonfinite=True)"
                )
                self.optimizer.zero_grad(set_to_none=True)
                return None
            raise DivergenceError(
                f"Loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} (global step "
                f"{self.global_step + 1}). Likely causes: a learning rate too high (now "
                f"{self.optimizer.param_groups[0]['lr']:.3g}), a temperature too low, or bad "
                "pixels in the data. The last good checkpoint was kept; pass "
                "skip_nonfinite=True to skip such batches instead."
            )
        self._update(loss)
        if getattr(self, "_ema", None) is not None:
            self._update_ema()  # supervise(ema=...): the Polyak average of the backbone
        self.global_step += 1
        value = float(loss.detach())
        for cb in self.callbacks:
            cb.on_step_end(self, self.global_step, {"loss": value, **self._step_metrics})
        return value

    # ------------------------------------------------------------------ epochs, history
    def _check_finite_state(self, where: str, parameters_only: bool = False) -> None:
        """Raise :class:`DivergenceError` (nothing saved) when weights or buffers hold NaN/inf."""
        tensors = self.named_parameters() if parameters_only else self.state_dict().items()
        bad = [k for k, v in tensors if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise DivergenceError(
                f"Non-finite values in {len(bad)} weight/buffer tensor(s) at {where} (e.g. "
                f"{', '.join(bad[:3])}). Likely causes: a learning rate too high (now "
                f"{self.optimizer.param_groups[0]['lr']:.3g}), a temperature too low, or "
                "exploding gradients (try grad_clip=1.0). Nothing was saved; the last good "
                "checkpoint was kept."
            )

    def _end_epoch(
        self, epoch: int, losses: list[float], n_images: int, seconds: float, name: str
    ) -> None:
        self._check_finite_state(f"the end of epoch {epoch + 1}")
        loss_sum, loss_count = sum(losses), len(losses)
        if self._splits_data():  # the epoch loss is the mean over every process's steps
            loss_sum, loss_count = dist_utils.all_reduce_sum(loss_sum, loss_count)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": loss_sum / loss_count if loss_count else float("nan"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": n_images / max(seconds, 1e-9),
            "seconds": seconds,
            **{k: v for k, v in self._step_metrics.items()},
            **self._recipe_record(),
        }
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)
        self.history.append(record)
        if is_main_process():
            quiet = set(self._recipe_record())  # the same every epoch: in the history only
            console.info(
                ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in record.items()
                    if k not in quiet
                )
            )
        if self.save_checkpoints:
            self.save(name)
            if is_main_process():
                best = min(
                    (r["loss"] for r in self.history if math.isfinite(r["loss"])), default=math.inf
                )  # an epoch whose batches were all skipped is NaN
                store.keep(
                    name,
                    epoch + 1,
                    self._train_options["keep_last"],
                    is_best=self._train_options["keep_best"]
                    and math.isfinite(record["loss"])
                    and record["loss"] <= best,
                )
                self._write_history(name)
            if self._ddp is not None:
                dist_utils.barrier()  # nobody reads the run folder before rank 0 is done

    def _write_history(self, name: str) -> None:
        folder = store.run_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "history.json", "w") as handle:
            json.dump(self.history, handle, indent=1)
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        with open(folder / "history.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)

    def _stop_for_signal(self, name: str, epoch: int, next_step: int, signum: int) -> None:
        self.interrupted = True
        self._resume_step_to_save = next_step
        if self.save_checkpoints:
            self._check_finite_state(f"the interruption (epoch {epoch + 1}, step {next_step})")
            self.save(name)
            if self._ddp is not None:
                dist_utils.barrier()
        self._resume_step_to_save = 0
        console.warn(
            f"stopped by {signal.Signals(signum).name} at epoch {epoch + 1}, step "
            f"{next_step}; resumable checkpoint written to "
            f"{store.checkpoint_path(name)}. Continue with "
            f"supervise(..., name={name!r}, pretrained=True)."
        )
