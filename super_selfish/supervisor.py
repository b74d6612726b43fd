"""The :class:`Supervisor` base class: one training loop, per-method hooks.

A method subclasses :class:`Supervisor`, builds its parts (heads, momentum copies, queues as
buffers) in ``__init__`` and overrides :meth:`Supervisor._forward` (and, where it must,
:meth:`Supervisor._update`). Because a supervisor is an ``nn.Module``, every part it holds is
trained, saved, loaded and moved with ``.to(device)`` without per-method code: trainable
parameters are the ones with ``requires_grad``; momentum encoders are frozen copies; queues
and memory banks are buffers.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn

from . import __version__, augment, backbones, console, data, store
from .distributed import is_distributed, is_main_process, rank, world_size
from .errors import CheckpointError, ConfigError, DataError, DivergenceError, check

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("constant", "cosine")


def default_device() -> torch.device:
    """CUDA when available, else CPU; chosen at training time, never at import."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Callback:
    """Observer of a training run; override any of these (monitors, loggers, plots)."""

    def on_train_start(self, sup: "Supervisor") -> None: ...

    def on_step_end(self, sup: "Supervisor", step: int, metrics: Dict[str, float]) -> None: ...

    def on_epoch_end(self, sup: "Supervisor", record: Dict[str, Any]) -> None: ...

    def on_train_end(self, sup: "Supervisor", history: List[Dict[str, Any]]) -> None: ...


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked after each step, so a step is never cut."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    @contextmanager
    def installed(self) -> Iterator["_StopRequest"]:
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


class Supervisor(nn.Module):
    """Base of every self-supervised method.

    Args:
        dataset: anything :func:`super_selfish.data.dataset` accepts (may be ``None`` when the
            supervisor is only built to :meth:`load` a checkpoint).
        backbone: a name from :func:`super_selfish.backbones.available` or any ``nn.Module``.
        augment: augmentation preset name, spec or ``Views`` (default: the method's preset).
        image_size: side of the training views; default: the dataset's image size, else 32.
        norm: ``batch``, ``group`` or ``layer`` normalisation inside the backbone.
        seed: makes initialisation (and, by default, training) repeatable.
    """

    method: str = "supervisor"
    default_augment: Optional[str] = "simclr"
    needs_labels: bool = False

    def __init__(self, dataset: Any = None, backbone: str | nn.Module = "convnet-small", *,
                 augment: Any = None, image_size: Optional[int] = None, norm: str = "batch",
                 seed: Optional[int] = None, in_channels: int = 3):
        super().__init__()
        if seed is not None:
            check(isinstance(seed, int) and seed >= 0, "seed", seed, "a non-negative int")
            torch.manual_seed(seed)
        self.seed = seed
        self.dataset = data.dataset(dataset) if dataset is not None else None
        if self.dataset is not None:
            self._check_labels(self.dataset)
        if image_size is None:
            image_size = self._dataset_image_size() or 32
        check(isinstance(image_size, int) and image_size >= 8, "image_size", image_size,
              "an int of at least 8 pixels")
        self.image_size = image_size
        self.backbone = backbones.build(backbone, norm=norm, in_channels=in_channels,
                                        probe_size=image_size)
        self.augment_name = augment if isinstance(augment, str) else (
            self.default_augment if augment is None else type(augment).__name__)
        self.views = (augment if augment is not None and not isinstance(augment, str)
                      and callable(augment) else None)
        if self.views is None and self.augment_name is not None:
            self.views = self._build_views(augment or self.default_augment)
        self.hparams: Dict[str, Any] = {
            "backbone": self.backbone.name, "norm": norm, "image_size": image_size,
            "augment": self.augment_name, "in_channels": in_channels}
        self.history: List[Dict[str, Any]] = []
        self.epoch = 0
        self.global_step = 0
        self._placed = False
        self._ddp: Optional[nn.Module] = None
        self._step_metrics: Dict[str, float] = {}

    # ------------------------------------------------------------------ set-up helpers
    def _build_views(self, spec: Any) -> Any:
        """Augmentation views for this method; subclasses override to pass preset options."""
        return augment.build(spec, self.image_size)

    def _dataset_image_size(self) -> Optional[int]:
        if self.dataset is None or len(self.dataset) == 0:
            return None
        height, width = self.dataset[0][0].shape[-2:]
        if height != width:
            raise DataError(f"dataset images are {height}x{width}: pass a dataset of square "
                            "images or resize them (data.dataset(..., size=N)).")
        return int(height)

    def _check_labels(self, ds: data.ImageDataset) -> None:
        if self.needs_labels and not ds.has_labels:
            raise DataError(f"{type(self).__name__} needs labels, but the dataset yields none: "
                            "pass (images, labels) or a labelled Dataset.")

    def _record_hparams(self, **values: Any) -> None:
        """Store method hyper-parameters in checkpoints (and check them when loading)."""
        self.hparams.update(values)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def to(self, *args: Any, **kwargs: Any) -> "Supervisor":  # type: ignore[override]
        self._placed = True
        return super().to(*args, **kwargs)

    def get_backbone(self) -> backbones.Backbone:
        """The trained encoder: an ``nn.Module`` from images to feature vectors."""
        return self.backbone

    def log(self, **scalars: float) -> None:
        """Report extra per-step scalars (shown on the progress bar and in the history)."""
        for key, value in scalars.items():
            self._step_metrics[key] = float(value)

    def augment_views(self, images: torch.Tensor) -> List[torch.Tensor]:
        """This method's augmented float views of a uint8 batch, drawn from the run's generator."""
        return self.views(images, generator=getattr(self, "_aug_gen", None))

    def encode_views(self, views: Sequence[torch.Tensor], encoder: Optional[nn.Module] = None
                     ) -> List[torch.Tensor]:
        """Encode several views with one forward pass per view size (multi-crop friendly)."""
        encoder = self.backbone if encoder is None else encoder
        out: List[Optional[torch.Tensor]] = [None] * len(views)
        for size in dict.fromkeys(v.shape[-2:] for v in views):
            members = [i for i, v in enumerate(views) if v.shape[-2:] == size]
            features = encoder(torch.cat([views[i] for i in members])).chunk(len(members))
            for i, f in zip(members, features):
                out[i] = f
        return out  # type: ignore[return-value]

    def forward(self, batch: data.Batch) -> torch.Tensor:
        """Routes through ``_forward`` so DistributedDataParallel can wrap the supervisor."""
        return self._forward(batch)

    # ------------------------------------------------------------------ the entry point
    def supervise(self, lr: float = 1e-3, optimizer: Callable[..., torch.optim.Optimizer]
                  = torch.optim.Adam, epochs: int = 10, batch_size: int = 256,
                  shuffle: bool = True, num_workers: int = 0, name: str = "store/base",
                  pretrained: bool = False, lr_scheduler: str | Callable[..., Any] | None = None,
                  *, weight_decay: float = 0.0, warmup_epochs: float = 0.0,
                  seed: Optional[int] = None, device: Optional[str | torch.device] = None,
                  progress: bool = True, keep_last: int = 1, skip_nonfinite: bool = False,
                  grad_clip: Optional[float] = None, precision: str = "fp32",
                  channels_last: bool = False, compile: bool = False,
                  distributed: Optional[bool] = None, sync_batchnorm: Optional[bool] = None,
                  callbacks: Sequence[Callback] = (), save: bool = True,
                  resume: Optional[bool] = None) -> List[Dict[str, Any]]:
        """Train; returns the per-epoch history (also written to ``<name>/history.*``).

        ``pretrained=True`` (or ``resume=True``) continues the checkpoint ``name`` with its
        optimizer, scheduler, RNG and epoch. Ctrl-C/SIGTERM finish the current step, write a
        resumable checkpoint and return. A NaN/inf loss raises :class:`DivergenceError` and
        leaves the last good checkpoint untouched (``skip_nonfinite`` skips the batch instead).
        """
        self._validate_supervise(lr, epochs, batch_size, num_workers, weight_decay, precision,
                                 keep_last, warmup_epochs, lr_scheduler)
        if self.dataset is None:
            raise DataError(f"{type(self).__name__} was built without a dataset: pass one, "
                            f"e.g. {type(self).__name__}('cifar10-sample').")
        self.run_name = name
        self.interrupted = False
        self.save_checkpoints = save
        self.callbacks = list(callbacks)
        self._setup_runtime(device, distributed, sync_batchnorm, precision, channels_last,
                            compile)
        seed = self.seed if seed is None else seed
        self._data_gen = torch.Generator().manual_seed(
            seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_()))
        self._aug_gen = torch.Generator().manual_seed(self._data_gen.initial_seed() + 1)
        if seed is not None:
            torch.manual_seed(seed + 2)
        self._load_pretrained(name, bool(pretrained or resume))
        self._init_data_optimizer(lr, optimizer, batch_size, shuffle, num_workers,
                                  lr_scheduler, weight_decay=weight_decay,
                                  warmup_epochs=warmup_epochs, epochs=epochs)
        self._train_options = dict(progress=progress, keep_last=keep_last,
                                   skip_nonfinite=skip_nonfinite, grad_clip=grad_clip)
        self._epochs(epochs, name)
        return self.history

    def _validate_supervise(self, lr: float, epochs: int, batch_size: int, num_workers: int,
                            weight_decay: float, precision: str, keep_last: int,
                            warmup_epochs: float, lr_scheduler: Any) -> None:
        check(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0, "lr", lr,
              "a positive finite number such as 1e-3")
        check(isinstance(epochs, int) and epochs >= 0, "epochs", epochs, "a non-negative int")
        check(isinstance(batch_size, int) and batch_size >= 2, "batch_size", batch_size,
              "an int of at least 2")
        check(isinstance(num_workers, int) and num_workers >= 0, "num_workers", num_workers,
              "a non-negative int")
        check(weight_decay >= 0, "weight_decay", weight_decay, "a non-negative number")
        check(precision in PRECISIONS, "precision", precision, f"one of {PRECISIONS}")
        check(isinstance(keep_last, int) and keep_last >= 0, "keep_last", keep_last,
              "a non-negative int")
        check(warmup_epochs >= 0, "warmup_epochs", warmup_epochs, "a non-negative number")
        check(lr_scheduler is None or callable(lr_scheduler) or lr_scheduler in SCHEDULES,
              "lr_scheduler", lr_scheduler,
              f"None, one of {SCHEDULES} or a callable(optimizer) returning a scheduler")

    def _setup_runtime(self, device: Any, distributed: Optional[bool],
                       sync_batchnorm: Optional[bool], precision: str, channels_last: bool,
                       compile: bool) -> None:
        from . import distributed as dist_utils

        if distributed is None:
            distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if distributed:
            dist_utils.init_from_env()
            device = device or dist_utils.local_device()
        if device is not None:
            self.to(device)
        elif not self._placed:
            self.to(default_device())
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.body = torch.compile(self.backbone.body)
        self.precision = precision
        self._scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        if distributed:
            if sync_batchnorm is None:
                sync_batchnorm = True
            if sync_batchnorm:
                nn.SyncBatchNorm.convert_sync_batchnorm(self)
            ddp = nn.parallel.DistributedDataParallel(
                self, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False, find_unused_parameters=True)
            object.__setattr__(self, "_ddp", ddp)  # not a submodule: avoids a module cycle

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ hooks
    def _load_pretrained(self, name: str, pretrained: bool) -> None:
        """Restore weights, buffers and the epoch from ``name`` when ``pretrained``."""
        self._resume_state: Optional[Dict[str, Any]] = None
        self._resume_step = 0
        if pretrained:
            self._resume_state = self.load(name).checkpoint

    def _init_data_optimizer(self, lr: float, optimizer: Callable[..., torch.optim.Optimizer],
                             batch_size: int, shuffle: bool, num_workers: int,
                             lr_scheduler: Any, *, weight_decay: float = 0.0,
                             warmup_epochs: float = 0.0, epochs: int = 1) -> None:
        """Build the loader, the optimizer over every trainable part, and the scheduler."""
        sampler = None
        if is_distributed():
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(self.dataset, shuffle=shuffle, drop_last=True,
                                         seed=self._data_gen.initial_seed())
        self.loader = data.BatchLoader(self.dataset, batch_size, shuffle=shuffle,
                                       drop_last=True, num_workers=num_workers,
                                       generator=self._data_gen, sampler=sampler)
        params = self._param_groups(weight_decay)
        self.optimizer = optimizer(params, lr=lr)
        total = max(1, epochs * len(self.loader))
        self.total_steps = total
        self.scheduler = self._make_scheduler(lr_scheduler, total,
                                              int(warmup_epochs * len(self.loader)))
        if self._resume_state is not None:
            self._restore_training_state(self._resume_state)

    def _param_groups(self, weight_decay: float) -> List[Dict[str, Any]]:
        """Trainable parameters; biases and norm weights get no weight decay."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        if not decay and not no_decay:
            raise ConfigError(f"{type(self).__name__} has no trainable parameters.")
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def _make_scheduler(self, kind: Any, total: int, warmup: int) -> Any:
        if callable(kind):
            return kind(self.optimizer)
        if kind in (None, "constant") and warmup == 0:
            return None

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if kind == "cosine":
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            return 1.0

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def _epochs(self, epochs: int, name: str) -> None:
        """Run epochs from the current one; checkpoint after each, stop cleanly on a signal."""
        from tqdm.auto import tqdm

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
                bar = tqdm(total=len(self.loader), initial=skip, leave=False,
                           desc=f"{self.method} epoch {epoch + 1}/{epochs}",
                           disable=not (self._train_options["progress"] and is_main_process()))
                for step, batch in enumerate(self.loader):
                    if step < skip:
                        continue
                    loss = self._train_step(batch.to(self.device), epoch, step)
                    if loss is not None:
                        losses.append(loss)
                        n_images += len(batch.images) * world_size()
                    elapsed = time.perf_counter() - started
                    bar.set_postfix(loss=f"{loss if loss is not None else float('nan'):.4f}",
                                    lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                                    img_s=f"{n_images / max(elapsed, 1e-9):.0f}",
                                    refresh=False)
                    bar.update(1)
                    if stop.signal is not None:
                        bar.close()
                        self._stop_for_signal(name, epoch, step + 1, stop.signal)
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
        if not torch.isfinite(loss.detach()).all():
            if self._train_options["skip_nonfinite"]:
                console.warn(f"non-finite loss at epoch {epoch + 1}, step {step + 1}: "
                             "batch skipped (skip_nonfinite=True)")
                self.optimizer.zero_grad(set_to_none=True)
                return None
            raise DivergenceError(
                f"Loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} (global step "
                f"{self.global_step + 1}). Likely causes: a learning rate too high (now "
                f"{self.optimizer.param_groups[0]['lr']:.3g}), a temperature too low, or bad "
                "pixels in the data. The last good checkpoint was kept; pass "
                "skip_nonfinite=True to skip such batches instead.")
        self._update(loss)
        self.global_step += 1
        value = float(loss.detach())
        for cb in self.callbacks:
            cb.on_step_end(self, self.global_step, {"loss": value, **self._step_metrics})
        return value

    def _forward(self, batch: data.Batch) -> torch.Tensor:
        """Return the loss of one batch. Every method overrides this."""
        raise NotImplementedError(f"{type(self).__name__} must implement _forward(batch).")

    def _update(self, loss: torch.Tensor) -> None:
        """Backward, optional clipping, optimizer and scheduler step (per step)."""
        self.optimizer.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        clip = self._train_options["grad_clip"]
        if clip is not None:
            self._scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for p in self.parameters() if p.requires_grad], clip)
        self._scaler.step(self.optimizer)
        self._scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()

    # ------------------------------------------------------------------ epochs, history
    def _end_epoch(self, epoch: int, losses: List[float], n_images: int, seconds: float,
                   name: str) -> None:
        record: Dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": sum(losses) / len(losses) if losses else float("nan"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": n_images / max(seconds, 1e-9),
            "seconds": seconds,
            **{k: v for k, v in self._step_metrics.items()},
        }
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)
        self.history.append(record)
        if is_main_process():
            console.info(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in record.items()))
        if self.save_checkpoints:
            self.save(name)
            if is_main_process():
                best = min(r["loss"] for r in self.history)
                store.keep(name, epoch + 1, self._train_options["keep_last"],
                           is_best=record["loss"] <= best)
                self._write_history(name)

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
            self.save(name)
        self._resume_step_to_save = 0
        console.warn(f"stopped by {signal.Signals(signum).name} at epoch {epoch + 1}, step "
                     f"{next_step}; resumable checkpoint written to "
                     f"{store.checkpoint_path(name)}. Continue with "
                     f"supervise(..., name={name!r}, pretrained=True).")

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_payload(self) -> Dict[str, Any]:
        mid_epoch = getattr(self, "_resume_step_to_save", 0)
        payload: Dict[str, Any] = {
            "format": store.FORMAT,
            "library_version": __version__,
            "method": self.method,
            "hparams": dict(self.hparams),
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "epoch": self.epoch,
            "global_step": self.global_step,
            "step_in_epoch": mid_epoch,
            "history": [dict(r) for r in self.history],
        }
        if hasattr(self, "optimizer"):
            payload["optimizer"] = self.optimizer.state_dict()
            payload["scheduler"] = self.scheduler.state_dict() if self.scheduler else None
            payload["scaler"] = self._scaler.state_dict()
            payload["rng"] = {
                "torch": torch.get_rng_state(),
                "data": self._epoch_seed_state if mid_epoch else self._data_gen.get_state(),
                "augment": self._aug_gen.get_state(),
            }
        return payload

    def save(self, name: str = "store/base") -> str:
        """Write one checkpoint file (atomically) with everything needed to resume."""
        if not is_main_process():
            return str(store.checkpoint_path(name))
        return str(store.write(self._checkpoint_payload(), name))

    def load(self, name: str = "store/base", *, strict: bool = True) -> "Supervisor":
        """Load weights, buffers, epoch and history from ``name``; returns ``self``.

        Raises :class:`CheckpointError` when the file belongs to another method or backbone.
        """
        if is_distributed():
            torch.distributed.barrier()
        payload = store.read(name)
        path = store.checkpoint_path(name)
        if payload["method"] != self.method:
            raise CheckpointError(f"{str(path)!r} was written by method {payload['method']!r}, "
                                  f"but this is {self.method!r} ({type(self).__name__}).")
        theirs = payload["hparams"].get("backbone")
        if theirs != self.hparams["backbone"]:
            raise CheckpointError(f"{str(path)!r} holds backbone {theirs!r}, but this "
                                  f"supervisor uses {self.hparams['backbone']!r}: build it "
                                  f"with backbone={theirs!r}.")
        try:
            self.load_state_dict(payload["state"], strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(f"{str(path)!r} does not fit this {type(self).__name__} "
                                  f"(different hyper-parameters? saved {payload['hparams']}): "
                                  f"{exc}") from exc
        self.epoch = payload["epoch"]
        self.global_step = payload["global_step"]
        self.history = list(payload.get("history", []))
        self.checkpoint = payload  # optimizer/RNG state, used when resuming
        return self

    def _restore_training_state(self, payload: Dict[str, Any]) -> None:
        if "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None and payload.get("scheduler") is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            self._scaler.load_state_dict(payload["scaler"])
            rng = payload["rng"]
            torch.set_rng_state(rng["torch"])
            self._data_gen.set_state(rng["data"])
            self._aug_gen.set_state(rng["augment"])
        self._resume_step = payload.get("step_in_epoch", 0)


class CombinedNet(nn.Module):
    """A (pre-trained) backbone followed by a downstream head, e.g. a linear classifier.

    With ``freeze_backbone`` the backbone stays in eval mode and receives no gradients.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, freeze_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> "CombinedNet":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.freeze_backbone:
            with torch.no_grad():
                features = self.backbone(images)
        else:
            features = self.backbone(images)
        return self.head(features)
