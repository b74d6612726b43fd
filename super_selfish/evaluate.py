"""Evaluation protocols for frozen or fine-tuned backbones.

Every protocol says exactly what it does, in its docstring and in the :class:`ProbeResult`
it can return (``return_details=True``); the plain call returns the top-1 test accuracy as a
float in [0, 1].

============  ==================================================================  ===========
protocol      what is trained / how the test set is scored                        backbone
============  ==================================================================  ===========
``knn``       nothing; weighted kNN vote of the k nearest training features        frozen
``linear``    a linear classifier on precomputed, standardised features            frozen
``mlp``       a one-hidden-layer MLP (BatchNorm, ReLU) on the same features         frozen
``finetune``  a copy of the backbone plus a new linear head, end to end            trained copy
============  ==================================================================  ===========

Guarantees: a frozen backbone is run in eval mode under ``no_grad`` (no gradient reaches
it, its BatchNorm statistics do not change, its train/eval mode is restored afterwards);
fine-tuning works on a deep copy, so the caller's backbone is untouched; nothing is ever
fitted on test data (standardisation statistics and learning-rate sweeps use the training
set only); every protocol is deterministic for a given ``seed`` and leaves the global RNG
as it found it. Datasets are anything :func:`super_selfish.data.dataset` accepts and must be
labelled; images are fed at their stored size (resize with ``data.dataset(..., size=N)``) as
float tensors in [0, 1] (a :class:`~super_selfish.backbones.Backbone` normalises them).
"""

from __future__ import annotations

import copy
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data, validate
from .errors import ConfigError, DataError, check

OPTIMIZERS = ("adam", "sgd", "lbfgs")
DEFAULT_LR = {"adam": 1e-2, "sgd": 0.1, "lbfgs": 1.0}  # linear probe
MLP_DEFAULT_LR = {"adam": 1e-3, "sgd": 0.05, "lbfgs": 1.0}
DEFAULT_SWEEP = {
    "adam": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    "sgd": (0.01, 0.03, 0.1, 0.3, 1.0),
    "lbfgs": (0.1, 0.3, 1.0),
}


@dataclass
class ProbeResult:
    """Outcome of one protocol: the accuracy plus exactly how it was obtained.

    ``float(result)`` is the accuracy. ``settings`` holds every hyper-parameter actually used
    (the chosen learning rate, the kNN ``k`` included: also :attr:`k`), ``sweep`` maps each
    swept learning rate to its validation accuracy (empty when no sweep ran), ``warnings``
    what was warned about while scoring (e.g. a ``k`` too large for the smallest class).

    Attributes:
        protocol: ``"knn"``, ``"linear"``, ``"mlp"`` or ``"finetune"``.
        accuracy: top-1 test accuracy in [0, 1].
        description: one sentence saying what was trained and how it was scored.
        n_train: training (or kNN memory) images used.
        n_test: test images scored.
        n_classes: classes of the classifier (largest label + 1).
        settings: the hyper-parameters used.
        sweep: validation accuracy per swept learning rate.
        seconds: wall time of the protocol after feature extraction (fine-tuning: all of it).
        warnings: warning texts raised while scoring.
    """

    protocol: str
    accuracy: float
    description: str
    n_train: int
    n_test: int
    n_classes: int
    settings: dict[str, Any] = field(default_factory=dict)
    sweep: dict[float, float] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def k(self) -> Optional[int]:
        """The number of neighbours the kNN protocol used (``None`` for other protocols).

        Returns:
            ``settings["k"]`` for kNN, else None.
        """
        return self.settings.get("k") if self.protocol == "knn" else None

    def __float__(self) -> float:
        return float(self.accuracy)

    def __str__(self) -> str:
        return (
            f"{self.description}: top-1 accuracy {self.accuracy:.4f} on {self.n_test} test "
            f"images ({self.n_classes} classes, {self.n_train} training images)"
        )


# ---------------------------------------------------------------------------------- helpers
def _device_of(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the global RNG seeded, restoring the caller's RNG state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    dataset: Any,
    batch_size: int = 512,
    device: Optional[torch.device | str] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of a whole dataset with the backbone in eval mode, on the CPU.

    Images go in as floats in [0, 1]. The backbone's train/eval mode is restored afterwards,
    so BN statistics never change and no gradient is recorded.

    Args:
        backbone: the network to run; its ``in_channels`` (when it has one) sets the channels
            the images are converted to.
        dataset: anything :func:`super_selfish.data.dataset` accepts; loaded into memory.
        batch_size: images per forward pass.
        device: where to run; default: the backbone's device.

    Returns:
        ``(features (N, D) float, labels (N,) long)``, both on the CPU.
    """
    ds = data.materialize(data.dataset(dataset, channels=getattr(backbone, "in_channels", None)))
    device = torch.device(device) if device is not None else _device_of(backbone)
    was_training = backbone.training
    backbone.eval()
    try:
        feats = [
            backbone(_as_float(ds.images[i : i + batch_size].to(device))).float().flatten(1).cpu()
            for i in range(0, len(ds), batch_size)
        ]
    finally:
        backbone.train(was_training)
    return torch.cat(feats), ds.labels.clone()


def _class_names(dataset: Any) -> list[str]:
    """Class names of a dataset when it has them (only looked up for messages)."""
    names = getattr(dataset, "classes", None)
    if names is None and isinstance(dataset, str):
        names = getattr(data.dataset(dataset), "classes", None)
    return list(names or [])


def _labelled(labels: torch.Tensor, argument: str) -> None:
    if len(labels) == 0:
        raise DataError(f"{argument} is empty: evaluation needs labelled images.")
    if (labels < 0).any():
        raise DataError(
            f"{argument} has unlabeled images: evaluation needs a label for every image."
        )


def _features_pair(
    backbone: nn.Module, train_dataset: Any, test_dataset: Any, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Frozen features and labels of both sets, on the backbone's device (kNN and probe
    heads then run on the GPU when the backbone is there).
    """
    train_x, train_y = extract_features(backbone, train_dataset, batch_size)
    test_x, test_y = extract_features(backbone, test_dataset, batch_size)
    _labelled(train_y, "train_dataset")
    _labelled(test_y, "test_dataset")
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    device = _device_of(backbone)
    return (train_x.to(device), train_y.to(device), test_x.to(device), test_y.to(device), n_classes)


def _accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred.cpu() == target.cpu()).float().mean())


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic per-class split of indices into (rest, held_out).

    ``fraction`` of each class (at least one image of every class with two or more images)
    is held out; the rest keeps at least one image of every class.

    Args:
        labels: class label per sample.
        fraction: share of each class to hold out, strictly between 0 and 1.
        seed: seed of the per-class permutations.

    Returns:
        ``(rest, held_out)``: sorted index tensors.

    Raises:
        ConfigError: ``fraction`` is not in (0, 1) (named ``val_fraction`` in the message).
    """
    check(0 < fraction < 1, "val_fraction", fraction, "a number strictly between 0 and 1")
    generator = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in torch.unique(labels).tolist():
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_held = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(members[:n_held])
        keep.append(members[n_held:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def balanced_subset(dataset: Any, fraction: float, seed: int = 0) -> data.TensorImageDataset:
    """A class-balanced, deterministic labelled subset (low-label protocols).

    Every class gets the same number of images, ``max(1, round(fraction * N / C))`` (capped
    by the class size), drawn by a permutation seeded with ``seed``; e.g. ``fraction=0.01`` of
    CIFAR-10's 50,000 images gives 50 per class.

    Args:
        dataset: a labelled dataset (anything :func:`super_selfish.data.dataset` accepts).
        fraction: share of the images to keep, in (0, 1].
        seed: seed of the draw.

    Returns:
        The subset, in memory, in the dataset's order.

    Raises:
        ConfigError: ``fraction`` is not in (0, 1].
        DataError: the dataset is empty or has unlabelled images.
    """
    validate.fraction(fraction, "label_fraction", " such as 0.01 or 0.1")
    ds = data.materialize(data.dataset(dataset))
    _labelled(ds.labels, "train_dataset")
    classes = torch.unique(ds.labels)
    per_class = max(1, round(fraction * len(ds) / len(classes)))
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in classes.tolist():
        members = (ds.labels == c).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return ds.subset(torch.cat(chosen).sort().values)


# ---------------------------------------------------------------------------------- kNN
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    n_classes: Optional[int] = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Weighted kNN on L2-normalised features (Wu et al., 2018): each of the ``k`` nearest
    training samples votes for its class with weight exp(cosine similarity / temperature).

    Args:
        train_features: (N, D) memory features.
        train_labels: (N,) memory labels.
        test_features: (M, D) features to classify.
        k: neighbours per query (capped at N).
        temperature: softness of the vote weights.
        n_classes: vote slots; default: the largest training label + 1.
        chunk: queries per similarity matrix, to bound memory.

    Returns:
        (M,) predicted labels.

    Raises:
        ConfigError: ``k`` is not a positive int or ``temperature`` is not positive.
    """
    validate.positive_int(k, "k")
    validate.temperature(temperature, example=" such as 0.07")
    n_classes = n_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    train = F.normalize(train_features, dim=1)
    train_labels = train_labels.to(train.device)
    preds = []
    for start in range(0, len(test_features), chunk):
        sims = F.normalize(test_features[start : start + chunk], dim=1) @ train.t()
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(sims), n_classes, device=sims.device)
        votes.scatter_add_(1, train_labels[top_idx], (top_sims / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


class KNNWarning(UserWarning):
    """``k`` does not fit the training set: some class has ``k`` or fewer images."""


def fitting_k(smallest_class: int) -> int:
    """The ``k`` suggested when the requested one does not fit: half the smallest class's
    count (at least 1), so every image's own class can still fill most of its neighbours.

    Args:
        smallest_class: image count of the smallest training class.

    Returns:
        The suggested ``k``.
    """
    return max(1, smallest_class // 2)


def check_knn_k(
    k: int,
    train_labels: torch.Tensor,
    class_names: Union[Sequence[str], Callable[[], Sequence[str]]] = (),
) -> Optional[str]:
    """Warn (:class:`KNNWarning`) when ``k`` is at least the smallest class's count in the
    training set; returns the warning text (``None`` when ``k`` fits).

    With ``k >= n_c`` for some class ``c``, an image of ``c`` finds at most ``n_c`` of its
    ``k`` neighbours in its own class (k=200 on 150 images per class: at least 50 votes go to
    other classes), so the vote leans to the larger classes and the accuracy says more about
    ``k`` than about the features.

    Args:
        k: the neighbour count to check.
        train_labels: labels of the kNN memory; negative (unlabelled) entries are ignored.
        class_names: names for the message, or a callable giving them (looked up only when
            a warning is due).

    Returns:
        The warning text, or None when ``k`` fits or there are no labels.
    """
    labels = train_labels.detach().cpu()
    labels = labels[labels >= 0]
    if len(labels) == 0:
        return None
    counts = torch.bincount(labels)
    present = counts > 0
    smallest = int(counts[present].min())
    if k < smallest:
        return None
    which = int(torch.nonzero(present & (counts == smallest))[0])
    names = list(class_names() if callable(class_names) else class_names)
    name = f"{names[which]!r}" if which < len(names) else f"class {which}"
    images = f"{smallest} image{'s' if smallest > 1 else ''}"
    advice = (
        f"Use k below {smallest}, e.g. k={fitting_k(smallest)} (half the smallest class)."
        if smallest > 1
        else "No k fits a class of one image: add images of that class or leave it out."
    )
    message = (
        f"kNN with k={k} on a training set whose smallest class ({name}) has "
        f"{images}: an image of that class finds at most {images} of its own class "
        f"among its {k} neighbours, so the vote favours the larger classes. {advice}"
    )
    warnings.warn(message, KNNWarning, stacklevel=4)
    return message


def _knn_result(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
    k: int,
    temperature: float,
    class_names: Union[Sequence[str], Callable[[], Sequence[str]]] = (),
) -> ProbeResult:
    started = time.perf_counter()
    validate.positive_int(k, "k")
    used_k = min(k, len(train_x))
    warning = check_knn_k(used_k, train_y, class_names)
    pred = knn_predict(train_x, train_y, test_x, used_k, temperature, n_classes)
    settings: dict[str, Any] = {"k": used_k, "temperature": temperature}
    if used_k != k:  # more neighbours asked for than training images
        settings["requested_k"] = k
    return ProbeResult(
        "knn",
        _accuracy(pred, test_y),
        f"weighted kNN (k={used_k}, temperature={temperature}) on L2-normalised frozen "
        "features, training set as memory",
        len(train_x),
        len(test_x),
        n_classes,
        settings,
        seconds=time.perf_counter() - started,
        warnings=[warning] if warning is not None else [],
    )


def knn_accuracy(
    backbone: nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 512,
    *,
    return_details: bool = False,
) -> Union[float, ProbeResult]:
    """Top-1 accuracy in [0, 1] of weighted kNN (k, temperature) on frozen features.

    The backbone (eval mode, no gradient) embeds both sets; features are L2-normalised; each
    test image is classified by its ``k`` most cosine-similar training images, each voting for
    its label with weight exp(similarity / temperature) (Wu et al., 2018). No training.

    Args:
        backbone: the frozen network to score.
        train_dataset: labelled images used as the kNN memory.
        test_dataset: labelled images to classify.
        k: neighbours per test image (200 as in Wu et al.; capped at the training set size,
            and a :class:`KNNWarning` says when it reaches the smallest class's count).
        temperature: vote temperature (0.1 as in Wu et al.).
        batch_size: images per forward pass during feature extraction.
        return_details: return a :class:`ProbeResult` instead of a float.

    Returns:
        The top-1 test accuracy, or the :class:`ProbeResult` with ``return_details``.

    Raises:
        ConfigError: ``k`` is not a positive int or ``temperature`` is not positive.
        DataError: a dataset is empty or has unlabelled images.
    """
    train_x, train_y, test_x, test_y, n_classes = _features_pair(
        backbone, train_dataset, test_dataset, batch_size
    )
    result = _knn_result(
        train_x,
        train_y,
        test_x,
        test_y,
        n_classes,
        k,
        temperature,
        lambda: _class_names(train_dataset),
    )
    return result if return_details else result.accuracy


# ---------------------------------------------------------------------------------- heads
def _batches(
    n: int, batch_size: int, generator: torch.Generator, device: Optional[torch.device] = None
) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator).to(device or torch.device("cpu"))
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        if len(idx) > 1 or n == 1:  # a lone sample would break BatchNorm layers
            yield idx


@contextmanager
def _threads_for(work: int) -> Iterator[None]:
    """One intra-op thread for tiny CPU problems (``work`` ~ batch x parameters): thousands
    of small steps avoid the per-operation thread synchronisation that dominates them,
    especially on a busy CPU. The caller's thread count is restored afterwards.
    """
    previous = torch.get_num_threads()
    if work < 50_000_000 and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _fit_head(
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: str,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
) -> nn.Module:
    """Train ``head`` on fixed features with cross-entropy (head already initialised)."""
    params = sum(p.numel() for p in head.parameters())
    with _threads_for(
        min(len(features), batch_size) * params if features.device.type == "cpu" else 1 << 40
    ):
        return _fit_head_inner(
            head,
            features,
            labels,
            optimizer=optimizer,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            seed=seed,
        )


def _fit_head_inner(
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    optimizer: str,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
) -> nn.Module:
    head.train()
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            head.parameters(),
            lr=lr,
            max_iter=epochs,
            history_size=20,
            line_search_fn="strong_wolfe",
        )
        weights = [p for p in head.parameters() if p.ndim > 1]

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(head(features), labels)
            loss = loss + 0.5 * weight_decay * sum((w**2).sum() for w in weights)
            loss.backward()
            return loss

        opt.step(closure)
        return head.eval()
    generator = torch.Generator().manual_seed(seed)
    if optimizer == "adam":
        opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = None
    else:
        opt = torch.optim.SGD(
            head.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    for _ in range(epochs):
        for idx in _batches(len(features), batch_size, generator, features.device):
            loss = F.cross_entropy(head(features[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if scheduler is not None:
            scheduler.step()
    return head.eval()


def _new_head(kind: str, dim: int, n_classes: int, hidden_dim: int, seed: int) -> nn.Module:
    with _seeded(seed, torch.device("cpu")):
        if kind == "linear":
            return nn.Linear(dim, n_classes)
        from .heads import MLPHead

        return MLPHead([dim, hidden_dim, n_classes], norm="batch")


def train_linear(
    features: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    epochs: int = 100,
    lr: Optional[float] = None,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
    optimizer: str = "adam",
) -> nn.Linear:
    """Logistic regression on precomputed features (standardise them first).

    ``adam``: mini-batch Adam, ``epochs`` passes; ``sgd``: mini-batch SGD (momentum 0.9,
    Nesterov) with a cosine decay over ``epochs``; ``lbfgs``: full-batch L-BFGS (strong-Wolfe
    line search) for ``epochs`` iterations with an L2 penalty of ``weight_decay / 2 * |W|^2``.
    Initialisation and order are seeded with ``seed``.

    Args:
        features: (N, D) training features.
        labels: (N,) class labels.
        n_classes: output size of the classifier.
        epochs: passes (adam, sgd) or iterations (lbfgs).
        lr: learning rate; default from :data:`DEFAULT_LR` for the optimizer.
        weight_decay: L2 regularisation of the weights.
        batch_size: mini-batch size (adam, sgd).
        seed: seed of the initialisation and the batch order.
        optimizer: ``"adam"``, ``"sgd"`` or ``"lbfgs"``.

    Returns:
        The trained ``nn.Linear`` in eval mode.

    Raises:
        ConfigError: ``optimizer`` is unknown.
    """
    check(optimizer in OPTIMIZERS, "optimizer", optimizer, f"one of {OPTIMIZERS}")
    head = _new_head("linear", features.shape[1], n_classes, 0, seed)
    return _fit_head(
        head,
        features,
        labels,
        optimizer=optimizer,
        epochs=epochs,
        lr=DEFAULT_LR[optimizer] if lr is None else lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
    )


def _standardise(train_x: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Standardise with the statistics of ``train_x`` only."""
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False) + 1e-6
    return tuple((x - mean) / std for x in (train_x, *others))


def _check_head_args(
    epochs: int, lr: Optional[float], optimizer: str, weight_decay: float, batch_size: int
) -> None:
    validate.positive_int(epochs, "epochs")
    check(optimizer in OPTIMIZERS, "optimizer", optimizer, f"one of {OPTIMIZERS}")
    validate.positive_number(lr, "lr", none="the optimizer's default")
    validate.non_negative_number(weight_decay, "weight_decay")
    validate.positive_int(batch_size, "batch_size")


def _head_result(
    kind: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
    *,
    epochs: int,
    lr: Optional[float],
    weight_decay: float,
    batch_size: int,
    optimizer: str,
    lr_sweep: Any,
    val_fraction: float,
    seed: int,
    hidden_dim: int = 0,
) -> ProbeResult:
    """Shared body of the linear and MLP probes on precomputed features."""
    _check_head_args(epochs, lr, optimizer, weight_decay, batch_size)
    started = time.perf_counter()
    fit = dict(
        optimizer=optimizer,
        epochs=epochs,
        weight_decay=weight_decay,
        batch_size=batch_size,
        seed=seed,
    )

    def train_and_score(
        x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor, rate: float
    ) -> float:
        x, x_eval = _standardise(x, x_eval)
        head = _new_head(kind, x.shape[1], n_classes, hidden_dim, seed).to(x.device)
        head = _fit_head(head, x, y, lr=rate, **fit)
        with torch.no_grad():
            return _accuracy(head(x_eval).argmax(1), y_eval)

    sweep: dict[float, float] = {}
    if lr_sweep is not None and lr_sweep is not False:
        grid = DEFAULT_SWEEP[optimizer] if lr_sweep is True else tuple(lr_sweep)
        check(
            len(grid) > 0 and all(validate.is_number(r) and r > 0 for r in grid),
            "lr_sweep",
            lr_sweep,
            "True or a non-empty sequence of positive learning rates",
        )
        fit_idx, val_idx = stratified_split(train_y.cpu(), val_fraction, seed)
        fit_idx, val_idx = fit_idx.to(train_y.device), val_idx.to(train_y.device)
        for rate in grid:  # train/val split carved from the TRAINING set only
            sweep[float(rate)] = train_and_score(
                train_x[fit_idx], train_y[fit_idx], train_x[val_idx], train_y[val_idx], rate
            )
        chosen = max(sweep, key=lambda r: (sweep[r], -r))  # ties: the smaller rate
    else:
        defaults = DEFAULT_LR if kind == "linear" else MLP_DEFAULT_LR
        chosen = defaults[optimizer] if lr is None else float(lr)
    accuracy = train_and_score(train_x, train_y, test_x, test_y, chosen)
    what = (
        "linear classifier"
        if kind == "linear"
        else f"MLP ({hidden_dim} hidden units, BatchNorm, ReLU)"
    )
    how = (
        f"{optimizer}, {epochs} {'iterations' if optimizer == 'lbfgs' else 'epochs'}, "
        f"weight decay {weight_decay:g}, lr {chosen:g}"
    )
    if sweep:
        how += (
            f" chosen from {sorted(sweep)} on a {val_fraction:g} validation split of the "
            "training set, then retrained on the full training set"
        )
    settings = dict(
        fit, lr=chosen, lr_sweep=sorted(sweep) or None, val_fraction=val_fraction if sweep else None
    )
    if kind == "mlp":
        settings["hidden_dim"] = hidden_dim
    return ProbeResult(
        kind,
        accuracy,
        f"{what} on frozen, standardised (training-set statistics) features; {how}",
        len(train_x),
        len(test_x),
        n_classes,
        settings,
        sweep,
        time.perf_counter() - started,
    )


def linear_probe(
    backbone: nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    epochs: int = 100,
    lr: Optional[float] = None,
    weight_decay: float = 1e-4,
    batch_size: int = 512,
    *,
    optimizer: str = "adam",
    lr_sweep: Union[bool, Sequence[float], None] = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    return_details: bool = False,
) -> Union[float, ProbeResult]:
    """Top-1 test accuracy in [0, 1] of a linear classifier trained on frozen features.

    1. Features of both sets are computed once with the backbone in eval mode under
       ``no_grad`` (no gradient reaches it, its BN statistics do not change).
    2. They are standardised with the training set's mean and std only.
    3. A linear layer is trained with cross-entropy: ``optimizer="adam"`` (default lr 1e-2,
       mini-batches of ``batch_size``, ``epochs`` passes), ``"sgd"`` (momentum 0.9, cosine
       decay, default lr 0.1) or ``"lbfgs"`` (full batch, ``epochs`` iterations, default lr
       1, L2 penalty). ``weight_decay`` regularises the weights.
    4. ``lr_sweep`` (``True`` for a default grid, or a list of rates) picks the rate with the
       best accuracy on a stratified ``val_fraction`` split carved from the TRAINING set, then
       retrains on the full training set; the test set is used once, for the final score.

    Args:
        backbone: the frozen network to score.
        train_dataset: labelled images to train the classifier on.
        test_dataset: labelled images to score.
        epochs: training passes (iterations for ``lbfgs``).
        lr: learning rate; None takes the optimizer's default (see step 3).
        weight_decay: weight decay (an L2 penalty for ``lbfgs``).
        batch_size: mini-batch size of the classifier's training (features are extracted
            512 images at a time).
        optimizer: ``"adam"``, ``"sgd"`` or ``"lbfgs"``.
        lr_sweep: None or False for no sweep, True for :data:`DEFAULT_SWEEP`, or the rates
            to try.
        val_fraction: share of each training class held out for the sweep.
        seed: seed of the initialisation, order and validation split.
        return_details: return a :class:`ProbeResult` instead of a float.

    Returns:
        The top-1 test accuracy, or the :class:`ProbeResult` with ``return_details``.

    Raises:
        ConfigError: an invalid ``epochs``, ``lr``, ``optimizer``, ``weight_decay``,
            ``batch_size``, ``lr_sweep`` or ``val_fraction``.
        DataError: a dataset is empty or has unlabelled images.
    """
    train_x, train_y, test_x, test_y, n_classes = _features_pair(
        backbone, train_dataset, test_dataset, 512
    )
    result = _head_result(
        "linear",
        train_x,
        train_y,
        test_x,
        test_y,
        n_classes,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        optimizer=optimizer,
        lr_sweep=lr_sweep,
        val_fraction=val_fraction,
        seed=seed,
    )
    return result if return_details else result.accuracy


def mlp_probe(
    backbone: nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    epochs: int = 100,
    lr: Optional[float] = None,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    *,
    hidden_dim: int = 512,
    optimizer: str = "adam",
    lr_sweep: Union[bool, Sequence[float], None] = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    return_details: bool = False,
) -> Union[float, ProbeResult]:
    """Top-1 test accuracy in [0, 1] of an MLP probe on frozen features.

    Like :func:`linear_probe` (frozen eval-mode backbone, features computed once and
    standardised with training statistics, optional learning-rate sweep on a split of the
    training set), but the classifier is ``Linear(d, hidden_dim) -> BatchNorm -> ReLU ->
    Linear(hidden_dim, classes)`` (the original library's ``eval_model='mlp'``), trained with
    Adam by default. Default learning rates: adam 1e-3, sgd 0.05, lbfgs 1.

    Args:
        backbone: the frozen network to score.
        train_dataset: labelled images the MLP is trained on.
        test_dataset: labelled images scored once at the end.
        epochs: training passes (iterations for ``lbfgs``).
        lr: learning rate; None takes :data:`MLP_DEFAULT_LR` for the optimizer.
        weight_decay: weight decay of the MLP.
        batch_size: mini-batch size of the MLP's training.
        hidden_dim: width of the hidden layer.
        optimizer: ``"adam"``, ``"sgd"`` or ``"lbfgs"``.
        lr_sweep: as in :func:`linear_probe`.
        val_fraction: held-out share of the training set for the sweep.
        seed: seed of the initialisation, batch order and validation split.
        return_details: return a :class:`ProbeResult` instead of a float.

    Returns:
        The top-1 test accuracy, or the :class:`ProbeResult` with ``return_details``.

    Raises:
        ConfigError: an invalid ``hidden_dim`` or any argument :func:`linear_probe` checks.
        DataError: a dataset is empty or has unlabelled images.
    """
    validate.positive_int(hidden_dim, "hidden_dim")
    train_x, train_y, test_x, test_y, n_classes = _features_pair(
        backbone, train_dataset, test_dataset, 512
    )
    result = _head_result(
        "mlp",
        train_x,
        train_y,
        test_x,
        test_y,
        n_classes,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        optimizer=optimizer,
        lr_sweep=lr_sweep,
        val_fraction=val_fraction,
        seed=seed,
        hidden_dim=hidden_dim,
    )
    return result if return_details else result.accuracy


# ---------------------------------------------------------------------------------- fine-tune
def _feature_dim(backbone: nn.Module, example: torch.Tensor) -> int:
    dim = getattr(backbone, "feature_dim", None)
    if isinstance(dim, int):
        return dim
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(_as_float(example[:2].to(_device_of(backbone))))
    backbone.train(was_training)
    return int(out.flatten(1).shape[1])


def _flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mask = torch.rand(len(images), generator=generator) < 0.5
    out = images.clone()
    out[mask] = out[mask].flip(-1)
    return out


def _augment_name(augment: Any) -> str:
    if augment is None or isinstance(augment, str):
        return str(augment)
    return getattr(augment, "__name__", type(augment).__name__)


def fine_tune(
    backbone: nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    epochs: int = 10,
    lr: float = 1e-3,
    *,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    label_fraction: Optional[float] = None,
    augment: Union[str, Callable[..., Any], None] = "flip",
    seed: int = 0,
    device: Optional[torch.device | str] = None,
    return_details: bool = False,
) -> Union[float, ProbeResult]:
    """Top-1 test accuracy in [0, 1] after fine-tuning a COPY of the backbone with a new head.

    The backbone is deep-copied (the caller's module, weights and BN statistics are
    untouched), every parameter of the copy is made trainable, and a new linear head is put
    on top through :class:`~super_selfish.supervisor.CombinedNet`. Both are trained end to end
    with cross-entropy (``adam``, or ``sgd`` with momentum 0.9 and cosine decay) for
    ``epochs`` passes over the training set in train mode (BatchNorm updates). ``augment``:
    ``"flip"`` (random horizontal flips), ``None``, or a callable ``(uint8 images,
    generator) -> float images or list of views`` (the first view is used), e.g. a preset from
    :func:`super_selfish.augment.build`. ``label_fraction`` (e.g. 0.01 or 0.1) first reduces
    the training set to a class-balanced, deterministic subset (:func:`balanced_subset`),
    the low-label protocol. The test set is scored once, in eval mode.

    Args:
        backbone: the network to fine-tune a copy of.
        train_dataset: labelled training images.
        test_dataset: labelled images scored at the end.
        epochs: passes over the (possibly reduced) training set.
        lr: learning rate of backbone and head.
        batch_size: images per step.
        weight_decay: weight decay of the optimizer.
        optimizer: ``"adam"`` or ``"sgd"``.
        label_fraction: None for all labels, else the share kept per class, in (0, 1].
        augment: ``"flip"``, None or a callable, as described above.
        seed: seed of the head, the batch order and the augmentation.
        device: where to train; default: the backbone's device.
        return_details: return a :class:`ProbeResult` instead of a float.

    Returns:
        The top-1 test accuracy, or the :class:`ProbeResult` with ``return_details``.

    Raises:
        ConfigError: an invalid ``epochs``, ``lr``, ``optimizer``, ``augment`` or
            ``label_fraction``.
        DataError: a dataset is empty or has unlabelled images.
    """
    validate.positive_int(epochs, "epochs")
    validate.positive_number(lr, "lr")
    check(optimizer in ("adam", "sgd"), "optimizer", optimizer, "'adam' or 'sgd'")
    check(
        augment in ("flip", None) or callable(augment),
        "augment",
        augment,
        "'flip', None or a callable(images, generator)",
    )
    started = time.perf_counter()
    channels = getattr(backbone, "in_channels", None)  # e.g. 1 for a grayscale backbone
    train = data.materialize(data.dataset(train_dataset, channels=channels))
    test = data.materialize(data.dataset(test_dataset, channels=channels))
    _labelled(train.labels, "train_dataset")
    _labelled(test.labels, "test_dataset")
    n_full = len(train)
    if label_fraction is not None:
        train = balanced_subset(train, label_fraction, seed)
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    device = torch.device(device) if device is not None else _device_of(backbone)

    from .heads import CombinedNet

    work = batch_size * sum(p.numel() for p in backbone.parameters())
    with _seeded(seed, device), _threads_for(work if device.type == "cpu" else 1 << 40):
        encoder = copy.deepcopy(backbone).to(device)
        for p in encoder.parameters():
            p.requires_grad_(True)
        head = nn.Linear(_feature_dim(encoder, train.images), n_classes)
        net = CombinedNet(encoder, head, freeze_backbone=False).to(device)
        params = [p for p in net.parameters() if p.requires_grad]
        if optimizer == "adam":
            opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
        steps = epochs * max(1, math.ceil(len(train) / batch_size))
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if optimizer == "sgd" else None
        )
        generator = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            for idx in _batches(len(train), batch_size, generator):
                images = train.images[idx]
                if augment == "flip":
                    images = _flip(images, generator)
                    inputs = _as_float(images.to(device))
                elif callable(augment):
                    views = augment(images.to(device), generator=generator)
                    inputs = _as_float(views[0] if isinstance(views, (list, tuple)) else views)
                else:
                    inputs = _as_float(images.to(device))
                loss = F.cross_entropy(net(inputs), train.labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if scheduler is not None:
                    scheduler.step()
        net.eval()
        with torch.no_grad():
            pred = torch.cat(
                [
                    net(_as_float(test.images[i : i + 512].to(device))).argmax(1).cpu()
                    for i in range(0, len(test), 512)
                ]
            )
    subset = (
        f" on a class-balanced {label_fraction:g} label subset ({len(train)} of {n_full} images)"
        if label_fraction is not None
        else ""
    )
    result = ProbeResult(
        "finetune",
        _accuracy(pred, test.labels),
        f"fine-tuning a copy of the backbone with a new linear head end to end{subset}; "
        f"{optimizer}, lr {lr:g}, {epochs} epochs, batch {batch_size}, weight decay "
        f"{weight_decay:g}, augmentation {_augment_name(augment)}",
        len(train),
        len(test),
        n_classes,
        dict(
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            weight_decay=weight_decay,
            optimizer=optimizer,
            label_fraction=label_fraction,
            seed=seed,
        ),
        seconds=time.perf_counter() - started,
    )
    return result if return_details else result.accuracy


# ---------------------------------------------------------------------------------- a run's data
HELD_OUT_SPLITS = ("test", "val")


@dataclass
class RunData:
    """The labelled sets a saved run is scored on, and what they are (for the user).

    Attributes:
        train: the kNN memory / probe training set.
        test: the held-out set scored.
        source: the dataset name or folder, or the type name of an in-memory source.
        train_split: the split of ``train``.
        test_split: the split of ``test`` (or how it was given).
        image_size: side the images were resized to, or None for their stored size.
    """

    train: data.ImageDataset
    test: data.ImageDataset
    source: str
    train_split: str
    test_split: str
    image_size: Optional[int]

    def describe(self) -> str:
        """One line naming the dataset, both splits with their sizes, and the image size."""
        size = f"{self.image_size} px" if self.image_size else "images at their stored size"
        return (
            f"dataset {self.source}, split {self.train_split!r} ({len(self.train)} images) "
            f"as kNN memory / probe training set, split {self.test_split!r} "
            f"({len(self.test)} images) scored, {size}"
        )


def _folder_sets(
    folder: str, split: str, size: Optional[int]
) -> tuple[data.ImageDataset, data.ImageDataset, str, str, str]:
    """(training set, held-out set, root, training split, held-out split) of a folder
    source: a dataset root with split sub-folders (``train`` + ``test``, or ``val`` standing
    in for it, as :func:`super_selfish.data.dataset` resolves them), or one split folder
    (``.../train``) whose parent holds the others.
    """
    train = data.dataset(folder, split, size=size)
    root, train_split = folder, train.split
    if train_split is None:  # a single set: a split folder whose parent holds the others?
        train_split = data._split_of(os.path.basename(os.path.normpath(folder)))
        root = os.path.dirname(os.path.abspath(folder))
    missing = ConfigError(
        f"Missing --test-dataset: no held-out split for the images in "
        f"{folder!r} (expected test/ or val/ next to its train/ folder); "
        "pass labelled held-out images."
    )
    if train_split is None:
        raise missing
    try:
        test = data.dataset(root, "test", size=size)
    except DataError as exc:  # a root with a train/ split only
        raise missing from exc
    if test.split is None or test.split == train_split:
        raise missing
    return train, test, root, train_split, test.split


def run_data(
    record: Optional[Mapping[str, Any]],
    dataset: Any = None,
    test_dataset: Any = None,
    size: Optional[int] = None,
    root: str = "datasets",
) -> RunData:
    """The data to score a saved run on: by default the data it was trained on.

    ``record`` is a checkpoint's ``payload["data"]`` (``{"source", "split", "image_size"}``,
    written by ``supervise()``). The run's training split is the kNN memory / probe training
    set and the matching held-out split is scored: ``test`` for named datasets; for a
    folder, its ``test`` (else ``val``) sub-folder, or sibling of a ``train`` folder. Images are
    loaded at the recorded size. ``dataset`` / ``size`` / ``test_dataset`` override; a run
    trained on in-memory data recorded no source, so it needs ``dataset``.

    Args:
        record: the checkpoint's data record, or None.
        dataset: the training data to use instead of the recorded source.
        test_dataset: the held-out data to use instead of the matching split.
        size: image side to use instead of the recorded one.
        root: where torchvision datasets live or are downloaded to.

    Returns:
        The :class:`RunData`.

    Raises:
        ConfigError: no source is known (in-memory training data and no ``dataset``), or no
            held-out split is found and ``test_dataset`` is None.
    """
    record = dict(record or {})
    source = dataset if dataset is not None else record.get("source")
    if source is None:
        raise ConfigError(
            "Missing --dataset: this run was trained on in-memory data (arrays, "
            "tensors, a Dataset object or a subset), so its checkpoint names no "
            "dataset; pass --dataset NAME_OR_FOLDER (and --size if it was "
            "resized) to say what to score it on."
        )
    split = record.get("split") if dataset is None else None
    if split in (None, "unlabeled", *HELD_OUT_SPLITS):  # STL-10's unlabeled split, or a run
        split = "train"  # trained on held-out images: fit on the labelled training split
    size = size if size is not None else record.get("image_size")
    test, test_split = None, "test"
    if (
        isinstance(source, (str, os.PathLike))
        and os.fspath(source) not in data.NAMES
        and os.path.isdir(source)
    ):
        label = os.fspath(source)
        if test_dataset is None:
            train, test, label, split, test_split = _folder_sets(label, split, size)
        else:
            train = data.dataset(label, split, size=size)
    else:
        label = (
            os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
        )
        train = data.dataset(source, split, size=size, root=root)
        if test_dataset is None and isinstance(source, str) and source in data.NAMES:
            test = data.dataset(source, "test", size=size, root=root)
    if test_dataset is not None:
        test = data.dataset(test_dataset, "test", size=size, root=root)
        test_split = (
            f"--test-dataset {test_dataset}"
            if isinstance(test_dataset, (str, os.PathLike))
            else "test_dataset"
        )
    if test is None:
        raise ConfigError(
            f"Missing --test-dataset: no held-out split is known for {source!r}; "
            "pass labelled held-out images."
        )
    return RunData(train, test, label, str(split), test_split, size)


# ---------------------------------------------------------------------------------- several
_FINETUNE_NAME = re.compile(r"^finetune(?:[-_@](\d+(?:\.\d+)?)(%|pct)?)?$")


def protocol_key(name: str) -> str:
    """Record key of a protocol name: ``knn`` -> ``knn_accuracy``, ``finetune-1%`` ->
    ``finetune_1pct_accuracy``.

    Args:
        name: ``knn``, ``linear``, ``mlp``, ``finetune`` or ``finetune-<percent>%``.

    Returns:
        The history / comparison field name.

    Raises:
        ConfigError: ``name`` is not a protocol.
    """
    fraction = _parse_protocol(name)[1]
    if name.startswith("finetune") and fraction is not None:
        return f"finetune_{fraction * 100:g}pct_accuracy".replace(".", "_")
    return f"{_parse_protocol(name)[0]}_accuracy"


def _parse_protocol(name: str) -> tuple[str, Optional[float]]:
    if name in ("knn", "linear", "mlp"):
        return name, None
    match = _FINETUNE_NAME.match(str(name))
    if match is None:
        raise ConfigError(
            f"Invalid evaluation protocol {name!r}: expected one of 'knn', "
            "'linear', 'mlp', 'finetune' or 'finetune-<percent>%' (e.g. "
            "'finetune-1%', 'finetune-10%')."
        )
    if match.group(1) is None:
        return "finetune", None
    value = float(match.group(1))
    fraction = value / 100 if match.group(2) else value
    check(0 < fraction <= 1, "protocol", name, "a label fraction in (0, 1]")
    return "finetune", fraction


def run_protocols(
    backbone: nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    protocols: Union[Sequence[str], Mapping[str, Mapping[str, Any]]] = ("knn",),
) -> dict[str, ProbeResult]:
    """Run several protocols on one backbone, extracting frozen features only once.

    ``protocols`` is a sequence of names (``knn``, ``linear``, ``mlp``, ``finetune``,
    ``finetune-1%``, ``finetune-10%``) or a mapping from name to keyword options of the
    matching function (e.g. ``{"knn": {"k": 20}, "linear": {"epochs": 50}}``). Returns
    ``{record key: ProbeResult}`` with keys from :func:`protocol_key`.

    Args:
        backbone: the network to score.
        train_dataset: labelled training (memory) images.
        test_dataset: labelled images to score.
        protocols: the names, or names with their options.

    Returns:
        ``{record key: ProbeResult}``, in the order the protocols were given.

    Raises:
        ConfigError: an unknown protocol or option, or an invalid option value.
    """
    if not isinstance(protocols, Mapping):
        if isinstance(protocols, str):
            protocols = (protocols,)
        protocols = {name: {} for name in protocols}
    parsed = {name: _parse_protocol(name) for name in protocols}
    results: dict[str, ProbeResult] = {}
    features = None
    for name, options in protocols.items():
        kind, fraction = parsed[name]
        options = dict(options or {})
        if kind == "finetune":
            if fraction is not None:
                options.setdefault("label_fraction", fraction)
            results[protocol_key(name)] = fine_tune(
                backbone, train_dataset, test_dataset, return_details=True, **options
            )
            continue
        if features is None:
            features = _features_pair(backbone, train_dataset, test_dataset, 512)
        if kind == "knn":
            unknown = set(options) - {"k", "temperature"}
            if unknown:
                raise ConfigError(
                    f"Invalid options for 'knn': {sorted(unknown)}; expected k and temperature."
                )
            results[protocol_key(name)] = _knn_result(
                *features,
                k=options.get("k", 200),
                temperature=options.get("temperature", 0.1),
                class_names=lambda: _class_names(train_dataset),
            )
        else:
            defaults = dict(
                epochs=100,
                lr=None,
                weight_decay=1e-4,
                batch_size=512 if kind == "linear" else 256,
                optimizer="adam",
                lr_sweep=None,
                val_fraction=0.2,
                seed=0,
            )
            if kind == "mlp":
                defaults["hidden_dim"] = 512
            unknown = set(options) - set(defaults)
            if unknown:
                raise ConfigError(
                    f"Invalid options for {name!r}: {sorted(unknown)}; expected "
                    f"some of {sorted(defaults)}."
                )
            defaults.update(options)
            results[protocol_key(name)] = _head_result(kind, *features, **defaults)
    return results
