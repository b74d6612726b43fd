"""Figures: training curves, embeddings (t-SNE / PCA), augmentation grids, comparisons.

matplotlib is optional (``pip install super_selfish[viz]``); every plotting function raises a
clear ImportError without it. Figures are built with ``matplotlib.figure.Figure`` (no pyplot
state, nothing piles up in scripts); pass ``path=`` to write a PNG, and a notebook with
``%matplotlib inline`` shows the returned figure. :func:`tsne`, :func:`pca` and
:func:`view_grid` need only torch.

t-SNE (van der Maaten & Hinton, 2008) is implemented here in torch because scikit-learn is not
a dependency: exact O(N^2) gradients, meant for up to a few thousand points; inputs are first
reduced to 50 dimensions by PCA. ``method="pca"`` is the instant alternative.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data, evaluate, store
from .errors import ConfigError, DataError, check

__all__ = [
    "tsne",
    "pca",
    "view_grid",
    "plot_history",
    "plot_embedding",
    "plot_augmentations",
    "plot_comparison",
    "plot_run",
    "load_history",
    "metric_label",
    "plain_number",
]


def _figure(n_panels: int = 1, width: float = 4.2, height: float = 3.2, cols: int = 3):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib: pip install super_selfish[viz] (or pip install matplotlib)."
        ) from exc
    cols = max(1, min(cols, n_panels))
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * rows))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    # fixed margins: several times faster to draw than constrained/tight layout
    fig.subplots_adjust(
        left=0.5 / (width * cols) + 0.04,
        right=0.98,
        top=1 - 0.45 / (height * rows),
        bottom=0.75 / (height * rows),
        wspace=0.32,
        hspace=0.6,
    )
    return fig, axes


def _finish(fig: Any, path: Optional[Union[str, os.PathLike]]) -> Any:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


# ---------------------------------------------------------------------------------- history
def load_history(source: Any) -> list[dict[str, Any]]:
    """Epoch records from a list of dicts, a Supervisor, a ``history.json``/``.csv`` file, a
    run folder or a run name (``store/base`` -> ``store/base/history.json``).

    Args:
        source: the records themselves, an object with a ``history`` list, or a path or run
            name (``history.csv`` is read when there is no ``history.json``).

    Returns:
        The list of epoch records (CSV values as floats, empty cells as NaN).

    Raises:
        DataError: no history file is found.
    """
    if isinstance(source, list):
        return source
    if hasattr(source, "history") and isinstance(source.history, list):
        return source.history
    path = Path(source)
    if path.is_dir() or not path.suffix or path.suffix == ".pt":
        folder = path if path.is_dir() and (path / "history.json").exists() else store.run_dir(path)
        path = folder / "history.json"
        if not path.exists() and (folder / "history.csv").exists():
            path = folder / "history.csv"
    if not path.exists():
        raise DataError(
            f"No history at {str(path)!r}: train with supervise(..., name=...) "
            "(which writes <run folder>/history.json) or pass the file."
        )
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    with open(path) as handle:
        return json.load(handle)


def _number(value: str) -> Any:
    try:
        return float(value) if value not in ("", None) else float("nan")
    except ValueError:
        return value


_SKIP = {"epoch", "seconds"}

_LABELS = {
    "loss": "training loss",
    "lr": "learning rate (end of epoch)",
    "images_per_s": "throughput (images/s)",
    "seconds": "time (s)",
    "train_seconds": "training time (s)",
    "eval_seconds": "evaluation time (s)",
    "peak_memory_mb": "peak memory (MB)",
    "final_loss": "final training loss",
    "embedding_std": "embedding std",
    "effective_rank": "effective rank",
    "epochs": "epochs",
    "steps": "steps",
}
_PROTOCOL_LABELS = {
    "knn": "kNN",
    "linear": "linear probe",
    "mlp": "MLP probe",
    "finetune": "fine-tuning",
}


def metric_label(key: str, k: Optional[int] = None) -> str:
    """A human label for a history or comparison field: ``knn_accuracy`` -> ``kNN accuracy``
    (``kNN accuracy (k=20)`` with ``k``), ``finetune_1pct_gain`` -> ``fine-tuning (1% labels)
    gain over untrained``, ``images_per_s`` -> ``throughput (images/s)``.

    Args:
        key: the field name.
        k: the kNN neighbour count to mention for ``knn_*`` fields.

    Returns:
        The label; unknown fields get their underscores replaced by spaces.
    """
    if key in _LABELS:
        return _LABELS[key]
    for suffix, what in (("_accuracy", "accuracy"), ("_gain", "gain over untrained")):
        if key.endswith(suffix):
            protocol = key[: -len(suffix)]
            fraction = ""
            if protocol.startswith("finetune_") and protocol.endswith("pct"):
                fraction = f" ({protocol[len('finetune_') : -3].replace('_', '.')}% labels)"
                protocol = "finetune"
            name = _PROTOCOL_LABELS.get(protocol, protocol.replace("_", " "))
            extra = f" (k={k})" if protocol == "knn" and k is not None else ""
            return f"{name}{fraction} {what}{extra}"
    return key.replace("_", " ")


def plain_number(value: float) -> str:
    """A number as people write it: 3 significant digits, no exponent (``1700``,
    ``0.412``, ``0.0005``, ``0``).

    Args:
        value: the number; NaN and infinities are written as ``str`` does.

    Returns:
        The text (thousands separated by commas from 1,000 up).
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    decimals = max(0, 2 - math.floor(math.log10(magnitude)))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _plain_axis(axis: Any) -> None:
    """Tick labels as plain numbers (no offset, no scientific notation)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _pos: plain_number(value)))


def _epoch_axis(ax: Any, epochs: Sequence[float]) -> None:
    """Integer epoch ticks that also read right for one or two epochs."""
    from matplotlib.ticker import MaxNLocator

    low, high = min(epochs), max(epochs)
    if high - low < 10:  # few epochs: one tick per epoch, half an epoch of room each side
        ax.set_xticks(range(int(math.floor(low)), int(math.ceil(high)) + 1))
        ax.set_xlim(low - 0.5, high + 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_history(
    source: Any,
    keys: Optional[Sequence[str]] = None,
    path: Optional[Union[str, os.PathLike]] = None,
    title: Optional[str] = None,
):
    """One panel per quantity over epochs: loss, lr, throughput, monitor accuracies
    (``*_accuracy`` share a panel) and collapse statistics (``embedding_std``,
    ``effective_rank``). ``keys`` restricts the panels.

    Args:
        source: the history, as :func:`load_history` accepts it.
        keys: the numeric fields to draw; default: all of them except epoch and seconds.
        path: write a PNG there when given.
        title: a title over the panels.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        DataError: the history is empty or not found.
        ConfigError: ``keys`` names a field the history does not hold.
        ImportError: matplotlib is not installed.
    """
    history = load_history(source)
    if not history:
        raise DataError("history is empty: nothing to plot (train at least one epoch).")
    numeric = [
        k
        for k in dict.fromkeys(k for r in history for k in r)
        if k not in _SKIP
        and any(
            isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for r in history
        )
    ]
    if keys is not None:
        missing = [k for k in keys if k not in numeric]
        if missing:
            raise ConfigError(f"Invalid keys {missing}: the history holds {numeric}.")
        numeric = list(keys)
    accuracy = [k for k in numeric if k.endswith("_accuracy")]
    panels: list[list[str]] = [[k] for k in numeric if k not in accuracy]
    if accuracy:
        panels.insert(1, accuracy)
    fig, axes = _figure(len(panels))
    epochs = [r["epoch"] for r in history if isinstance(r.get("epoch"), (int, float))]
    for ax, group in zip(axes, panels):
        for key in group:
            points = [
                (r["epoch"], r[key])
                for r in history
                if isinstance(r.get(key), (int, float)) and "epoch" in r
            ]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if len(points) < 30 else None, label=metric_label(key))
        ax.set_xlabel("epoch")
        if epochs:
            _epoch_axis(ax, epochs)
        ax.set_title(metric_label(group[0]) if len(group) == 1 else "accuracy")
        if group[0] == "lr":  # linear from 0: schedules end at 0, which a log scale hides
            ax.set_ylim(
                bottom=0,
                top=max([r["lr"] for r in history if isinstance(r.get("lr"), (int, float))] + [0.0])
                * 1.1
                or 1.0,
            )
        _plain_axis(ax.yaxis)
        if len(group) > 1 or group[0].endswith("_accuracy"):
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
        fig.subplots_adjust(top=1 - 0.8 / fig.get_figheight())
    return _finish(fig, path)


# ---------------------------------------------------------------------------------- embeddings
def pca(features: torch.Tensor, n_components: int = 2) -> torch.Tensor:
    """Project centred features on their top ``n_components`` principal directions.

    Args:
        features: (N, D) features (further dimensions are flattened).
        n_components: output dimensions, capped at min(N, D).

    Returns:
        Float (N, ``n_components``) coordinates on the CPU.
    """
    x = features.detach().double().flatten(1).cpu()
    x = x - x.mean(0)
    n_components = min(n_components, *x.shape)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return (x @ v[:n_components].t()).float()


def _joint_probabilities(x: torch.Tensor, perplexity: float) -> torch.Tensor:
    """Symmetric t-SNE affinities P: Gaussian conditionals over each point's
    ``3 * perplexity`` nearest neighbours, calibrated to ``perplexity`` by bisection.
    """
    n = len(x)
    k = min(n - 1, int(3 * perplexity) + 1)
    sq = (x * x).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp_min(0)
    dist.fill_diagonal_(float("inf"))
    near, index = dist.topk(k, dim=1, largest=False)
    near = near - near[:, :1]  # row shift: same conditionals, no underflow
    beta = 1.0 / near.mean(1).clamp_min(1e-12)
    lo = torch.zeros(n, dtype=x.dtype)
    hi = torch.full((n,), float("inf"), dtype=x.dtype)
    target = math.log(perplexity)
    for _ in range(64):  # bisection on the precision of every row at once
        p = torch.exp(-near * beta[:, None])
        total = p.sum(1)
        entropy = total.log() + beta * (near * p).sum(1) / total
        too_flat = entropy > target  # entropy too high: sharpen (larger beta)
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(torch.isinf(hi), beta * 2, (lo + hi) / 2)
    p = torch.exp(-near * beta[:, None])
    conditional = torch.zeros(n, n, dtype=x.dtype)
    conditional.scatter_(1, index, p / p.sum(1, keepdim=True))
    return ((conditional + conditional.t()) / (2 * n)).clamp_min(1e-12)


def _sq_distances(y: torch.Tensor) -> torch.Tensor:
    sq = (y * y).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * y @ y.t()).clamp_min(0)


def tsne(
    features: torch.Tensor,
    n_components: int = 2,
    perplexity: float = 30.0,
    iterations: int = 500,
    seed: int = 0,
    pca_dims: int = 50,
    learning_rate: Optional[float] = None,
) -> torch.Tensor:
    """Exact t-SNE in torch: (N, D) features -> (N, ``n_components``) coordinates.

    PCA to ``pca_dims`` first; perplexity-calibrated Gaussian affinities over the
    ``3 * perplexity`` nearest neighbours (bisection per row);
    Student-t similarities in the map; gradient descent with momentum (0.5, then 0.8) and
    adaptive gains; early exaggeration 12 for the first quarter of the iterations (at most
    250); learning rate ``max(N / 48, 50)`` unless given. Deterministic for a ``seed``.

    Args:
        features: (N, D) features, N >= 4.
        n_components: map dimensions.
        perplexity: effective neighbour count (capped at (N - 1) / 3).
        iterations: gradient steps.
        seed: seed of the initial map.
        pca_dims: PCA dimensions applied first when D is larger.
        learning_rate: step size; None for ``max(N / 48, 50)``.

    Returns:
        Float (N, ``n_components``) coordinates, centred.

    Raises:
        ConfigError: fewer than 4 points.
    """
    x = features.detach().double().flatten(1).cpu()
    n = len(x)
    check(n >= 4, "features", f"{n} points", "at least 4 points for t-SNE")
    with evaluate._threads_for(n * n):  # small matrices: one thread avoids sync overhead
        return _tsne(x, n_components, perplexity, iterations, seed, pca_dims, learning_rate)


def _tsne(
    x: torch.Tensor,
    n_components: int,
    perplexity: float,
    iterations: int,
    seed: int,
    pca_dims: int,
    learning_rate: Optional[float],
) -> torch.Tensor:
    n = len(x)
    if x.shape[1] > pca_dims:
        x = pca(x, pca_dims).double()
    perplexity = min(float(perplexity), (n - 1) / 3)
    p = _joint_probabilities(x, perplexity).float()
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(n, n_components, generator=generator) * 1e-4
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    rate = learning_rate or max(n / 48, 50.0)
    exaggerate = min(250, iterations // 4)
    for it in range(iterations):
        weights = 1.0 / (1.0 + _sq_distances(y))
        weights.fill_diagonal_(0.0)
        q = weights / weights.sum()
        pq = ((12.0 if it < exaggerate else 1.0) * p - q) * weights
        grad = 4.0 * (pq.sum(1, keepdim=True) * y - pq @ y)
        same = (grad > 0) == (update > 0)
        gains = torch.where(same, gains * 0.8, gains + 0.2).clamp_min(0.01)
        update = (0.5 if it < exaggerate else 0.8) * update - rate * gains * grad
        y = y + update
        y = y - y.mean(0)
    return y


def _subset_features(backbone: nn.Module, dataset: Any, n: int, seed: int):
    ds = data.materialize(data.dataset(dataset))
    if len(ds) > n:
        order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
        ds = ds.subset(order.sort().values)
    feats, labels = evaluate.extract_features(backbone, ds)
    return feats, labels, list(ds.classes or [])


def plot_embedding(
    source: Union[nn.Module, torch.Tensor],
    dataset: Any = None,
    labels: Optional[torch.Tensor] = None,
    *,
    n: int = 1000,
    method: str = "tsne",
    class_names: Optional[Sequence[str]] = None,
    seed: int = 0,
    path: Optional[Union[str, os.PathLike]] = None,
    title: Optional[str] = None,
    ax: Any = None,
):
    """2-D map of embeddings coloured by label.

    ``source`` is a backbone (then ``n`` images of ``dataset``, drawn with ``seed``, are
    embedded in eval mode) or a (N, D) feature tensor (with ``labels``). ``method``:
    ``"tsne"`` (see :func:`tsne`) or ``"pca"``.

    Args:
        source: a backbone or a (N, D) feature tensor.
        dataset: the images to embed when ``source`` is a backbone.
        labels: per-point labels for a feature tensor (colours); None or all -1 draws one
            colour.
        n: images drawn from ``dataset``.
        method: ``"tsne"`` or ``"pca"``.
        class_names: legend names by label; default: the dataset's classes.
        seed: seed of the image draw and the t-SNE map.
        path: write a PNG there when given.
        title: the panel title; default names the method and point count.
        ax: draw into this matplotlib axes instead of a new figure.

    Returns:
        The matplotlib ``Figure`` (that of ``ax`` when given).

    Raises:
        ConfigError: an unknown ``method``, or a backbone without ``dataset``.
    """
    check(method in ("tsne", "pca"), "method", method, "'tsne' or 'pca'")
    if isinstance(source, nn.Module):
        if dataset is None:
            raise ConfigError("plot_embedding(backbone) needs a dataset to embed.")
        feats, labels, names = _subset_features(source, dataset, n, seed)
        class_names = class_names or names
    else:
        feats = source
    coords = tsne(feats, seed=seed) if method == "tsne" else pca(feats)
    if ax is None:
        fig, (ax,) = _figure(1, 5.5, 4.5)
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.92)
    else:
        fig = ax.figure
    if labels is None or (labels < 0).all():
        ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.7)
    else:
        from matplotlib import colormaps

        cmap = colormaps["tab10" if int(labels.max()) < 10 else "tab20"]
        for c in torch.unique(labels).tolist():
            mask = labels == c
            name = class_names[c] if class_names and c < len(class_names) else str(c)
            ax.scatter(
                coords[mask, 0],
                coords[mask, 1],
                s=6,
                alpha=0.75,
                color=cmap(c % cmap.N),
                label=name,
            )
        ax.legend(fontsize=7, markerscale=2, loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(
        title or f"{method.upper() if method == 'pca' else 't-SNE'} of {len(coords)} embeddings"
    )
    return _finish(fig, path)


# ---------------------------------------------------------------------------------- augmentations
def view_grid(
    views: Any, images: torch.Tensor, n_views: int = 4, seed: int = 0, padding: int = 2
) -> torch.Tensor:
    """(3, H, W) float image in [0, 1]: one row per image, the original then ``n_views``
    augmented views, drawn with a generator seeded with ``seed``.

    ``views`` is a preset name or a ``Views``/``Pipeline`` (drawn by
    :func:`super_selfish.augment.preview`, which enlarges small images and circles
    fixations), or any ``callable(images, generator=...)`` returning a view or a list of views
    (then views are resized to the image size and tiled here).

    Args:
        views: preset name, ``Views``/``Pipeline``, or callable.
        images: (N, C, H, W) batch, uint8 or float in [0, 1].
        n_views: augmented views per image.
        seed: seed of the augmentation generator.
        padding: pixels between tiles (callable ``views`` only).

    Returns:
        The grid as a float tensor (3, H, W) in [0, 1].
    """
    from . import augment

    images = data.images_to_uint8(images, "images") if images.dtype != torch.uint8 else images
    generator = torch.Generator().manual_seed(seed)
    preview = getattr(augment, "preview", None)
    if preview is not None and isinstance(views, (str, augment.Views, augment.Pipeline)):
        grid = preview(views, images, n_views=n_views, generator=generator, labels=False)
        return torch.from_numpy(np.asarray(grid.convert("RGB")).copy()).permute(2, 0, 1) / 255.0
    if isinstance(views, str):
        views = augment.build(views, images.shape[-1])
    made: list[torch.Tensor] = []
    while len(made) < n_views:
        out = views(images, generator=generator)
        made.extend(out if isinstance(out, (list, tuple)) else [out])
    columns = [images.float() / 255]
    for view in made[:n_views]:
        view = evaluate._as_float(view.detach().cpu())[:, :3]
        if view.shape[1] == 1:
            view = view.expand(-1, 3, -1, -1)
        if view.shape[-2:] != images.shape[-2:]:
            view = F.interpolate(view, size=images.shape[-2:], mode="bilinear", align_corners=False)
        columns.append(view.clamp(0, 1))
    tiles = torch.stack(columns, 1).flatten(0, 1)  # row-major: image, then its views
    from torchvision.utils import make_grid

    return make_grid(tiles, nrow=len(columns), padding=padding, pad_value=1.0)


def plot_augmentations(
    views: Any,
    dataset: Any = "cifar10-sample",
    n_images: int = 6,
    n_views: int = 4,
    seed: int = 0,
    path: Optional[Union[str, os.PathLike]] = None,
    title: Optional[str] = None,
):
    """Figure of :func:`view_grid` for ``n_images`` images of ``dataset`` (drawn with
    ``seed``); ``views`` is a preset name or a Views object.

    Args:
        views: what :func:`view_grid` accepts.
        dataset: anything :func:`super_selfish.data.dataset` accepts, or a tensor of images
            (its first ``n_images`` are used).
        n_images: rows of the grid.
        n_views: augmented views per row.
        seed: seed of the image draw and the augmentations.
        path: write a PNG there when given.
        title: the title; default: the preset, the view sizes and the originals' size.

    Returns:
        The matplotlib ``Figure``.
    """
    if isinstance(dataset, torch.Tensor):
        images = dataset[:n_images]
    else:
        ds = data.materialize(data.dataset(dataset))
        order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
        images = ds.images[order[:n_images].sort().values]
    grid = view_grid(views, images, n_views, seed)
    fig, (ax,) = _figure(1, max(1.1 * (n_views + 1), 4.0), 1.1 * len(images) + 0.5)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.6 / fig.get_figheight())
    ax.imshow(grid.permute(1, 2, 0).numpy())
    # column names as x tick labels on top: "original", "view 1", ...
    cell = grid.shape[-1] / (n_views + 1)
    ax.set_xticks([cell * (i + 0.5) for i in range(n_views + 1)])
    ax.set_xticklabels(["original", *(f"view {i + 1}" for i in range(n_views))], fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0, pad=2)
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title or _augmentation_title(views, images, n_views), fontsize=9, pad=16)
    return _finish(fig, path)


def _augmentation_title(views: Any, images: torch.Tensor, n_views: int) -> str:
    """Preset name, the sizes of the views shown (the preset's views, cycled) and the
    originals' size.
    """
    from .augment.preview import describe_sizes

    name = views if isinstance(views, str) else "custom views"
    sizes = getattr(views, "sizes", None)
    if isinstance(views, str):
        from . import augment

        sizes = augment.build(views, images.shape[-1]).sizes
    shown = [sizes[i % len(sizes)] for i in range(n_views)] if sizes else []
    what = f": {describe_sizes(shown)}" if shown else ""
    return f"{name}{what}; originals {images.shape[-1]} px"


# ---------------------------------------------------------------------------------- comparison
COMPARISON_METRICS = ("train_seconds", "images_per_s", "peak_memory_mb")
BASELINE_COLOUR = "0.6"


def _comparison_title(records: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """What was compared: dataset (images), image size, budget, batch size, backbone."""
    trained = [r for r in records if not _is_baseline(r)]
    budget = meta.get("budget") or next((r["budget"] for r in trained if "budget" in r), None)
    size = meta.get("image_size")
    parts = []
    if meta.get("dataset"):
        count = f", {meta['n_train']:,} images" if meta.get("n_train") else ""
        parts.append(f"{meta['dataset']}{count}")
    if size:
        parts.append(
            f"{size} px" if isinstance(size, int) else "/".join(str(v) for v in size) + " px"
        )
    if budget:
        parts.append(f"{budget} per method")
    if meta.get("batch_size"):
        parts.append(f"batch {meta['batch_size']}")
    backbone = meta.get("backbone") or next(
        (r["backbone"] for r in trained if "backbone" in r), None
    )
    if backbone:
        parts.append(str(backbone))
    return "Comparison: " + ", ".join(parts) if parts else "Comparison"


def _is_baseline(record: dict[str, Any]) -> bool:
    return record.get("baseline") is not None and record.get("baseline") == record.get("method")


def plot_comparison(
    table: Any,
    metrics: Optional[Sequence[str]] = None,
    path: Optional[Union[str, os.PathLike]] = None,
    title: Optional[str] = None,
):
    """Bar charts, one panel per metric, one bar per method (a ``ComparisonTable`` or a list
    of records). Default metrics: every ``*_accuracy`` column, then training time,
    throughput and peak memory.

    The title names the dataset, image size, budget and batch size (from ``table.meta``);
    panels and values use human labels and plain numbers. The untrained baseline row is a
    grey hatched bar and a dashed line across each accuracy panel, and every method's bar
    says its gain over it. Training losses are never drawn side by side: each method
    minimises its own objective (InfoNCE, MSE, cross-entropy over rotations, ...), so their
    values do not compare; plot each method's curve with :func:`plot_history` instead.

    Args:
        table: a ``ComparisonTable`` or a sequence of record dicts.
        metrics: the columns to draw; default as above.
        path: write a PNG there when given.
        title: the title; default built from ``table.meta``.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        DataError: the comparison is empty.
        ConfigError: a metric is a loss or not a column of the comparison.
    """
    records = list(table)
    if not records:
        raise DataError("the comparison is empty: nothing to plot.")
    columns = list(dict.fromkeys(k for r in records for k in r))
    if metrics is None:
        metrics = [k for k in columns if k.endswith("_accuracy")] + [
            k for k in COMPARISON_METRICS if k in columns
        ]
    losses = [m for m in metrics if "loss" in m]
    if losses:
        raise ConfigError(
            f"Invalid metrics {losses}: each method minimises its own loss, so "
            "training losses of different methods are not comparable; plot each "
            "method's curve with plots.plot_history(table.histories[label])."
        )
    missing = [m for m in metrics if m not in columns]
    if missing:
        raise ConfigError(f"Invalid metrics {missing}: the comparison has {columns}.")
    meta = dict(getattr(table, "meta", {}) or {})
    fig, axes = _figure(len(metrics), 3.6, 3.2, cols=3 if len(metrics) in (5, 6) else 4)
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    trained = [str(r.get("method")) for r in records if not _is_baseline(r)]
    colour_of = {name: palette(i % 10) for i, name in enumerate(trained)}  # same in every panel
    for ax, metric in zip(axes, metrics):
        rows = [r for r in records if isinstance(r.get(metric), (int, float))]
        names = [str(r.get("method", i)) for i, r in enumerate(rows)]
        values = [float(r[metric]) for r in rows]
        colours = [
            BASELINE_COLOUR if _is_baseline(r) else colour_of.get(n, palette(0))
            for n, r in zip(names, rows)
        ]
        bars = ax.bar(range(len(rows)), values, color=colours)
        accuracy = metric.endswith("_accuracy")
        gain_key = metric[: -len("_accuracy")] + "_gain" if accuracy else None
        labels = []
        for bar, record, value in zip(bars, rows, values):
            text = f"{value:.3f}" if accuracy else plain_number(value)
            if _is_baseline(record):
                bar.set_hatch("//")
                bar.set_edgecolor("0.3")
            elif gain_key and isinstance(record.get(gain_key), (int, float)):
                text += f"\n({record[gain_key]:+.3f})"
            labels.append(text)
        for text in ax.bar_label(bars, labels=labels, fontsize=7, padding=2):
            text.set_bbox({"facecolor": "white", "edgecolor": "none", "pad": 0.3})
        for base in (r for r in rows if _is_baseline(r) and accuracy):
            ax.axhline(base[metric], color="0.3", linestyle="--", linewidth=1, zorder=0)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(
            [f"{n}\n(baseline)" if _is_baseline(r) else n for n, r in zip(names, rows)],
            rotation=30,
            ha="right",
            fontsize=8,
        )
        ks = {r.get(metric[: -len("_accuracy")] + "_k") for r in rows} if accuracy else set()
        ax.set_title(metric_label(metric, next(iter(ks)) if len(ks) == 1 else None), fontsize=10)
        if accuracy:
            ax.set_ylim(0, min(1.0, max(values + [0.0]) * 1.25) or 1.0)
        else:
            ax.margins(y=0.2)
        _plain_axis(ax.yaxis)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or _comparison_title(records, meta), fontsize=11)
    fig.subplots_adjust(top=1 - 0.75 / fig.get_figheight(), bottom=0.85 / fig.get_figheight())
    return _finish(fig, path)


# ---------------------------------------------------------------------------------- a run
def load_backbone(payload: dict[str, Any]) -> Optional[nn.Module]:
    """The trained backbone of a checkpoint payload (``store.read(name)``), rebuilt from its
    registry name; ``None`` for a custom backbone module that cannot be rebuilt by name.

    Args:
        payload: the checkpoint payload.

    Returns:
        The backbone in eval mode, or None.
    """
    from . import backbones

    hparams = payload.get("hparams", {})
    if hparams.get("backbone") not in backbones.available():
        return None
    backbone = backbones.build(
        hparams["backbone"],
        norm=hparams.get("norm", "batch"),
        in_channels=hparams.get("in_channels", 3),
        probe_size=hparams.get("image_size") or 32,
    )
    prefix = "backbone."
    backbone.load_state_dict(
        {k[len(prefix) :]: v for k, v in payload["state"].items() if k.startswith(prefix)}
    )
    return backbone.eval()


def plot_run(
    name: str,
    dataset: Any = None,
    out_dir: Optional[Union[str, os.PathLike]] = None,
    *,
    embedding: str = "tsne",
    n: int = 1000,
    seed: int = 0,
) -> list[Path]:
    """Write ``history.png`` (curves), ``augmentations.png`` (the run's preset) and, with a
    labelled ``dataset``, ``embedding.png`` (t-SNE or PCA of the trained backbone) into the
    run folder (or ``out_dir``).

    Args:
        name: the run name.
        dataset: data for the augmentation grid and the embedding; None skips both.
        out_dir: where to write; default: the run folder.
        embedding: ``"tsne"`` or ``"pca"``.
        n: images in the embedding.
        seed: seed of the image draws, augmentations and t-SNE.

    Returns:
        The paths written (the augmentation grid only for a preset given by name, the
        embedding only for a backbone rebuildable by name).

    Raises:
        DataError: the run has neither a history file nor a checkpoint.
    """
    folder = Path(out_dir) if out_dir is not None else store.run_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    payload = store.read(name) if store.checkpoint_path(name).exists() else None
    try:
        history = load_history(name)
    except DataError:
        if payload is None:
            raise
        history = payload.get("history")  # the checkpoint carries the history too
    if history:
        plot_history(history, path=folder / "history.png", title=str(name))
        written.append(folder / "history.png")
    if payload is None:
        return written
    hparams = payload.get("hparams", {})
    preset = hparams.get("augment")
    size = hparams.get("image_size") or 32
    if isinstance(preset, str) and dataset is not None:
        from . import augment

        try:
            views = augment.build(preset, size)
        except (KeyError, ValueError):  # a custom augmentation is not stored by name
            views = None
        if views is not None:
            plot_augmentations(
                preset,
                data.dataset(dataset, size=size),
                seed=seed,
                path=folder / "augmentations.png",
            )
            written.append(folder / "augmentations.png")
    if dataset is not None:
        backbone = load_backbone(payload)
        if backbone is not None:
            ds = data.dataset(dataset, size=size)
            plot_embedding(
                backbone,
                ds,
                n=n,
                method=embedding,
                seed=seed,
                path=folder / "embedding.png",
                title=f"{payload['method']} epoch {payload['epoch']}: {embedding}",
            )
            written.append(folder / "embedding.png")
    return written
