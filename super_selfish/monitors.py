"""Online monitors and loggers: :class:`~super_selfish.supervisor.Callback` s for ``supervise``.

.. code-block:: python

    from super_selfish.monitors import HealthMonitor, KNNMonitor, TensorBoardLogger

    sup.supervise(epochs=100, callbacks=[
        KNNMonitor(train_labelled, test_labelled, every=5),   # writes record["knn_accuracy"]
        HealthMonitor(),                                       # warns on collapse
        TensorBoardLogger(),                                   # <run folder>/tensorboard
    ])

Monitors write their values into the epoch record, so they appear in the console line, in
``history.json`` / ``history.csv`` of the run folder (written by the supervisor) and in
TensorBoard. They run on the main process only, put the backbone in eval mode under
``no_grad`` (restoring its mode afterwards, so BatchNorm statistics are untouched) and draw no
numbers from the global RNG, so attaching them does not change the training run. Loss,
learning rate and images/s are already on the progress bar and in every epoch record.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import console, data, evaluate, store, validate
from .distributed import is_main_process
from .errors import check
from .extras import require
from .supervisor import Callback

__all__ = [
    "KNNMonitor",
    "LinearProbeMonitor",
    "HealthMonitor",
    "TensorBoardLogger",
    "WandbLogger",
    "embedding_health",
    "effective_rank",
    "run_config",
]


def _total_epochs(sup: Any) -> Optional[int]:
    loader = getattr(sup, "loader", None)
    if loader is None or not len(loader):
        return None
    return int(getattr(sup, "total_steps", 0)) // len(loader) or None


def _due(sup: Any, record: dict[str, Any], every: int) -> bool:
    """True every ``every`` epochs and at the last epoch of the run."""
    epoch = int(record.get("epoch", 0))
    return epoch % every == 0 or epoch == _total_epochs(sup)


def _sample(ds: data.ImageDataset, n: int, seed: int) -> data.TensorImageDataset:
    """A fixed random subset of at most ``n`` items, read item by item (no full load)."""
    if isinstance(ds, data.TensorImageDataset) and len(ds) <= n:
        return ds
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    if isinstance(ds, data.TensorImageDataset):
        return ds.subset(order.sort().values)
    items = [ds[int(i)] for i in order.sort().values]
    images = torch.stack([img for img, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.long)
    return data.TensorImageDataset(images, labels, ds.classes)


class _ProbeMonitor(Callback):
    """Shared logic of the kNN and linear monitors: labelled split, schedule, record key."""

    key = "accuracy"

    def __init__(
        self,
        train: Any,
        test: Any = None,
        every: int = 1,
        *,
        val_fraction: float = 0.2,
        seed: int = 0,
        key: Optional[str] = None,
    ):
        validate.positive_int(every, "every", " (epochs)")
        self.train_source, self.test_source = train, test
        self.every, self.val_fraction, self.seed = every, val_fraction, seed
        self.key = key or self.key
        self.values: list[tuple] = []  # (epoch, value)
        self._train: Optional[data.TensorImageDataset] = None
        self._test: Optional[data.TensorImageDataset] = None

    def _datasets(self) -> tuple:
        if self._train is None:
            train = data.materialize(data.dataset(self.train_source))
            evaluate._labelled(train.labels, "train")
            if self.test_source is None:  # hold out a stratified part of the labelled data
                keep, held = evaluate.stratified_split(train.labels, self.val_fraction, self.seed)
                self._train, self._test = train.subset(keep), train.subset(held)
            else:
                self._train = train
                self._test = data.materialize(data.dataset(self.test_source, "test"))
                evaluate._labelled(self._test.labels, "test")
        return self._train, self._test

    def on_train_start(self, sup: Any) -> None:
        if is_main_process():
            self._datasets()

    def _score(self, backbone: nn.Module, train: Any, test: Any) -> float:
        raise NotImplementedError

    def on_epoch_end(self, sup: Any, record: dict[str, Any]) -> None:
        if not is_main_process() or not _due(sup, record, self.every):
            return
        train, test = self._datasets()
        value = float(self._score(sup.get_backbone(), train, test))
        record[self.key] = value
        self.values.append((record.get("epoch"), value))


class KNNMonitor(_ProbeMonitor):
    """Weighted-kNN accuracy of the backbone every ``every`` epochs (and at the last one).

    ``train`` is the labelled memory, ``test`` the held-out labelled set that is classified
    (default: a stratified ``val_fraction`` split of ``train``, seeded). Writes
    ``record[key]`` (default ``knn_accuracy``); the values are also kept in ``.values``.
    Same protocol as :func:`super_selfish.evaluate.knn_accuracy`.

    Args:
        train: labelled data (anything :func:`super_selfish.data.dataset` accepts).
        test: labelled held-out data; None splits ``train``.
        every: epochs between measurements.
        k: neighbours per image (200).
        temperature: vote temperature (0.1).
        **kwargs: ``val_fraction`` (0.2), ``seed`` (0) and ``key`` of the record field.

    Raises:
        ConfigError: ``every`` or ``k`` is not a positive int.
    """

    key = "knn_accuracy"

    def __init__(
        self,
        train: Any,
        test: Any = None,
        every: int = 1,
        k: int = 200,
        temperature: float = 0.1,
        **kwargs: Any,
    ):
        super().__init__(train, test, every, **kwargs)
        validate.positive_int(k, "k")
        self.k, self.temperature = k, temperature

    def _score(self, backbone: nn.Module, train: Any, test: Any) -> float:
        return evaluate.knn_accuracy(backbone, train, test, k=self.k, temperature=self.temperature)


class LinearProbeMonitor(_ProbeMonitor):
    """Linear-probe accuracy every ``every`` epochs (default 5, and at the last epoch).

    Same protocol as :func:`super_selfish.evaluate.linear_probe` (frozen eval-mode backbone,
    standardised features, seeded head), with ``epochs`` passes (default 30, kept short
    because it runs during training). Writes ``record[key]`` (default ``linear_accuracy``).

    Args:
        train: labelled data the classifier is trained on.
        test: labelled held-out data; None holds out a stratified part of ``train``.
        every: epochs between measurements.
        epochs: training passes of the linear classifier.
        lr: its learning rate; None takes the optimizer's default.
        optimizer: ``"adam"``, ``"sgd"`` or ``"lbfgs"``.
        **kwargs: ``val_fraction`` (0.2), ``seed`` (0, also the probe's seed) and ``key``.

    Raises:
        ConfigError: ``every`` is not a positive int.
    """

    key = "linear_accuracy"

    def __init__(
        self,
        train: Any,
        test: Any = None,
        every: int = 5,
        epochs: int = 30,
        lr: Optional[float] = None,
        optimizer: str = "adam",
        **kwargs: Any,
    ):
        super().__init__(train, test, every, **kwargs)
        self.epochs, self.lr, self.optimizer = epochs, lr, optimizer

    def _score(self, backbone: nn.Module, train: Any, test: Any) -> float:
        return evaluate.linear_probe(
            backbone,
            train,
            test,
            epochs=self.epochs,
            lr=self.lr,
            optimizer=self.optimizer,
            seed=self.seed,
        )


# ---------------------------------------------------------------------------------- health
def effective_rank(features: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of the (uncentred) feature matrix.

    Ranges from 1 (every sample maps to one direction) to min(N, D) (all directions used
    equally); 0 for an all-zero matrix (Roy & Vetterli, 2007; RankMe, Garrido et al., 2023).

    Args:
        features: (N, D) feature matrix.

    Returns:
        The effective rank (0.0 when the singular values sum to zero or are not finite).
    """
    s = torch.linalg.svdvals(features.double())
    total = s.sum()
    if not torch.isfinite(total) or total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def embedding_health(
    features: torch.Tensor, std_threshold: float = 0.02, rank_fraction: float = 0.01
) -> dict[str, Any]:
    """Collapse statistics of a (N, D) feature batch.

    * ``embedding_std``: the per-dimension std of the L2-normalised features, averaged over
      dimensions. Isotropic features give about ``1/sqrt(D)`` (``reference_std``); complete
      collapse (every image maps to the same direction) gives 0. ``std_ratio`` is
      ``embedding_std * sqrt(D)``.
    * ``effective_rank``: see :func:`effective_rank`.

    ``collapsed`` is True when ``std_ratio < std_threshold`` (default 0.02, i.e. the spread is
    fifty times below isotropic; set well below the spread of untrained CNNs, whose post-ReLU
    features share a large mean direction) or when
    ``effective_rank < max(2, rank_fraction * min(N, D))`` (default 1% of the attainable
    rank, at least 2: the features span about one direction). ``reasons`` lists the failed
    checks.

    Args:
        features: (N, D) features, or (N, ...) flattened to them.
        std_threshold: collapse threshold on ``std_ratio``.
        rank_fraction: collapse threshold on the effective rank, as a share of min(N, D).

    Returns:
        A dict with ``embedding_std``, ``reference_std``, ``std_ratio``, ``effective_rank``,
        ``n``, ``dim``, ``collapsed`` and ``reasons`` (non-finite features count as
        collapsed, with NaN statistics).
    """
    features = features.detach().float().flatten(1).cpu()
    n, d = features.shape
    reasons = []
    if not torch.isfinite(features).all():
        return dict(
            embedding_std=float("nan"),
            reference_std=1 / math.sqrt(d),
            std_ratio=float("nan"),
            effective_rank=float("nan"),
            n=n,
            dim=d,
            collapsed=True,
            reasons=["features contain NaN or inf"],
        )
    std = float(F.normalize(features, dim=1).std(0, unbiased=False).mean())
    ratio = std * math.sqrt(d)
    rank = effective_rank(features)
    min_rank = max(2.0, rank_fraction * min(n, d))
    if ratio < std_threshold:
        reasons.append(
            f"embedding std {std:.2e} is below {std_threshold:g}/sqrt(d) = "
            f"{std_threshold / math.sqrt(d):.2e} (isotropic: {1 / math.sqrt(d):.2e})"
        )
    if rank < min_rank:
        reasons.append(
            f"effective rank {rank:.2f} is below {min_rank:.2f} "
            f"({rank_fraction:.0%} of min(n={n}, d={d}), at least 2)"
        )
    return dict(
        embedding_std=std,
        reference_std=1 / math.sqrt(d),
        std_ratio=ratio,
        effective_rank=rank,
        n=n,
        dim=d,
        collapsed=bool(reasons),
        reasons=reasons,
    )


class HealthMonitor(Callback):
    """Collapse detector: spread and effective rank of backbone features, every epoch.

    A fixed probe batch (``n_probe`` images drawn once with ``seed`` from ``probe``, default:
    the training set) is embedded by the backbone in eval mode at the end of every ``every``
    epochs. The epoch record gets ``embedding_std`` (mean per-dimension std of L2-normalised
    features; isotropic ~ 1/sqrt(d)) and ``effective_rank``; when
    :func:`embedding_health` reports collapse (thresholds ``std_threshold`` and
    ``rank_fraction``, documented there) a yellow ``[warning]`` line says so and what to try.
    ``.collapsed`` tells whether the last check failed, ``.warnings`` keeps every message.

    Args:
        probe: data to draw the probe batch from; None uses the training set.
        n_probe: images in the probe batch (at least 2).
        every: epochs between checks (the last epoch is always checked).
        std_threshold: see :func:`embedding_health`.
        rank_fraction: see :func:`embedding_health`.
        seed: seed of the probe draw.
        warn: print a warning on collapse (the message is kept in ``.warnings`` either way).

    Raises:
        ConfigError: ``n_probe`` is below 2 or ``every`` is not a positive int.
    """

    def __init__(
        self,
        probe: Any = None,
        n_probe: int = 512,
        every: int = 1,
        *,
        std_threshold: float = 0.02,
        rank_fraction: float = 0.01,
        seed: int = 0,
        warn: bool = True,
    ):
        validate.int_at_least(n_probe, "n_probe", 2)
        validate.positive_int(every, "every", " (epochs)")
        self.probe_source, self.n_probe, self.every, self.seed = probe, n_probe, every, seed
        self.std_threshold, self.rank_fraction, self.warn = std_threshold, rank_fraction, warn
        self.images: Optional[torch.Tensor] = None
        self.collapsed = False
        self.last: dict[str, Any] = {}
        self.warnings: list[str] = []

    def on_train_start(self, sup: Any) -> None:
        """Draw the fixed probe batch from ``probe`` or the run's training set."""
        source = sup.dataset if self.probe_source is None else data.dataset(self.probe_source)
        self.images = _sample(source, self.n_probe, self.seed).images

    @torch.no_grad()
    def measure(self, backbone: nn.Module) -> dict[str, Any]:
        """Embed the probe batch (eval mode, mode restored) and compute the statistics.

        Args:
            backbone: the network to measure.

        Returns:
            The :func:`embedding_health` dict, also kept in ``.last``.

        Raises:
            ConfigError: called before :meth:`on_train_start` drew the probe batch.
        """
        check(self.images is not None, "probe", None, "on_train_start to have run first")
        device = evaluate._device_of(backbone)
        was_training = backbone.training
        backbone.eval()
        try:
            feats = torch.cat(
                [
                    backbone(evaluate._as_float(self.images[i : i + 256].to(device))).float().cpu()
                    for i in range(0, len(self.images), 256)
                ]
            )
        finally:
            backbone.train(was_training)
        self.last = embedding_health(feats, self.std_threshold, self.rank_fraction)
        self.collapsed = self.last["collapsed"]
        return self.last

    def on_epoch_end(self, sup: Any, record: dict[str, Any]) -> None:
        """On due epochs, write the two statistics into ``record`` and warn on collapse."""
        epoch = int(record.get("epoch", 0))
        if not is_main_process() or (epoch % self.every and epoch != _total_epochs(sup)):
            return
        stats = self.measure(sup.get_backbone())
        record["embedding_std"] = stats["embedding_std"]
        record["effective_rank"] = stats["effective_rank"]
        if stats["collapsed"]:
            message = (
                f"epoch {epoch}: representation collapse suspected - "
                + "; ".join(stats["reasons"])
                + ". Try a lower learning rate, more "
                "weight decay or warm-up, a higher temperature, stronger augmentation, "
                "or check the method's predictor/stop-gradient."
            )
            self.warnings.append(message)
            if self.warn:
                console.warn(message)


# ---------------------------------------------------------------------------------- logging
def run_config(sup: Any) -> dict[str, Any]:
    """What a logger records as the run's configuration: the method, its saved
    hyper-parameters and the options the run resolved to (``sup.run_options``).

    Args:
        sup: the supervisor being trained.

    Returns:
        A flat dict; values other than numbers, strings, bools and None are turned into
        strings. ``dataset_size`` is added when the run has a dataset.
    """
    config: dict[str, Any] = {
        "method": sup.method,
        **sup.hparams,
        "run_name": str(getattr(sup, "run_name", "")),
    }
    config.update(getattr(sup, "run_options", None) or {})
    if getattr(sup, "dataset", None) is not None:
        config["dataset_size"] = len(sup.dataset)
    return {
        k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
        for k, v in config.items()
    }


class _RunLogger(Callback):
    """What the loggers share: the configuration and the augmentation grid at the start,
    ``step/<name>`` scalars every ``every_n_steps`` steps (loss, learning rate, every scalar a
    method logs), and ``epoch/<name>`` for every numeric value of an epoch record, written
    once the record is complete (monitors running after the logger may still add to it).
    Subclasses say how to write: :meth:`_open`, :meth:`_scalars`, :meth:`_image`,
    :meth:`_finish`. Only the main process writes.
    """

    def __init__(self, every_n_steps: int = 10, preview: bool = True, seed: int = 0):
        validate.positive_int(every_n_steps, "every_n_steps")
        self.every_n_steps, self.preview, self.seed = every_n_steps, preview, seed
        self.active = False
        self._pending: Optional[tuple] = None  # (epoch record, global step at its end)

    # what subclasses write with
    def _open(self, sup: Any, config: dict[str, Any]) -> None:
        raise NotImplementedError

    def _scalars(self, values: dict[str, float], step: int, epoch: Optional[int] = None) -> None:
        raise NotImplementedError

    def _image(self, tag: str, image: torch.Tensor, step: int) -> None:
        raise NotImplementedError

    def _finish(self, sup: Any) -> None:
        raise NotImplementedError

    # shared behaviour
    def on_train_start(self, sup: Any) -> None:
        if not is_main_process():
            return
        self._open(sup, run_config(sup))
        self.active = True
        if self.preview and getattr(sup, "views", None) is not None:
            grid = self._preview_grid(sup)
            if grid is not None:
                self._image("augmentations", grid, sup.global_step)

    def _preview_grid(self, sup: Any) -> Optional[torch.Tensor]:
        """(3, H, W) float grid: a few training images, then the method's views of them."""
        from .plots import view_grid

        images = _sample(sup.dataset, 8, self.seed).images[:8]
        try:
            with torch.random.fork_rng(devices=[]):
                return view_grid(sup.views, images, n_views=4, seed=self.seed)
        except Exception as exc:  # a preview must never stop training
            console.warn(f"{type(self).__name__}: augmentation preview skipped ({exc})")
            return None

    def _flush_record(self) -> None:
        if self._pending is not None and self.active:
            record, step = self._pending
            values = {
                f"epoch/{key}": float(value)
                for key, value in record.items()
                if key != "epoch"
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            }
            self._scalars(values, step, epoch=int(record.get("epoch", 0)))
        self._pending = None

    def on_step_end(self, sup: Any, step: int, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        self._flush_record()  # the previous epoch's record is complete by now
        if step % self.every_n_steps == 0:
            values = {f"step/{key}": float(value) for key, value in metrics.items()}
            values["step/lr"] = sup.optimizer.param_groups[0]["lr"]
            self._scalars(values, step)

    def on_epoch_end(self, sup: Any, record: dict[str, Any]) -> None:
        if not self.active:
            return
        self._flush_record()
        self._pending = (record, sup.global_step)  # later callbacks may still add values

    def on_train_end(self, sup: Any, history: list[dict[str, Any]]) -> None:
        if not self.active:
            return
        self._flush_record()
        self._finish(sup)
        self.active = False


def _summary_writer() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch raises this when tensorboard is missing
        raise ImportError(
            "TensorBoardLogger needs the 'tensorboard' package: pip install "
            "tensorboard (or pip install super_selfish[viz])."
        ) from exc
    return SummaryWriter


class TensorBoardLogger(_RunLogger):
    """Write a run to TensorBoard: scalars, an augmentation preview and the embedding projector.

    * ``step/<name>`` every ``every_n_steps`` steps: the loss, the learning rate and every
      scalar a method logs; ``epoch/<name>``: every numeric value of the epoch record
      (loss, lr, images/s and whatever monitors wrote, whichever order the callbacks run in).
    * ``augmentations``: a grid of the method's training views of a few images, at the start;
      ``hparams``: the run's configuration (:func:`run_config`) as text.
    * ``backbone`` projector at the end: features of ``n_embedding`` images (``embedding_data``,
      default: the training set) with their labels (class names when known) and thumbnails.

    ``log_dir`` defaults to ``<run folder>/tensorboard`` (beside ``history.json``). Needs
    ``tensorboard``; the constructor raises a clear ImportError without it.

    Args:
        log_dir: the event folder; None for ``<run folder>/tensorboard``.
        every_n_steps: steps between ``step/`` scalars.
        preview: write the augmentation grid at the start.
        embedding: write the projector embedding at the end.
        n_embedding: images in the projector.
        embedding_data: data for the projector; None uses the training set.
        seed: seed of the preview and projector image draws.

    Raises:
        ImportError: ``tensorboard`` is not installed.
        ConfigError: ``every_n_steps`` is not a positive int.
    """

    def __init__(
        self,
        log_dir: Optional[str] = None,
        every_n_steps: int = 10,
        *,
        preview: bool = True,
        embedding: bool = True,
        n_embedding: int = 500,
        embedding_data: Any = None,
        seed: int = 0,
    ):
        self._writer_cls = _summary_writer()
        super().__init__(every_n_steps, preview, seed)
        self.log_dir = log_dir
        self.embedding, self.n_embedding = embedding, n_embedding
        self.embedding_data = embedding_data
        self.writer: Any = None

    def _open(self, sup: Any, config: dict[str, Any]) -> None:
        folder = self.log_dir or str(
            store.run_dir(getattr(sup, "run_name", "store/base")) / "tensorboard"
        )
        self.log_dir = folder
        self.writer = self._writer_cls(folder, purge_step=sup.global_step or None)
        self.writer.add_text(
            "hparams",
            "```\n" + json.dumps(config, indent=1, default=str) + "\n```",
            sup.global_step,
        )

    def _scalars(self, values: dict[str, float], step: int, epoch: Optional[int] = None) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step if epoch is None else epoch)
        if epoch is not None:
            self.writer.flush()

    def _image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image, step)

    def _finish(self, sup: Any) -> None:
        if self.embedding:
            self._log_embedding(sup)
        self.close()

    @torch.no_grad()
    def _log_embedding(self, sup: Any) -> None:
        source = sup.dataset if self.embedding_data is None else data.dataset(self.embedding_data)
        subset = _sample(source, self.n_embedding, self.seed)
        feats, labels = evaluate.extract_features(sup.get_backbone(), subset, 256)
        metadata = None
        if (labels >= 0).all():
            names = list(subset.classes or [])
            metadata = [names[i] if i < len(names) else str(i) for i in labels.tolist()]
        thumbs = subset.images
        if thumbs.shape[-1] > 32:
            thumbs = data.resize_uint8(thumbs, 32)
        self.writer.add_embedding(
            feats,
            metadata=metadata,
            label_img=thumbs.float() / 255,
            global_step=sup.global_step,
            tag="backbone",
        )

    def close(self) -> None:
        """Flush and close the event writer (nothing to do when none is open)."""
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


class WandbLogger(_RunLogger):
    """Write a run to Weights & Biases (the ``wandb`` extra), like :class:`TensorBoardLogger`.

    * the run's configuration (:func:`run_config`: method, hyper-parameters, training
      options) as the W&B run config;
    * ``step/<name>`` scalars every ``every_n_steps`` steps and ``epoch/<name>`` for every
      numeric value of each epoch record (with ``epoch``), all at the run's global step;
    * ``augmentations``: the grid of the method's training views, as an image.

    Args:
        project: the W&B project.
        name: the W&B run name; default: the last part of the run name.
        mode: ``"online"``, ``"offline"`` (written to disk only; ``wandb sync`` uploads it
            later) or None to let W&B decide (``WANDB_MODE``, login).
        dir: where W&B writes; default: the run folder (``store/run/`` for a run named
            ``"store/run"``).
        every_n_steps: steps between ``step/`` scalars.
        preview: log the augmentation grid at the start.
        seed: seed of the preview's image draw.
        **init_kwargs: anything else ``wandb.init`` takes (``entity``, ``tags``, ...).

    Raises:
        MissingExtraError: ``wandb`` is not installed.
    """

    def __init__(
        self,
        project: str = "super_selfish",
        name: Optional[str] = None,
        *,
        mode: Optional[str] = None,
        dir: Optional[str] = None,
        every_n_steps: int = 10,
        preview: bool = True,
        seed: int = 0,
        **init_kwargs: Any,
    ):
        self._wandb = require("wandb", "wandb", "WandbLogger")
        super().__init__(every_n_steps, preview, seed)
        self.project, self.name, self.mode, self.dir = project, name, mode, dir
        self.init_kwargs = init_kwargs
        self.run: Any = None

    def _open(self, sup: Any, config: dict[str, Any]) -> None:
        run_name = str(getattr(sup, "run_name", "store/base"))
        folder = self.dir or str(store.run_dir(run_name))
        os.makedirs(folder, exist_ok=True)
        self.run = self._wandb.init(
            project=self.project,
            name=self.name or os.path.basename(run_name),
            mode=self.mode,
            dir=folder,
            config=config,
            **self.init_kwargs,
        )

    def _scalars(self, values: dict[str, float], step: int, epoch: Optional[int] = None) -> None:
        if epoch is not None:
            values = {**values, "epoch": epoch}
        self.run.log(values, step=step)

    def _image(self, tag: str, image: torch.Tensor, step: int) -> None:
        pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        self.run.log({tag: self._wandb.Image(pixels)}, step=step)

    def _finish(self, sup: Any) -> None:
        self.run.finish()
