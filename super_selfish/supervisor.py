"""The :class:`Supervisor` base class: one ``nn.Module`` per method, with its hooks.

A method subclasses :class:`Supervisor`, builds its parts (heads, momentum copies, queues as
buffers) in ``__init__`` and overrides :meth:`Supervisor._forward` (and, where it must,
:meth:`Supervisor._update`). Because a supervisor is an ``nn.Module``, every part it holds is
trained, saved, loaded and moved with ``.to(device)`` without per-method code: trainable
parameters are the ones with ``requires_grad``; momentum encoders are frozen copies; queues
and memory banks are buffers.

The hooks a method may override, in the order :meth:`Supervisor.supervise` calls them:
``_load_pretrained`` (restore a run), ``_init_data_optimizer`` (loader, optimizer, scheduler,
then ``_on_fit_start``: a method's own set-up for the run, such as sizing its queues),
``_epochs`` (the loop, :mod:`super_selfish.training`), ``_forward`` (one batch to a loss) and
``_update`` (backward and step). The loop and runtime live in :mod:`super_selfish.training`,
checkpoints in :mod:`super_selfish.checkpoint`.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
import torch.nn as nn

from . import augment, backbones, console, data, momentum, store, validate
from . import distributed as dist_utils
from . import recipes as recipes_module
from .checkpoint import Checkpointing, init_arguments
from .distributed import is_main_process, world_size
from .errors import ConfigError, DataError, check, unknown_name
from .training import PRECISIONS, Callback, TrainingLoop, validate_device

SCHEDULES = ("constant", "cosine")
#: Arguments of ``Supervisor.__init__`` (recorded by the base under their own keys) and those
#: a subclass's ``__init__`` never records (the data, ``self``, ``*args``/``**kwargs``).
_BASE_ARGUMENTS = frozenset(
    {"self", "dataset", "backbone", "augment", "image_size", "norm", "seed", "in_channels"}
)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _plain_value(value: Any) -> bool:
    """Numbers, strings, booleans, None, and lists/tuples of them: what a checkpoint records."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and all(_plain_value(v) for v in value)


def _validate_run_options(
    name: Any, optimizer: Any, grad_clip: Any, device: Any, seed: Any, callbacks: Any
) -> None:
    """Checks of ``supervise`` arguments beyond the numeric ones (before anything is built)."""
    check(
        isinstance(name, (str, os.PathLike))
        and os.fspath(name).strip() != ""
        and os.path.basename(os.fspath(name).rstrip("/\\")) not in ("", ".", ".."),
        "name",
        name,
        "a run name or path such as 'store/simclr' (the checkpoint is <name>.pt)",
    )
    check(
        callable(optimizer),
        "optimizer",
        optimizer,
        "a name (adam, adamw, sgd, lars) or a callable(params, lr=...) returning an "
        "optimizer, e.g. torch.optim.Adam",
    )
    validate.positive_number(
        grad_clip, "grad_clip", " (a max gradient norm) such as 1.0", none="no clipping"
    )
    validate.non_negative_int(seed, "seed", none="the supervisor's seed")
    check(
        all(isinstance(cb, Callback) for cb in callbacks),
        "callbacks",
        callbacks,
        "a sequence of super_selfish.Callback instances",
    )
    validate_device(device)


def _unknown_argument(cls: type, name: str) -> Exception:
    """The error for ``cls(..., name=...)`` when no ``__init__`` in its hierarchy takes ``name``."""
    return unknown_name(f"{cls.__name__} argument", name, init_arguments(cls))


def _callable_name(fn: Any) -> str:
    """``torch.optim.Adam``-style name of an optimizer or scheduler factory."""
    fn = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _registered(method: str) -> Optional[type]:
    from .registry import METHODS

    try:
        return METHODS.get(method)
    except KeyError:
        return None


def _remove_if_empty(folder: os.PathLike[str]) -> None:
    try:
        os.rmdir(folder)
    except OSError:  # not empty (a user's files, TensorBoard events) or already gone
        pass


class Supervisor(TrainingLoop, Checkpointing, nn.Module):
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
    backbone_roles: dict[str, str] = {"online": "backbone"}
    #: The role ``get_backbone()`` returns without ``which``.
    default_backbone: str = "online"
    #: Channels of the images this method reads; None: the backbone's ``in_channels``. Methods
    #: that split colour themselves (CMC, split-brain: RGB into L and ab) set 3.
    data_channels: Optional[int] = None

    def __init__(
        self,
        dataset: Any = None,
        backbone: str | nn.Module = "convnet-small",
        *,
        augment: Any = None,
        image_size: Optional[int] = None,
        norm: str = "batch",
        seed: Optional[int] = None,
        in_channels: int = 3,
        **unknown: Any,
    ):
        super().__init__()
        if unknown:  # a misspelt option: name it and suggest the closest one (not a TypeError)
            raise _unknown_argument(type(self), next(iter(unknown)))
        if seed is not None:
            validate.non_negative_int(seed, "seed")
            torch.manual_seed(seed)
        self.seed = seed
        validate.positive_int(
            in_channels,
            "in_channels",
            ": 3 for RGB, 1 for grayscale, 4 or more for multi-channel images",
        )
        channels = self.data_channels or in_channels
        self.dataset = data.dataset(dataset, channels=channels) if dataset is not None else None
        if self.dataset is not None:
            self._check_labels(self.dataset)
        if image_size is None:
            image_size = self._dataset_image_size() or 32
            if image_size < 8:
                raise DataError(
                    f"dataset images are {image_size}x{image_size} pixels: expected "
                    "at least 8x8 (resize them with data.dataset(..., size=N) or "
                    "pass image_size=N)."
                )
        validate.int_at_least(image_size, "image_size", 8, " pixels")
        self.image_size = image_size
        self.backbone = backbones.build(
            backbone, norm=norm, in_channels=in_channels, probe_size=image_size
        )
        self.augment_name = (
            augment
            if isinstance(augment, str)
            else (self.default_augment if augment is None else type(augment).__name__)
        )
        self.views = (
            augment
            if augment is not None and not isinstance(augment, str) and callable(augment)
            else None
        )
        if self.views is None and self.augment_name is not None:
            self.views = self._build_views(augment or self.default_augment)
        self.hparams: dict[str, Any] = {
            "backbone": self.backbone.name,
            "norm": norm,
            "image_size": image_size,
            "augment": self.augment_name,
            "in_channels": in_channels,
        }
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.global_step = 0
        self._placed = False
        self._ddp: Optional[nn.Module] = None
        self._external_ddp = False  # data parallel under another loop (super_selfish.lightning)
        self._step_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up helpers
    def _build_views(self, spec: Any) -> Any:
        """Augmentation views for this method; subclasses override to pass preset options."""
        return augment.build(spec, self.image_size)

    def _dataset_image_size(self) -> Optional[int]:
        if self.dataset is None or len(self.dataset) == 0:
            return None
        height, width = self.dataset[0][0].shape[-2:]
        if height != width:
            raise DataError(
                f"dataset images are {height}x{width}: pass a dataset of square "
                "images or resize them (data.dataset(..., size=N))."
            )
        return int(height)

    def _check_labels(self, ds: data.ImageDataset) -> None:
        if self.needs_labels and not ds.has_labels:
            raise DataError(
                f"{type(self).__name__} needs labels, but the dataset yields none: "
                "pass (images, labels) or a labelled Dataset."
            )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Record a subclass's constructor arguments as hyper-parameters, automatically.

        Each ``__init__`` defined along a method's hierarchy is wrapped: after it ran, the
        arguments it was called with (defaults included) that are plain values (numbers,
        strings, booleans, None and lists or tuples of them) go into ``self.hparams``, hence
        into checkpoints and back into ``from_checkpoint``. A value the method recorded itself
        with :meth:`_record_hparams` (e.g. a queue size it derived from the dataset) is kept.
        Modules and other objects passed as arguments (a user's head) are not recorded: pass
        them again to ``from_checkpoint``.
        """
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_records_hparams", False):
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Supervisor, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            try:
                bound = signature.bind(self, *args, **kw)
            except TypeError:  # init raised for its own arguments already; nothing to record
                return
            bound.apply_defaults()
            for name, value in bound.arguments.items():
                kind = signature.parameters[name].kind
                if name not in _BASE_ARGUMENTS and kind not in _VARIADIC and _plain_value(value):
                    self.hparams.setdefault(name, value)

        recording_init._records_hparams = True  # type: ignore[attr-defined]
        cls.__init__ = recording_init  # type: ignore[method-assign]

    def _record_hparams(self, **values: Any) -> None:
        """Record hyper-parameters that are not plain constructor arguments (derived values
        such as a queue size fitted to the dataset); constructor arguments are recorded
        automatically (:meth:`__init_subclass__`).
        """
        self.hparams.update(values)

    @property
    def image_channels(self) -> int:
        """Channels of the images this method reads (and ``get_backbone()`` takes)."""
        return self.data_channels or self.hparams["in_channels"]

    @property
    def device(self) -> torch.device:
        """The device of the supervisor's parameters."""
        return next(self.parameters()).device

    def to(self, *args: Any, **kwargs: Any) -> Supervisor:  # type: ignore[override]
        """``nn.Module.to``, remembering that the user chose the placement (``supervise`` keeps it).

        Args:
            *args: as for ``nn.Module.to`` (a device, a dtype, a memory format).
            **kwargs: as for ``nn.Module.to``.

        Returns:
            ``self``.
        """
        self._placed = True
        return super().to(*args, **kwargs)

    @classmethod
    def recipe(cls) -> recipes_module.Recipe:
        """The training recipe :meth:`supervise` uses for arguments left to None.

        The first class along the hierarchy that decides: one setting ``default_recipe``, a
        registered method (``super_selfish.recipes.RECIPES``), or one setting ``default_lr``
        / ``default_optimizer`` in its own body (that optimizer at that constant rate, no
        weight decay, no warm-up: how a user-defined method trains).

        Returns:
            The :class:`~super_selfish.recipes.Recipe`.
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
                return recipes_module.Recipe(
                    "custom",
                    cls.default_lr,
                    scaling="none",
                    schedule="constant",
                    factory=cls.default_optimizer,
                    paper=f"{cls.__name__}.default_lr / default_optimizer",
                )
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
            raise ConfigError(
                "Invalid which='ema': this supervisor keeps no averaged backbone;"
                " train with supervise(..., ema=0.999) first."
            )
        check(which in roles, "which", which, f"one of {sorted(roles)}")
        return getattr(self, roles[which])

    def export_backbone(
        self, path: str | os.PathLike, format: str = "torchscript", **options: Any
    ) -> Any:
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

        return export_backbone(
            self.get_backbone(),
            path,
            format,
            image_size=self.image_size,
            in_channels=self.image_channels,
            **options,
        )

    def log(self, **scalars: float) -> None:
        """Report extra per-step scalars (shown on the progress bar and in the history).

        Args:
            **scalars: name to value, e.g. ``log(accuracy=0.5)``; each epoch's record holds the
                last step's values.
        """
        for key, value in scalars.items():
            self._step_metrics[key] = float(value)

    def augment_views(self, images: torch.Tensor) -> list[torch.Tensor]:
        """This method's augmented float views of a uint8 batch, drawn from the run's generator.

        Runs outside any mixed-precision autocast: augmentations are float32 pixel maths (and
        some, like elastic deformation, only accept float32); the encoders cast afterwards.

        Args:
            images: uint8 images (N, C, H, W).

        Returns:
            One float batch per view, in [0, 1].
        """
        with torch.autocast(images.device.type, enabled=False):
            return self.views(images, generator=getattr(self, "_aug_gen", None))

    def encode_views(
        self, views: Sequence[torch.Tensor], encoder: Optional[nn.Module] = None
    ) -> list[torch.Tensor]:
        """Encode several views with one forward pass per view size (multi-crop friendly).

        Args:
            views: float batches, possibly of several sizes.
            encoder: the module to run; None: the online backbone.

        Returns:
            One feature batch per view, in the order of ``views``.
        """
        encoder = self.backbone if encoder is None else encoder
        out: list[Optional[torch.Tensor]] = [None] * len(views)
        for size in dict.fromkeys(v.shape[-2:] for v in views):
            members = [i for i, v in enumerate(views) if v.shape[-2:] == size]
            features = encoder(torch.cat([views[i] for i in members])).chunk(len(members))
            for i, f in zip(members, features):
                out[i] = f
        return out  # type: ignore[return-value]

    def forward(self, batch: data.Batch) -> torch.Tensor:
        """Routes through ``_forward`` so DistributedDataParallel can wrap the supervisor.

        Args:
            batch: one batch of the loader.

        Returns:
            The batch's loss.
        """
        return self._forward(batch)

    # ------------------------------------------------------------------ the entry point
    def supervise(
        self,
        lr: Optional[float] = None,
        optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
        epochs: int = 10,
        batch_size: int = 256,
        shuffle: bool = True,
        num_workers: Optional[int] = None,
        name: Optional[str] = None,
        pretrained: bool = False,
        lr_scheduler: str | Callable[..., Any] | None = None,
        *,
        weight_decay: Optional[float] = None,
        warmup_epochs: Optional[float] = None,
        ema: Optional[float] = None,
        seed: Optional[int] = None,
        device: Optional[str | torch.device] = None,
        progress: bool = True,
        keep_last: int = 0,
        keep_best: bool = False,
        overwrite: bool = False,
        skip_nonfinite: bool = False,
        grad_clip: Optional[float] = None,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        distributed: Optional[bool] = None,
        sync_batchnorm: Optional[bool] = None,
        callbacks: Sequence[Callback] = (),
        save: bool = True,
        resume: Optional[bool] = None,
    ) -> list[dict[str, Any]]:
        """Train; returns the per-epoch history (also written to ``<name>/history.*``).

        Files: ``<name>.pt`` is the run's one checkpoint, rewritten after every epoch;
        ``<name>/history.{json,csv}`` the per-epoch records. The paths are printed when the run
        starts and ends (``self.run_name`` holds the name).

        The recipe: ``lr``, ``optimizer``, ``weight_decay``, ``warmup_epochs`` and
        ``lr_scheduler`` left to None come from the method's recipe (:meth:`recipe`, the
        paper's; table in the README), scaled to the run: the rate by ``batch_size`` as the
        paper scales it, the warm-up clipped to a tenth of ``epochs``. Given ones win. What the
        run used is in ``run_options``, every history record and the checkpoint; the starting
        rate is ``base_lr``.

        Ctrl-C/SIGTERM finish the current step, write a resumable checkpoint and return. A
        NaN/inf loss raises :class:`DivergenceError` and leaves the last good checkpoint
        untouched (``skip_nonfinite`` skips the batch instead).

        Scaling out (see ``docs/distributed.md``): under ``torchrun`` (``WORLD_SIZE`` > 1) or
        with ``distributed=True`` the process group is joined from the environment, the
        supervisor is wrapped in DistributedDataParallel, each process gets its own share of
        the data (``batch_size`` is per process), BatchNorm becomes SyncBatchNorm (unless
        ``sync_batchnorm=False``) and only rank 0 logs and writes checkpoints.

        Args:
            lr: the starting learning rate; None: the recipe's, scaled to ``batch_size``.
            optimizer: a name (``adam``, ``adamw``, ``sgd``, ``lars``, with the recipe's
                momentum/betas) or a callable ``f(params, lr=...)`` such as
                ``torch.optim.Adam``; None: the recipe's.
            epochs: the epoch to train up to (a resumed run continues from its own).
            batch_size: images per step and process.
            shuffle: reshuffle the data every epoch.
            num_workers: loader processes decoding images read from files (folders, shards,
                per-item datasets); None: :func:`super_selfish.data.default_num_workers`, and 0
                for in-memory data, which is sliced without any.
            name: the run name or path; None gives every run a new one,
                ``store/<method>-<YYYYmmdd-HHMMSS>``, so two runs never share a file. A name
                holding another method's checkpoint is refused unless ``overwrite=True`` (one of
                the same method is replaced, with a warning).
            pretrained: continue the checkpoint ``name`` with its optimizer, scheduler, RNG and
                epoch.
            lr_scheduler: ``"cosine"``, ``"constant"`` or a callable of the optimizer returning a
                scheduler stepped after every optimizer step (as in the original Super-Selfish);
                None: the recipe's.
            weight_decay: of the weights (biases and norm weights get none); None: the recipe's.
            warmup_epochs: epochs of linear warm-up; None: the recipe's.
            ema: e.g. 0.999: also keep a Polyak average of the backbone, updated after every
                step (``ema_backbone``; buffers such as BatchNorm statistics are copied), saved
                in the checkpoint and returned by ``get_backbone(which="ema")``.
            seed: seeds the data order, augmentations and global RNG; None: the supervisor's.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; None: CUDA when available (or where
                the supervisor was moved with ``.to``).
            progress: show a progress bar.
            keep_last: also keep the last N epochs' checkpoints in ``<name>/checkpoints/``.
            keep_best: also keep the lowest-loss epoch's checkpoint there.
            overwrite: replace a checkpoint of another method at ``name``.
            skip_nonfinite: skip a batch whose loss is NaN/inf instead of raising.
            grad_clip: clip the gradient norm to this value; None: no clipping.
            precision: ``"fp32"``, or ``"bf16"``/``"fp16"`` to train under autocast (fp16 with a
                gradient scaler).
            channels_last: use NHWC memory for the backbone.
            compile: True or ``torch.compile`` keyword arguments: compile the backbone body in
                place.
            distributed: join the process group from the environment; None: automatic under
                ``torchrun``.
            sync_batchnorm: turn BatchNorm into SyncBatchNorm in distributed runs (None: yes).
            callbacks: :class:`Callback` instances observing the run.
            save: write checkpoints and history files (False: train in memory only).
            resume: the same as ``pretrained``.

        Returns:
            The history: one record per epoch (epoch, loss, lr, images/s, the method's logged
            scalars and the recipe used), a resumed run's earlier epochs included.

        Raises:
            ConfigError: an argument is invalid (the message names it and the fix).
            DataError: the supervisor has no dataset, or the data cannot be split or loaded.
            CheckpointError: ``name`` holds another method's checkpoint, or the one to resume
                does not fit.
            DivergenceError: the loss or the weights became NaN/inf.
        """
        self._validate_supervise(
            lr,
            epochs,
            batch_size,
            num_workers,
            weight_decay,
            precision,
            keep_last,
            warmup_epochs,
            lr_scheduler,
        )
        check(
            ema is None or (validate.is_number(ema) and 0 < ema < 1),
            "ema",
            ema,
            "None or a decay in (0, 1) such as 0.999",
        )
        check(
            not (callable(lr_scheduler) and warmup_epochs),
            "warmup_epochs",
            warmup_epochs,
            "None or 0 with a callable lr_scheduler (the warm-up belongs to the built-in "
            "'cosine' and 'constant' schedules)",
        )
        recipe = self.recipe()
        resolved = recipe.resolve(
            batch_size,
            epochs,
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            lr_scheduler=lr_scheduler,
        )
        lr, optimizer = resolved["lr"], resolved["optimizer"]
        weight_decay, warmup_epochs = resolved["weight_decay"], resolved["warmup_epochs"]
        lr_scheduler = resolved["lr_scheduler"]
        resuming = bool(pretrained or resume)
        if name is None and resuming:
            raise ConfigError(self._resume_needs_name())
        _validate_run_options(
            name if name is not None else "default", optimizer, grad_clip, device, seed, callbacks
        )
        check(isinstance(keep_best, bool), "keep_best", keep_best, "True or False")
        if self.dataset is None:
            raise DataError(
                f"{type(self).__name__} was built without a dataset: pass one, "
                f"e.g. {type(self).__name__}('cifar10-sample')."
            )
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
        self._setup_runtime(device, distributed, sync_batchnorm, precision, channels_last, compile)
        reserved = None
        if name is None:
            name, reserved = self._new_run_name(save)
        self.run_name = name
        if save and is_main_process():
            console.info(
                f"{self.method} run {name}: checkpoint {store.checkpoint_path(name)} "
                f"(every epoch), history {store.run_dir(name)}/history.{{json,csv}}"
            )
        seed = self.seed if seed is None else seed
        self._seed_run(seed, self._ddp is not None)
        try:
            self._load_pretrained(name, bool(pretrained or resume))
            self._init_data_optimizer(
                lr,
                optimizer,
                batch_size,
                shuffle,
                num_workers,
                lr_scheduler,
                weight_decay=weight_decay,
                warmup_epochs=warmup_epochs,
                epochs=epochs,
            )
            self.run_options = {  # what this run resolved to (the CLI writes it to config.yaml)
                "lr": lr,
                "optimizer": resolved["optimizer_name"],
                "weight_decay": weight_decay,
                "warmup_epochs": warmup_epochs,
                "lr_scheduler": lr_scheduler
                if isinstance(lr_scheduler, str)
                else _callable_name(lr_scheduler),
                "epochs": epochs,
                "batch_size": batch_size,
                "seed": seed,
                "precision": precision,
                "grad_clip": grad_clip,
                "ema": ema,
                "recipe": recipe.describe(),
                "from_recipe": list(resolved["from_recipe"]),
            }
            self._train_options = dict(
                progress=progress,
                keep_last=keep_last,
                keep_best=keep_best,
                skip_nonfinite=skip_nonfinite,
                grad_clip=grad_clip,
            )
            self._epochs(epochs, name)
        finally:
            self._teardown_runtime()
            if reserved is not None and not store.checkpoint_path(name).exists():
                _remove_if_empty(reserved)  # a run that failed before its first checkpoint
        if save and is_main_process() and store.checkpoint_path(name).exists():
            console.info(
                f"saved {store.checkpoint_path(name)} (epoch {self.epoch}) and "
                f"{store.run_dir(name)}/history.{{json,csv}}"
            )
        return self.history

    def _validate_supervise(
        self,
        lr: Optional[float],
        epochs: int,
        batch_size: int,
        num_workers: Optional[int],
        weight_decay: Optional[float],
        precision: str,
        keep_last: int,
        warmup_epochs: Optional[float],
        lr_scheduler: Any,
    ) -> None:
        recipe = "the method's recipe"
        validate.positive_number(lr, "lr", " such as 1e-3", none=recipe)
        validate.non_negative_int(epochs, "epochs")
        validate.int_at_least(batch_size, "batch_size", 2)
        validate.non_negative_int(
            num_workers,
            "num_workers",
            none="automatic: 0 for in-memory data, else data.default_num_workers()",
        )
        validate.non_negative_number(weight_decay, "weight_decay", none=recipe)
        check(precision in PRECISIONS, "precision", precision, f"one of {PRECISIONS}")
        validate.non_negative_int(keep_last, "keep_last")
        validate.non_negative_number(warmup_epochs, "warmup_epochs", none=recipe)
        check(
            lr_scheduler is None
            or callable(lr_scheduler)
            or (isinstance(lr_scheduler, str) and lr_scheduler in SCHEDULES),
            "lr_scheduler",
            lr_scheduler,
            f"None, one of {SCHEDULES} or a callable(optimizer) returning a scheduler",
        )

    # ------------------------------------------------------------------ hooks
    def _load_pretrained(self, name: str, pretrained: bool) -> None:
        """Restore weights, buffers and the epoch from ``name`` when ``pretrained``."""
        self._resume_state: Optional[dict[str, Any]] = None
        self._resume_step = 0
        self._resume_losses: list[float] = []
        if pretrained:
            if self._ddp is not None:
                dist_utils.barrier()  # every process waits until rank 0 has written the file
            self._resume_state = self.load(name).checkpoint

    def _init_data_optimizer(
        self,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        batch_size: int,
        shuffle: bool,
        num_workers: Optional[int],
        lr_scheduler: Any,
        *,
        weight_decay: float = 0.0,
        warmup_epochs: float = 0.0,
        epochs: int = 1,
    ) -> None:
        """Build the loader, the optimizer over every trainable part, and the scheduler.

        Then :meth:`_on_fit_start` (the method's own set-up for this run), then, when
        resuming, the optimizer, scheduler and random streams are restored.

        Args:
            lr: the starting learning rate.
            optimizer: a factory ``optimizer(param_groups, lr=lr)``.
            batch_size: images per step (per process).
            shuffle: reshuffle the data every epoch.
            num_workers: loader processes (None: automatic).
            lr_scheduler: ``"cosine"``, ``"constant"``, None or a callable of the optimizer.
            weight_decay: weight decay of the weights (biases and norm weights get none).
            warmup_epochs: epochs of linear warm-up.
            epochs: the run's length, which the schedules span.
        """
        sampler = None
        if self._splits_data() and not getattr(self.dataset, "streaming", False):
            from torch.utils.data.distributed import DistributedSampler

            # Each process gets len(dataset) // world_size images (the same seed everywhere,
            # a new order each epoch through set_epoch); batch_size is per process.
            share = len(self.dataset) // world_size()
            if share < batch_size:
                raise DataError(
                    f"batch_size={batch_size} per process is larger than each "
                    f"process's share of the dataset ({len(self.dataset)} images / "
                    f"{world_size()} processes = {share}): use batch_size <= {share}."
                )
            sampler = DistributedSampler(
                self.dataset, shuffle=shuffle, drop_last=True, seed=self._data_gen.initial_seed()
            )
        self.loader = data.BatchLoader(
            self.dataset,
            batch_size,
            shuffle=shuffle,
            drop_last=True,
            num_workers=num_workers,
            generator=self._data_gen,
            sampler=sampler,
            pin_memory=self.device.type == "cuda",
        )
        params = self._param_groups(weight_decay)
        self.optimizer = optimizer(params, lr=lr)
        total = max(1, epochs * len(self.loader))
        self.total_steps = total
        self.scheduler = self._make_scheduler(
            lr_scheduler, total, int(warmup_epochs * len(self.loader))
        )
        self._on_fit_start(
            batch_size, epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=weight_decay
        )
        if self._resume_state is not None:
            self._restore_training_state(self._resume_state)

    def _on_fit_start(
        self,
        batch_size: int,
        *,
        epochs: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        weight_decay: float,
    ) -> None:
        """A method's set-up for the run about to start; does nothing by default.

        Called by :meth:`_init_data_optimizer` once the loader, optimizer and scheduler exist
        and before a resumed run's optimizer state is restored: fit queues and banks to the
        batch size (MoCo, NNCLR, SwAV), build a second optimizer (adversarial methods).

        Args:
            batch_size: images per step and process.
            epochs: the run's length in epochs (for schedules that start part-way, e.g.
                SwAV's queue).
            lr: the run's starting learning rate.
            optimizer: the run's optimizer factory, ``optimizer(param_groups, lr=lr)``.
            weight_decay: the run's weight decay.
        """

    def _param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Trainable parameters; biases and norm weights get no weight decay."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        if not decay and not no_decay:
            raise ConfigError(f"{type(self).__name__} has no trainable parameters.")
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

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

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Polyak averaging (``supervise(ema=...)``): the averaged backbone's weights move
        towards the online ones; its buffers (BatchNorm statistics) are copied.
        """
        momentum.ema_update(self.ema_backbone, self.backbone, self._ema, copy_buffers=True)

    def _recipe_record(self) -> dict[str, Any]:
        """What each history record says about the run's recipe (``run_options``)."""
        options = getattr(self, "run_options", None) or {}
        return (
            {
                "base_lr": options.get("lr"),
                "optimizer": options.get("optimizer"),
                "weight_decay": options.get("weight_decay"),
                "warmup_epochs": options.get("warmup_epochs"),
                "lr_scheduler": options.get("lr_scheduler"),
            }
            if options
            else {}
        )

    def _forward(self, batch: data.Batch) -> torch.Tensor:
        """Return the loss of one batch. Every method overrides this."""
        raise NotImplementedError(f"{type(self).__name__} must implement _forward(batch).")

    def _after_backward(self) -> None:
        """Called by :meth:`_update` after backward (and clipping), before the optimizer step.

        A method overrides it to edit this step's gradients, e.g. to drop those of a part
        that is frozen for a while (DINO's last layer, SwAV's prototypes): setting a
        parameter's ``.grad`` to None makes the optimizer skip it for this step only, while it
        stays in the optimizer (and in every later ``supervise()``). Does nothing by default.
        """

    def _update(self, loss: torch.Tensor) -> None:
        """Backward, optional clipping, :meth:`_after_backward`, optimizer and scheduler step."""
        self.optimizer.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        clip = self._train_options["grad_clip"]
        if clip is not None:
            self._scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for p in self.parameters() if p.requires_grad], clip)
        self._after_backward()
        self._scaler.step(self.optimizer)
        self._scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
