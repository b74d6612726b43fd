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
import inspect
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

from . import __version__, augment, backbones, console, data, momentum, store
from . import distributed as dist_utils
from . import recipes as recipes_module
from .distributed import is_main_process, rank, world_size
from .errors import CheckpointError, ConfigError, DataError, DivergenceError, check, unknown_name

PRECISIONS = ("fp32", "bf16", "fp16")
_RANK_SEED_STRIDE = 7919  # seed offset between processes of a distributed run
SCHEDULES = ("constant", "cosine")


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _validate_run_options(name: Any, optimizer: Any, grad_clip: Any, device: Any, seed: Any,
                          callbacks: Any) -> None:
    """Checks of ``supervise`` arguments beyond the numeric ones (before anything is built)."""
    check(isinstance(name, (str, os.PathLike)) and os.fspath(name).strip() != ""
          and os.path.basename(os.fspath(name).rstrip("/\\")) not in ("", ".", ".."),
          "name", name, "a run name or path such as 'store/simclr' (the checkpoint is "
          "<name>.pt)")
    check(callable(optimizer), "optimizer", optimizer,
          "a name (adam, adamw, sgd, lars) or a callable(params, lr=...) returning an "
          "optimizer, e.g. torch.optim.Adam")
    check(grad_clip is None or (_is_number(grad_clip) and grad_clip > 0), "grad_clip",
          grad_clip, "None or a positive max gradient norm such as 1.0")
    check(seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0),
          "seed", seed, "None or a non-negative int")
    check(all(isinstance(cb, Callback) for cb in callbacks), "callbacks", callbacks,
          "a sequence of super_selfish.Callback instances")
    validate_device(device)


def validate_device(device: Any) -> None:
    """Raise :class:`ConfigError` unless ``device`` is None or a device usable here."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    check(parsed is not None, "device", device, "None, 'cpu', 'cuda' or 'cuda:N'")
    check(parsed.type != "cuda" or torch.cuda.is_available(), "device", device,
          "'cpu' (no CUDA device is available here)")
    count = torch.cuda.device_count() if parsed.type == "cuda" else 0
    check(parsed.type != "cuda" or parsed.index is None or parsed.index < count, "device",
          device, f"'cpu' or 'cuda:N' with N < {count} (CUDA devices here)")


def _init_arguments(cls: type) -> Dict[str, inspect.Parameter]:
    """Keyword arguments that ``cls(...)`` accepts: the named parameters of every
    ``__init__`` along its Supervisor hierarchy (a subclass passes ``**kwargs`` up), the
    most derived definition first."""
    accepted: Dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass) and issubclass(klass, Supervisor):
            for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self":
                    accepted.setdefault(p.name, p)
    return accepted


def _unknown_argument(cls: type, name: str) -> Exception:
    """The error for ``cls(..., name=...)`` when no ``__init__`` in its hierarchy takes ``name``."""
    return unknown_name(f"{cls.__name__} argument", name, _init_arguments(cls))


def _read_run(name: str) -> Dict[str, Any]:
    """A training checkpoint (:func:`store.read`); a backbone-only file is refused."""
    payload = store.read(name)
    if payload.get("kind") == backbones.BACKBONE_FILE:
        raise CheckpointError(f"{str(store.checkpoint_path(name))!r} holds a backbone alone "
                              "(written by save_backbone): load it with backbones.load(path).")
    return payload


def _callable_name(fn: Any) -> str:
    """``torch.optim.Adam``-style name of an optimizer or scheduler factory."""
    fn = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _registered(method: str) -> Optional[type]:
    from .methods import registry  # the registry imports the methods, which import this

    try:
        return registry.get(method)
    except KeyError:
        return None


def _plain_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """``run_options`` as checkpoint-safe values (numbers, strings, lists, dicts, None)."""
    def plain(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return str(v)
    return {str(k): plain(v) for k, v in options.items()}


def _remove_if_empty(folder: "os.PathLike[str]") -> None:
    try:
        os.rmdir(folder)
    except OSError:  # not empty (a user's files, TensorBoard events) or already gone
        pass


def default_device() -> torch.device:
    """CUDA when available, else CPU; chosen at training time, never at import."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to_channels_last(_module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: 4-d inputs of the backbone body in channels-last memory format."""
    return tuple(a.contiguous(memory_format=torch.channels_last)
                 if isinstance(a, torch.Tensor) and a.ndim == 4 else a for a in args)


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
            supervisor is only built to :meth:`load` a checkpoint). Labels are optional: a
            method that needs none (``needs_labels = False``, every self-supervised method)
            accepts a labelled dataset and ignores the labels; a method that needs them raises
            :class:`DataError` when the dataset has none. Grayscale, RGBA and 16-bit images are
            converted to 8-bit RGB (with a one-time note); NaN/inf pixels, floats outside
            [0, 1] and other dtypes are refused with :class:`DataError`.
        backbone: a name from :func:`super_selfish.backbones.available` or any ``nn.Module``.
        augment: augmentation preset name, spec or ``Views`` (default: the method's preset).
        image_size: side of the training views; default: the dataset's image size, else 32.
        norm: ``batch``, ``group`` or ``layer`` normalisation inside the backbone.
        seed: makes initialisation (and, by default, training) repeatable.
    """

    method: str = "supervisor"
    default_augment: Optional[str] = "simclr"
    needs_labels: bool = False
    #: A registered method trains on its recipe, ``super_selfish.recipes.RECIPES[method]``
    #: (see :meth:`recipe`). ``default_lr`` / ``default_optimizer`` are the constant-rate Adam
    #: setting that a class without a recipe trains with (a user-defined method), and that a
    #: subclass setting either of them in its own body chooses instead of its parent's recipe.
    #: The built-in methods' ``default_lr`` is the better of 1e-3 and 3e-4 for Adam in
    #: ``benchmarks/methods_knn.py`` (the README's earlier table).
    default_lr: float = 1e-3
    default_optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam
    #: A :class:`~super_selfish.recipes.Recipe` set in a class body replaces the registered one.
    default_recipe: Optional[recipes_module.Recipe] = None
    #: ``get_backbone(which=...)`` choices: role -> attribute holding that encoder.
    backbone_roles: Dict[str, str] = {"online": "backbone"}
    #: The role ``get_backbone()`` returns without ``which``.
    default_backbone: str = "online"
    #: Channels of the images this method reads; None: the backbone's ``in_channels``. Methods
    #: that split colour themselves (CMC, split-brain: RGB into L and ab) set 3.
    data_channels: Optional[int] = None

    def __init__(self, dataset: Any = None, backbone: str | nn.Module = "convnet-small", *,
                 augment: Any = None, image_size: Optional[int] = None, norm: str = "batch",
                 seed: Optional[int] = None, in_channels: int = 3, **unknown: Any):
        super().__init__()
        if unknown:  # a misspelt option: name it and suggest the closest one (not a TypeError)
            raise _unknown_argument(type(self), next(iter(unknown)))
        if seed is not None:
            check(isinstance(seed, int) and seed >= 0, "seed", seed, "a non-negative int")
            torch.manual_seed(seed)
        self.seed = seed
        check(isinstance(in_channels, int) and not isinstance(in_channels, bool)
              and in_channels > 0, "in_channels", in_channels,
              "a positive int: 3 for RGB, 1 for grayscale, 4 or more for multi-channel images")
        channels = self.data_channels or in_channels
        self.dataset = data.dataset(dataset, channels=channels) if dataset is not None else None
        if self.dataset is not None:
            self._check_labels(self.dataset)
        if image_size is None:
            image_size = self._dataset_image_size() or 32
            if image_size < 8:
                raise DataError(f"dataset images are {image_size}x{image_size} pixels: expected "
                                "at least 8x8 (resize them with data.dataset(..., size=N) or "
                                "pass image_size=N).")
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
        self._external_ddp = False  # data parallel under another loop (super_selfish.lightning)
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
    def image_channels(self) -> int:
        """Channels of the images this method reads (and ``get_backbone()`` takes)."""
        return self.data_channels or self.hparams["in_channels"]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def to(self, *args: Any, **kwargs: Any) -> "Supervisor":  # type: ignore[override]
        self._placed = True
        return super().to(*args, **kwargs)

    @classmethod
    def recipe(cls) -> recipes_module.Recipe:
        """The training recipe :meth:`supervise` uses for arguments left to None.

        The first class along the hierarchy that decides: one setting ``default_recipe``, a
        registered method (``super_selfish.recipes.RECIPES``), or one setting ``default_lr``
        / ``default_optimizer`` in its own body (Adam or that optimizer at that constant rate,
        no weight decay, no warm-up: how a user-defined method trains).
        """
        for klass in cls.__mro__:
            if not (isinstance(klass, type) and issubclass(klass, Supervisor)):
                continue
            if vars(klass).get("default_recipe") is not None:
                return vars(klass)["default_recipe"]
            method = vars(klass).get("method")
            if method in recipes_module.RECIPES and _registered(method) is klass:
                return recipes_module.RECIPES[method]
            if "default_lr" in vars(klass) or "default_optimizer" in vars(klass):
                factory = cls.default_optimizer
                return recipes_module.Recipe(
                    "custom", cls.default_lr, scaling="none", schedule="constant",
                    factory=factory, paper=f"{cls.__name__}.default_lr / default_optimizer")
        raise AssertionError("Supervisor defines default_lr")  # pragma: no cover

    def get_backbone(self, which: Optional[str] = None) -> backbones.Backbone:
        """The trained encoder: an ``nn.Module`` from images to feature vectors.

        Args:
            which: the encoder to return, one of ``backbone_roles`` (e.g. ``"online"``;
                DINO: ``"teacher"``/``"student"``; BYOL and MoCo: ``"online"``/
                ``"momentum"``), or ``"ema"``: the Polyak average kept by
                ``supervise(..., ema=0.999)``. Default: the method's ``default_backbone``
                (the encoder its paper evaluates).

        Returns:
            The encoder module itself (not a copy).
        """
        roles = dict(self.backbone_roles)
        if getattr(self, "ema_backbone", None) is not None:
            roles["ema"] = "ema_backbone"
        which = self.default_backbone if which is None else which
        if which == "ema" and "ema" not in roles:
            raise ConfigError("Invalid which='ema': this supervisor keeps no averaged backbone;"
                              " train with supervise(..., ema=0.999) first.")
        check(which in roles, "which", which, f"one of {sorted(roles)}")
        return getattr(self, roles[which])

    def export_backbone(self, path: str | os.PathLike, format: str = "torchscript",
                        **options: Any) -> Any:
        """Write the backbone for deployment and check the file against the live network.

        Args:
            path: the file to write, e.g. ``"simclr.pt"`` or ``"simclr.onnx"``.
            format: ``"torchscript"`` or ``"onnx"`` (the ``onnx`` extra).
            **options: ``atol``/``rtol`` of the check (see
                :func:`super_selfish.export.export_backbone`).

        Returns:
            :class:`super_selfish.export.Exported`: the path and the largest difference
            between the reloaded file's features and the backbone's. The input is float images
            in [0, 1] of shape (N, ``in_channels``, ``image_size``, ``image_size``).
        """
        from .export import export_backbone

        return export_backbone(self.get_backbone(), path, format, image_size=self.image_size,
                               in_channels=self.image_channels, **options)

    def log(self, **scalars: float) -> None:
        """Report extra per-step scalars (shown on the progress bar and in the history)."""
        for key, value in scalars.items():
            self._step_metrics[key] = float(value)

    def augment_views(self, images: torch.Tensor) -> List[torch.Tensor]:
        """This method's augmented float views of a uint8 batch, drawn from the run's generator.

        Runs outside any mixed-precision autocast: augmentations are float32 pixel maths (and
        some, like elastic deformation, only accept float32); the encoders cast afterwards.
        """
        with torch.autocast(images.device.type, enabled=False):
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
    def supervise(self, lr: Optional[float] = None,
                  optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
                  epochs: int = 10, batch_size: int = 256,
                  shuffle: bool = True, num_workers: Optional[int] = None,
                  name: Optional[str] = None,
                  pretrained: bool = False, lr_scheduler: str | Callable[..., Any] | None = None,
                  *, weight_decay: Optional[float] = None,
                  warmup_epochs: Optional[float] = None, ema: Optional[float] = None,
                  seed: Optional[int] = None, device: Optional[str | torch.device] = None,
                  progress: bool = True, keep_last: int = 0, keep_best: bool = False,
                  overwrite: bool = False, skip_nonfinite: bool = False,
                  grad_clip: Optional[float] = None, precision: str = "fp32",
                  channels_last: bool = False, compile: bool | Dict[str, Any] = False,
                  distributed: Optional[bool] = None, sync_batchnorm: Optional[bool] = None,
                  callbacks: Sequence[Callback] = (), save: bool = True,
                  resume: Optional[bool] = None) -> List[Dict[str, Any]]:
        """Train; returns the per-epoch history (also written to ``<name>/history.*``).

        Files: ``<name>.pt`` is the run's one checkpoint, rewritten after every epoch;
        ``<name>/history.{json,csv}`` the per-epoch records. Without ``name`` every run gets a
        new one, ``store/<method>-<YYYYmmdd-HHMMSS>``, so two runs never share a file; the
        paths are printed when the run starts and ends (``self.run_name`` holds the name).
        A ``name`` holding another method's checkpoint is refused unless ``overwrite=True``
        (one of the same method is replaced, with a warning). Copies are opt-in:
        ``keep_last=N`` keeps the last N epochs' checkpoints and ``keep_best=True`` the
        lowest-loss one in ``<name>/checkpoints/``.

        The recipe: ``lr``, ``optimizer``, ``weight_decay``, ``warmup_epochs`` and
        ``lr_scheduler`` left to None come from the method's recipe (:meth:`recipe`, the
        paper's; table in the README), scaled to the run: the rate by ``batch_size`` as the
        paper scales it, the warm-up clipped to a tenth of ``epochs``. Given ones win:
        ``optimizer`` may be a name (``adam``, ``adamw``, ``sgd``, ``lars``, with the recipe's
        momentum/betas) or a callable ``f(params, lr=...)`` such as ``torch.optim.Adam``;
        ``lr_scheduler`` ``"cosine"``, ``"constant"`` or a callable of the optimizer returning
        a scheduler stepped after every optimizer step (as in the original Super-Selfish).
        What the run used is in ``run_options``, every history record and the checkpoint;
        the starting rate is ``base_lr``.

        ``ema`` (e.g. 0.999): also keep a Polyak average of the backbone, updated after every
        step (``ema_backbone``; buffers such as BatchNorm statistics are copied), saved in the
        checkpoint and returned by ``get_backbone(which="ema")``.

        ``num_workers`` loader processes decode images read from files (folders, shards,
        per-item datasets); None chooses :func:`super_selfish.data.default_num_workers`, and 0
        for in-memory data, which is sliced without any.

        ``pretrained=True`` (or ``resume=True``) continues the checkpoint ``name`` with its
        optimizer, scheduler, RNG and epoch. Ctrl-C/SIGTERM finish the current step, write a
        resumable checkpoint and return. A NaN/inf loss raises :class:`DivergenceError` and
        leaves the last good checkpoint untouched (``skip_nonfinite`` skips the batch instead).

        Scaling out (see ``docs/distributed.md``): under ``torchrun`` (``WORLD_SIZE`` > 1) or
        with ``distributed=True`` the process group is joined from the environment, the
        supervisor is wrapped in DistributedDataParallel, each process gets its own share of
        the data (``batch_size`` is per process), BatchNorm becomes SyncBatchNorm (unless
        ``sync_batchnorm=False``) and only rank 0 logs and writes checkpoints.
        ``precision="bf16"|"fp16"`` trains under autocast (fp16 with a gradient scaler),
        ``channels_last`` uses NHWC memory and ``compile`` (True or torch.compile keyword
        arguments) compiles the backbone body in place.
        """
        self._validate_supervise(lr, epochs, batch_size, num_workers, weight_decay, precision,
                                 keep_last, warmup_epochs, lr_scheduler)
        check(ema is None or (_is_number(ema) and 0 < ema < 1), "ema", ema,
              "None or a decay in (0, 1) such as 0.999")
        check(not (callable(lr_scheduler) and warmup_epochs), "warmup_epochs", warmup_epochs,
              "None or 0 with a callable lr_scheduler (the warm-up belongs to the built-in "
              "'cosine' and 'constant' schedules)")
        recipe = self.recipe()
        resolved = recipe.resolve(batch_size, epochs, lr=lr, optimizer=optimizer,
                                  weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                                  lr_scheduler=lr_scheduler)
        lr, optimizer = resolved["lr"], resolved["optimizer"]
        weight_decay, warmup_epochs = resolved["weight_decay"], resolved["warmup_epochs"]
        lr_scheduler = resolved["lr_scheduler"]
        resuming = bool(pretrained or resume)
        if name is None and resuming:
            raise ConfigError(self._resume_needs_name())
        _validate_run_options(name if name is not None else "default", optimizer, grad_clip,
                              device, seed, callbacks)
        check(isinstance(keep_best, bool), "keep_best", keep_best, "True or False")
        if self.dataset is None:
            raise DataError(f"{type(self).__name__} was built without a dataset: pass one, "
                            f"e.g. {type(self).__name__}('cifar10-sample').")
        if name is not None and save and not resuming:
            self._check_overwrite(name, overwrite)
        self.base_lr = lr
        self._ema = None if ema is None else float(ema)
        if ema is not None and getattr(self, "ema_backbone", None) is None:
            self.ema_backbone = momentum.frozen_copy(self.backbone)
        self.data_record = data.provenance(self.dataset)  # checkpoints name their data
        self.interrupted = False
        self.save_checkpoints = save
        self.callbacks = list(callbacks)
        self._setup_runtime(device, distributed, sync_batchnorm, precision, channels_last,
                            compile)
        reserved = None
        if name is None:
            name, reserved = self._new_run_name(save)
        self.run_name = name
        if save and is_main_process():
            console.info(f"{self.method} run {name}: checkpoint {store.checkpoint_path(name)} "
                         f"(every epoch), history {store.run_dir(name)}/history.{{json,csv}}")
        seed = self.seed if seed is None else seed
        self._seed_run(seed, self._ddp is not None)
        try:
            self._load_pretrained(name, bool(pretrained or resume))
            self._init_data_optimizer(lr, optimizer, batch_size, shuffle, num_workers,
                                      lr_scheduler, weight_decay=weight_decay,
                                      warmup_epochs=warmup_epochs, epochs=epochs)
            self.run_options = {  # what this run resolved to (the CLI writes it to config.yaml)
                "lr": lr, "optimizer": resolved["optimizer_name"],
                "weight_decay": weight_decay, "warmup_epochs": warmup_epochs,
                "lr_scheduler": lr_scheduler if isinstance(lr_scheduler, str)
                else _callable_name(lr_scheduler), "epochs": epochs, "batch_size": batch_size,
                "seed": seed, "precision": precision, "grad_clip": grad_clip, "ema": ema,
                "recipe": recipe.describe(), "from_recipe": list(resolved["from_recipe"])}
            self._train_options = dict(progress=progress, keep_last=keep_last,
                                       keep_best=keep_best, skip_nonfinite=skip_nonfinite,
                                       grad_clip=grad_clip)
            self._epochs(epochs, name)
        finally:
            self._teardown_runtime()
            if reserved is not None and not store.checkpoint_path(name).exists():
                _remove_if_empty(reserved)  # a run that failed before its first checkpoint
        if save and is_main_process() and store.checkpoint_path(name).exists():
            console.info(f"saved {store.checkpoint_path(name)} (epoch {self.epoch}) and "
                         f"{store.run_dir(name)}/history.{{json,csv}}")
        return self.history

    # ------------------------------------------------------------------ run names
    def _new_run_name(self, save: bool) -> tuple[str, Optional["os.PathLike[str]"]]:
        """``store/<method>-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... when taken), the same on
        every process; its run folder is created at once (by the main process, when saving)
        so that two runs started in the same second cannot pick the same name."""
        stamp = int(time.time())
        if self._ddp is not None:
            stamp = dist_utils.broadcast_int(stamp)
        name, suffix, reserved = store.run_name(self.method, stamp), 1, None
        if is_main_process():
            name, suffix, reserved = store.new_run_name(self.method, stamp, reserve=save)
        if self._ddp is not None:
            suffix = dist_utils.broadcast_int(suffix)
            name = store.run_name(self.method, stamp, suffix)
        return name, reserved

    def _resume_needs_name(self) -> str:
        latest = store.latest_run(self.method)
        hint = (f" The latest {self.method} run here is {latest!r}." if latest is not None
                else "")
        return ("Invalid name=None with pretrained=True: expected the name of the run to "
                "continue, e.g. name='store/" + self.method + "-20261202-141503' (a run "
                "started without a name gets a new one, printed when it starts, and is "
                f"never resumed by default).{hint}")

    def _check_overwrite(self, name: str, overwrite: bool) -> None:
        """Refuse to replace another method's checkpoint at ``name`` unless ``overwrite``."""
        path = store.checkpoint_path(name)
        if overwrite or not path.exists():
            return
        theirs = store.peek_method(path)
        if theirs == self.method:
            console.warn(f"{path} holds an earlier {self.method} run: this run replaces it "
                         "(pass another name= to keep both, or pretrained=True to continue "
                         "it).")
            return
        held = (f"a checkpoint of method {theirs!r}" if theirs is not None
                else "a file that is not a readable super_selfish checkpoint")
        raise CheckpointError(f"{str(path)!r} holds {held}; this {self.method} run would "
                              "overwrite it. Pass another name= (or none: each run then gets "
                              "its own), or overwrite=True to replace it.")

    def _seed_run(self, seed: Optional[int], distributed: bool) -> None:
        """The run's random streams. Data order: one seed for all processes (rank 0's when
        drawn), so the distributed split agrees. Augmentations and the global RNG: a distinct
        stream per process."""
        data_seed = seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_())
        if seed is None and distributed:
            data_seed = dist_utils.broadcast_int(data_seed)
        self._data_gen = torch.Generator().manual_seed(data_seed)
        self._aug_gen = torch.Generator().manual_seed(self._data_gen.initial_seed() + 1
                                                      + _RANK_SEED_STRIDE * rank())
        if seed is not None:
            torch.manual_seed(seed + 2 + _RANK_SEED_STRIDE * rank())

    def _validate_supervise(self, lr: Optional[float], epochs: int, batch_size: int,
                            num_workers: Optional[int],
                            weight_decay: Optional[float], precision: str, keep_last: int,
                            warmup_epochs: Optional[float], lr_scheduler: Any) -> None:
        check(lr is None or (_is_number(lr) and lr > 0), "lr", lr,
              "None (the method's recipe) or a positive finite number such as 1e-3")
        check(isinstance(epochs, int) and epochs >= 0, "epochs", epochs, "a non-negative int")
        check(isinstance(batch_size, int) and batch_size >= 2, "batch_size", batch_size,
              "an int of at least 2")
        check(num_workers is None or (isinstance(num_workers, int) and num_workers >= 0),
              "num_workers", num_workers,
              "None (automatic: 0 for in-memory data, else data.default_num_workers()) or a "
              "non-negative int")
        check(weight_decay is None or (_is_number(weight_decay) and weight_decay >= 0),
              "weight_decay", weight_decay, "None (the method's recipe) or a non-negative number")
        check(precision in PRECISIONS, "precision", precision, f"one of {PRECISIONS}")
        check(isinstance(keep_last, int) and keep_last >= 0, "keep_last", keep_last,
              "a non-negative int")
        check(warmup_epochs is None or (_is_number(warmup_epochs) and warmup_epochs >= 0),
              "warmup_epochs", warmup_epochs, "None (the method's recipe) or a non-negative number")
        check(lr_scheduler is None or callable(lr_scheduler) or (isinstance(lr_scheduler, str)
                                                                 and lr_scheduler in SCHEDULES),
              "lr_scheduler", lr_scheduler,
              f"None, one of {SCHEDULES} or a callable(optimizer) returning a scheduler")

    def _setup_runtime(self, device: Any, distributed: Optional[bool],
                       sync_batchnorm: Optional[bool], precision: str, channels_last: bool,
                       compile: bool | Dict[str, Any]) -> None:
        """Device, process group, SyncBN, channels-last, compile, AMP scaler and DDP wrapper.

        Runs before the optimizer is built: SyncBN conversion keeps the same Parameter objects,
        so the optimizer (and DDP, wrapped last) see exactly the tensors used in forward.
        """
        from . import distributed as dist_utils

        if distributed is None:  # automatic under torchrun (WORLD_SIZE > 1) or a user's group
            distributed = dist_utils.launched_distributed()
        if distributed:
            if device is None or (torch.device(device).type == "cuda"
                                  and torch.device(device).index is None):
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
                    _to_channels_last)
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
        process without waiting for the others. The process group is left to the caller."""
        loader = getattr(self, "loader", None)
        if loader is not None:  # end the persistent loader workers
            loader.close()
        if self._ddp is not None:
            object.__setattr__(self, "_ddp", None)
            dist_utils.revert_sync_batchnorm(self)

    def _splits_data(self) -> bool:
        """Whether each process trains on its own share of the data: DistributedDataParallel
        from ``supervise``, or from another training loop (Lightning) that says so."""
        return self._ddp is not None or self._external_ddp

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
        self._resume_losses: List[float] = []
        if pretrained:
            if self._ddp is not None:
                dist_utils.barrier()  # every process waits until rank 0 has written the file
            self._resume_state = self.load(name).checkpoint

    def _init_data_optimizer(self, lr: float, optimizer: Callable[..., torch.optim.Optimizer],
                             batch_size: int, shuffle: bool, num_workers: Optional[int],
                             lr_scheduler: Any, *, weight_decay: float = 0.0,
                             warmup_epochs: float = 0.0, epochs: int = 1) -> None:
        """Build the loader, the optimizer over every trainable part, and the scheduler."""
        sampler = None
        if self._splits_data() and not getattr(self.dataset, "streaming", False):
            from torch.utils.data.distributed import DistributedSampler

            # Each process gets len(dataset) // world_size images (the same seed everywhere,
            # a new order each epoch through set_epoch); batch_size is per process.
            share = len(self.dataset) // world_size()
            if share < batch_size:
                raise DataError(f"batch_size={batch_size} per process is larger than each "
                                f"process's share of the dataset ({len(self.dataset)} images / "
                                f"{world_size()} processes = {share}): use batch_size <= {share}.")
            sampler = DistributedSampler(self.dataset, shuffle=shuffle, drop_last=True,
                                         seed=self._data_gen.initial_seed())
        self.loader = data.BatchLoader(self.dataset, batch_size, shuffle=shuffle,
                                       drop_last=True, num_workers=num_workers,
                                       generator=self._data_gen, sampler=sampler,
                                       pin_memory=self.device.type == "cuda")
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
                    total=len(self.loader), initial=skip, leave=False,
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
                    stop_now = stop.signal is not None
                    if self._ddp is not None:  # every process stops after the same step
                        stop_now = dist_utils.any_process(stop_now)
                    if stop_now:
                        bar.close()
                        self._stop_for_signal(name, epoch, step + 1,
                                              stop.signal or signal.SIGTERM)
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
                self._check_finite_state(f"epoch {epoch + 1}, step {step + 1}",
                                         parameters_only=True)
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
        if getattr(self, "_ema", None) is not None:
            self._update_ema()
        self.global_step += 1
        value = float(loss.detach())
        for cb in self.callbacks:
            cb.on_step_end(self, self.global_step, {"loss": value, **self._step_metrics})
        return value

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Polyak averaging (``supervise(ema=...)``): the averaged backbone's weights move
        towards the online ones; its buffers (BatchNorm statistics) are copied."""
        momentum.ema_update(self.ema_backbone, self.backbone, self._ema)
        for target, online in zip(self.ema_backbone.buffers(), self.backbone.buffers()):
            target.copy_(online)

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
                "checkpoint was kept.")

    def _end_epoch(self, epoch: int, losses: List[float], n_images: int, seconds: float,
                   name: str) -> None:
        self._check_finite_state(f"the end of epoch {epoch + 1}")
        loss_sum, loss_count = sum(losses), len(losses)
        if self._splits_data():  # the epoch loss is the mean over every process's steps
            loss_sum, loss_count = dist_utils.all_reduce_sum(loss_sum, loss_count)
        record: Dict[str, Any] = {
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
            console.info(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in record.items() if k not in quiet))
        if self.save_checkpoints:
            self.save(name)
            if is_main_process():
                best = min((r["loss"] for r in self.history if math.isfinite(r["loss"])),
                           default=math.inf)  # an epoch whose batches were all skipped is NaN
                store.keep(name, epoch + 1, self._train_options["keep_last"],
                           is_best=self._train_options["keep_best"]
                           and math.isfinite(record["loss"]) and record["loss"] <= best)
                self._write_history(name)
            if self._ddp is not None:
                dist_utils.barrier()  # nobody reads the run folder before rank 0 is done

    def _recipe_record(self) -> Dict[str, Any]:
        """What each history record says about the run's recipe (``run_options``)."""
        options = getattr(self, "run_options", None) or {}
        return {"base_lr": options.get("lr"), "optimizer": options.get("optimizer"),
                "weight_decay": options.get("weight_decay"),
                "warmup_epochs": options.get("warmup_epochs"),
                "lr_scheduler": options.get("lr_scheduler")} if options else {}

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
            # the class, so from_checkpoint can rebuild a user-defined subclass it can import
            "class": {"module": type(self).__module__, "qualname": type(self).__qualname__},
            "hparams": dict(self.hparams),
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "epoch": self.epoch,
            "global_step": self.global_step,
            "step_in_epoch": mid_epoch,
            "epoch_losses": list(getattr(self, "_epoch_losses", [])) if mid_epoch else [],
            "history": [dict(r) for r in self.history],
            "data": getattr(self, "data_record", None),
            "run_options": _plain_options(getattr(self, "run_options", None) or {}),
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
            if self.device.type == "cuda":  # random ops a method runs on the GPU
                payload["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
            # what the mid-epoch position refers to: resuming needs the same batches
            payload["loader"] = [self.loader.batch_size, len(self.dataset), world_size()]
        return payload

    def save(self, name: Optional[str] = None) -> str:
        """Write one checkpoint file (atomically) with everything needed to resume.

        ``name`` defaults to the run's (``self.run_name``, set by :meth:`supervise`), else a
        new ``store/<method>-<time>`` name; returns the path written.
        """
        if name is None:
            name = getattr(self, "run_name", None) or store.new_run_name(
                self.method, reserve=is_main_process())[0]
            self.run_name = name
        if not is_main_process():
            return str(store.checkpoint_path(name))
        return str(store.write(self._checkpoint_payload(), name))

    def save_backbone(self, path: str | os.PathLike) -> str:
        """Write the trained backbone alone (weights and how to rebuild it) to ``path``.

        :func:`super_selfish.backbones.load` reads it back without this method's heads,
        queues or optimizer; see :func:`super_selfish.backbones.save` for what is stored and
        how user-defined modules are handled. Returns the path written.
        """
        return str(backbones.save(self.get_backbone(), path, norm=self.hparams.get("norm"),
                                  probe_size=self.image_size, method=self.method))

    @staticmethod
    def _checkpoint_class(payload: Dict[str, Any]) -> Optional[type]:
        """The Supervisor subclass recorded in ``payload`` when it can be imported, else None."""
        import importlib
        import sys

        recorded = payload.get("class")
        if not isinstance(recorded, dict):
            return None
        module_name, qualname = recorded.get("module"), recorded.get("qualname")
        if not isinstance(module_name, str) or not isinstance(qualname, str) or "<" in qualname:
            return None  # defined inside a function: not importable
        try:
            obj: Any = sys.modules.get(module_name) or importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            return None
        if not (isinstance(obj, type) and issubclass(obj, Supervisor)
                and getattr(obj, "method", None) == payload.get("method")):
            return None
        return obj

    @classmethod
    def from_checkpoint(cls, name: str, dataset: Any = None, **overrides: Any) -> "Supervisor":
        """Rebuild the supervisor that wrote checkpoint ``name`` and load it.

        The class comes from the file: the exact class that saved it (a user-defined subclass
        too) when it can be imported (``module.qualname`` is recorded), else the method
        registered under the saved method name (with a note). Every saved hyper-parameter
        (image size, norm, backbone, the method's own options) is passed back to
        ``__init__``, so every part has the saved shape; ``overrides`` replace saved values
        (e.g. ``augment=my_pipeline``).
        """
        from . import methods  # the method registry imports this module

        payload = _read_run(name)
        method_cls = cls._checkpoint_class(payload)
        if method_cls is None:
            try:
                method_cls = methods.get(payload["method"])
            except KeyError as exc:
                recorded = payload.get("class") or {}
                raise CheckpointError(
                    f"{str(store.checkpoint_path(name))!r} was written by "
                    f"{recorded.get('module', '?')}.{recorded.get('qualname', '?')} (method "
                    f"{payload['method']!r}), which cannot be imported here: import the module "
                    "defining it (or register the method) first.") from exc
            recorded = payload.get("class")
            if isinstance(recorded, dict) and (recorded.get("module"), recorded.get(
                    "qualname")) != (method_cls.__module__, method_cls.__qualname__):
                console.info(f"{recorded.get('module')}.{recorded.get('qualname')}, which wrote "
                             f"{str(store.checkpoint_path(name))!r}, cannot be imported here: "
                             f"rebuilt as {method_cls.__name__} (method {payload['method']!r}).")
        if cls is not Supervisor and not issubclass(method_cls, cls):
            raise CheckpointError(f"{str(store.checkpoint_path(name))!r} was written by method "
                                  f"{payload['method']!r}, not by {cls.__name__}: use "
                                  "Supervisor.from_checkpoint(name) to rebuild any method.")
        accepted = _init_arguments(method_cls)
        saved = {k: v for k, v in payload["hparams"].items() if k in accepted}
        if not (isinstance(saved.get("augment"), str) and saved["augment"] in augment.available()):
            saved.pop("augment", None)  # a user pipeline object: the method's default stands in
        saved.update(overrides)
        return method_cls(dataset, **saved).load(name)

    def load(self, name: Optional[str] = None, *, strict: bool = True) -> "Supervisor":
        """Load weights, buffers, epoch and history from ``name`` (default: this supervisor's
        run, ``self.run_name``); returns ``self``.

        Raises :class:`CheckpointError` when the file belongs to another method or backbone.
        """
        name = self._run_name_or(name)
        payload = _read_run(name)
        path = store.checkpoint_path(name)
        if payload["method"] != self.method:
            raise CheckpointError(f"{str(path)!r} was written by method {payload['method']!r}, "
                                  f"but this is {self.method!r} ({type(self).__name__}).")
        theirs = payload["hparams"].get("backbone")
        if theirs != self.hparams["backbone"]:
            raise CheckpointError(f"{str(path)!r} holds backbone {theirs!r}, but this "
                                  f"supervisor uses {self.hparams['backbone']!r}: build it "
                                  f"with backbone={theirs!r}.")
        if (getattr(self, "ema_backbone", None) is None
                and any(k.startswith("ema_backbone.") for k in payload["state"])):
            self.ema_backbone = momentum.frozen_copy(self.backbone)  # the run kept an average
            self.ema_backbone.to(self.device)
        try:
            self.load_state_dict(payload["state"], strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(f"{str(path)!r} does not fit this {type(self).__name__} "
                                  f"(different hyper-parameters? saved {payload['hparams']}): "
                                  f"{exc}") from exc
        self.epoch = payload["epoch"]
        self.global_step = payload["global_step"]
        self.history = list(payload.get("history", []))
        self.data_record = payload.get("data")
        if payload.get("run_options"):
            self.run_options = dict(payload["run_options"])
        self.checkpoint = payload  # optimizer/RNG state, used when resuming
        return self

    def _run_name_or(self, name: Optional[str]) -> str:
        if name is not None:
            return name
        known = getattr(self, "run_name", None)
        if known is None:
            raise ConfigError("Invalid name=None: expected the run to load, e.g. "
                              f"name='store/{self.method}-20261202-141503' (this supervisor "
                              "has not been trained or saved, so it has no run name).")
        return known

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
            if rank() > 0:  # rank 0's saved stream, made distinct for the other processes
                self._aug_gen.manual_seed(int(torch.randint(2**62, (1,), generator=self._aug_gen))
                                          + rank())
            elif "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        self._resume_step = payload.get("step_in_epoch", 0)
        saved, now = payload.get("loader"), [self.loader.batch_size, len(self.dataset),
                                             world_size()]
        if self._resume_step and saved is not None and list(saved) != now:
            raise ConfigError(
                f"Invalid batch_size={now[0]} (dataset of {now[1]} images, {now[2]} "
                f"process(es)) for resuming mid-epoch: the run was interrupted at step "
                f"{self._resume_step} of an epoch with batch_size={saved[0]} ({saved[1]} images, "
                f"{saved[2]} process(es)); expected the same batch size, dataset and processes.")
        self._resume_losses = list(payload.get("epoch_losses", []))


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
