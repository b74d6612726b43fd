"""Online monitors (kNN, linear, collapse), TensorBoard logging, history files and plots."""

from __future__ import annotations

import copy
import csv
import json
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from toys import ToyRotation

from super_selfish import cli, data, evaluate, plots
from super_selfish.errors import ConfigError
from super_selfish.monitors import (
    HealthMonitor,
    KNNMonitor,
    LinearProbeMonitor,
    TensorBoardLogger,
    effective_rank,
    embedding_health,
)


@pytest.fixture(scope="module")
def cifar():
    train = data.materialize(data.dataset("cifar10-sample"))
    test = data.materialize(data.dataset("cifar10-sample", "test"))

    def pick(ds, n, seed):
        return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n])

    return pick(train, 32, 0), pick(test, 32, 0)


class Constant(nn.Module):
    """A collapsed backbone: every image maps to the same (trainable) vector."""

    def __init__(self, dim=32):
        super().__init__()
        self.value = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return self.value.expand(len(x), -1) + 0 * x.mean()


def small_body():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1),
        nn.ReLU(),
    )


# ---------------------------------------------------------------------------------- health
def test_embedding_health_statistics_and_thresholds():
    g = torch.Generator().manual_seed(0)
    assert effective_rank(torch.diag(torch.tensor([3.0, 3.0, 0.0, 0.0]))) == pytest.approx(2.0)
    assert effective_rank(torch.eye(8)) == pytest.approx(8.0)
    assert effective_rank(torch.zeros(4, 4)) == 0.0
    healthy = embedding_health(torch.randn(256, 64, generator=g))
    assert not healthy["collapsed"] and healthy["std_ratio"] == pytest.approx(1.0, abs=0.05)
    assert healthy["embedding_std"] == pytest.approx(1 / 8, rel=0.05)
    assert healthy["effective_rank"] > 40
    constant = embedding_health(torch.full((64, 32), 3.0))
    assert constant["collapsed"] and constant["embedding_std"] == 0.0
    assert constant["effective_rank"] == pytest.approx(1.0) and len(constant["reasons"]) == 2
    nearly = embedding_health(
        torch.randn(32, generator=g) + 1e-4 * torch.randn(64, 32, generator=g)
    )
    assert nearly["collapsed"] and "embedding std" in nearly["reasons"][0]
    one_direction = torch.randn(64, 1, generator=g) * torch.randn(1, 32, generator=g)
    line = embedding_health(one_direction)  # spread along +-v: std fine, rank 1
    assert line["collapsed"] and line["std_ratio"] > 0.5 and "effective rank" in line["reasons"][0]


def test_health_monitor_fires_on_collapse_and_stays_silent_when_healthy(cifar, capsys, tmp_path):
    train, _ = cifar
    collapsed = HealthMonitor(n_probe=32)
    sup = ToyRotation(train, backbone=Constant(), seed=0)
    history = sup.supervise(
        epochs=1,
        batch_size=16,
        progress=False,
        save=False,
        name=str(tmp_path / "a"),
        callbacks=[collapsed],
    )
    err = capsys.readouterr().err
    assert collapsed.collapsed and "collapse suspected" in err and "[warning]" in err
    assert history[0]["embedding_std"] == 0.0 and history[0]["effective_rank"] == pytest.approx(1)
    healthy = HealthMonitor(n_probe=32)
    sup = ToyRotation(train, backbone="convnet-small", seed=0)
    history = sup.supervise(
        epochs=1,
        batch_size=16,
        progress=False,
        save=False,
        name=str(tmp_path / "b"),
        callbacks=[healthy],
    )
    assert not healthy.collapsed and not healthy.warnings
    assert "collapse" not in capsys.readouterr().err
    assert history[0]["effective_rank"] > 2 and history[0]["embedding_std"] > 0


# ---------------------------------------------------------------------------------- probes
@pytest.mark.filterwarnings("ignore::super_selfish.evaluate.KNNWarning")  # 32 images: 1 horse
def test_probe_monitors_write_history_files_and_leave_training_unchanged(cifar, tmp_path):
    train, test = cifar
    name = str(tmp_path / "run")
    knn = KNNMonitor(train, test, every=2, k=10)
    linear = LinearProbeMonitor(train, every=1, epochs=5)  # held-out split carved from train
    body = small_body()  # both runs start from these weights, whatever the global RNG
    sup = ToyRotation(train, backbone=copy.deepcopy(body), seed=0)
    history = sup.supervise(
        lr=1e-2,
        epochs=3,
        batch_size=16,
        progress=False,
        name=name,
        callbacks=[knn, linear, HealthMonitor(n_probe=16)],
    )
    assert "knn_accuracy" not in history[0]  # every=2: epochs 2 and 3 (the last)
    assert [r["epoch"] for r in history if "knn_accuracy" in r] == [2, 3]
    assert all("linear_accuracy" in r and "embedding_std" in r for r in history)
    assert knn.values == [(2, history[1]["knn_accuracy"]), (3, history[2]["knn_accuracy"])]
    assert history[2]["knn_accuracy"] == evaluate.knn_accuracy(
        sup.get_backbone(), train, test, k=10
    )
    assert len(linear._test) == 8 and len(linear._train) == 24  # stratified 20% held out
    folder = tmp_path / "run"
    saved = json.loads((folder / "history.json").read_text())
    assert saved == history
    with open(folder / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[2]["knn_accuracy"]) == pytest.approx(history[2]["knn_accuracy"])
    assert rows[0]["knn_accuracy"] == "" and float(rows[0]["loss"]) == pytest.approx(
        history[0]["loss"]
    )
    plain = ToyRotation(train, backbone=copy.deepcopy(body), seed=0)
    plain.supervise(
        lr=1e-2, epochs=3, batch_size=16, progress=False, save=False, name=str(tmp_path / "plain")
    )
    for key, value in plain.state_dict().items():  # monitors did not perturb training
        assert torch.equal(value, sup.state_dict()[key]), key


# ---------------------------------------------------------------------------------- logging
@pytest.mark.filterwarnings("ignore::super_selfish.evaluate.KNNWarning")  # 32 images: 1 horse
def test_tensorboard_logger_events_projector_and_cli_plot(cifar, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train, test = cifar
    name = str(tmp_path / "run")
    logger = TensorBoardLogger(every_n_steps=1, n_embedding=24)
    sup = ToyRotation(train, seed=0, augment="simclr")  # views exist: the preview shows them
    history = sup.supervise(
        epochs=2,
        batch_size=16,
        progress=False,
        name=name,
        callbacks=[logger, KNNMonitor(train, test, k=5)],
    )  # logger first
    log_dir = tmp_path / "run" / "tensorboard"
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert {
        "step/loss",
        "step/lr",
        "epoch/loss",
        "epoch/knn_accuracy",
        "epoch/images_per_s",
    } <= set(tags["scalars"])
    steps = events.Scalars("step/loss")
    assert [s.step for s in steps] == [1, 2, 3, 4]
    knn = events.Scalars("epoch/knn_accuracy")
    assert [k.step for k in knn] == [1, 2]
    assert [k.value for k in knn] == pytest.approx([r["knn_accuracy"] for r in history])
    assert [e.value for e in events.Scalars("epoch/loss")] == pytest.approx(
        [r["loss"] for r in history]
    )
    assert "augmentations" in tags["images"]
    config = (log_dir / "projector_config.pbtxt").read_text()
    assert "backbone" in config and "sprite" in config
    metadata = next(log_dir.rglob("metadata.tsv")).read_text().splitlines()
    assert len(metadata) == 24 and set(metadata) <= set(train.classes)
    tensors = next(log_dir.rglob("tensors.tsv")).read_text().splitlines()
    assert len(tensors) == 24 and len(tensors[0].split("\t")) == sup.backbone.feature_dim
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == history

    code = cli.main(
        ["plot", "--name", name, "--dataset", "cifar10-sample", "--n", "64", "--embedding", "pca"]
    )
    assert code == 0
    for png in ("history.png", "augmentations.png", "embedding.png"):
        assert (tmp_path / "run" / png).read_bytes()[:4] == b"\x89PNG"


def test_missing_optional_packages_give_clear_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoardLogger()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install super_selfish\[viz\]"):
        plots.plot_history([{"epoch": 1, "loss": 1.0}])


# ---------------------------------------------------------------------------------- plots
def test_tsne_pca_and_figures(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 3
    points = (torch.randn(3, 20, generator=g) * 4)[labels] + torch.randn(120, 20, generator=g)
    coords = plots.tsne(points, iterations=250)
    assert coords.shape == (120, 2)
    assert torch.equal(
        plots.tsne(points[:20], iterations=30), plots.tsne(points[:20], iterations=30)
    )
    odd, even = torch.arange(1, 120, 2), torch.arange(0, 120, 2)
    knn = evaluate.knn_predict(coords[even], labels[even], coords[odd], k=5)
    assert (knn == labels[odd]).float().mean() >= 0.95  # clusters survive the 2-D map
    assert plots.pca(points).shape == (120, 2)
    images = data.dataset("cifar10-sample").images[:3]
    grid = plots.view_grid("simclr", images, n_views=4)  # drawn by augment.preview
    assert grid.shape[0] == 3 and grid.shape[1] >= 3 * 32 and grid.shape[2] >= 5 * 32
    assert torch.equal(grid, plots.view_grid("simclr", images, n_views=4))  # seeded
    flips = plots.view_grid(lambda x, generator=None: x.flip(-1), images, n_views=2)
    assert flips.shape == (3, 3 * 34 + 2, 3 * 34 + 2) and 0 <= flips.min() and flips.max() <= 1
    assert torch.equal(flips[:, 2:34, 36:68], images[0].flip(-1) / 255)  # first row, view 1
    history = [
        {
            "epoch": e,
            "loss": 2.0 / e,
            "lr": 1e-3,
            "knn_accuracy": 0.1 * e,
            "linear_accuracy": 0.12 * e,
        }
        for e in (1, 2, 3)
    ]
    fig = plots.plot_history(history, path=tmp_path / "h.png")
    assert [ax.get_title() for ax in fig.axes] == [
        "training loss",
        "accuracy",
        "learning rate (end of epoch)",
    ]
    records = [
        {"method": "a", "knn_accuracy": 0.3, "train_seconds": 2.0},
        {"method": "b", "knn_accuracy": 0.4, "train_seconds": 3.0},
    ]
    fig = plots.plot_comparison(records, path=tmp_path / "c.png")
    assert [ax.get_title() for ax in fig.axes] == ["kNN accuracy", "training time (s)"]
    fig = plots.plot_embedding(points, labels=labels, method="pca", path=tmp_path / "e.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("h.png", "c.png", "e.png"))


def _drawn(fig):
    """Draw a figure with every warning an error (matplotlib's included)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FigureCanvasAgg(fig).draw()
    return fig


def _visible_ticks(ax):
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


def test_comparison_figure_reads_correctly(tmp_path):
    from super_selfish.compare import ComparisonTable

    untrained = {
        "method": "untrained",
        "knn_accuracy": 0.308,
        "linear_accuracy": 0.351,
        "knn_k": 20,
        "baseline": "untrained",
        "steps": 0,
    }
    trained = [
        {
            "method": m,
            "knn_accuracy": a,
            "knn_gain": a - 0.308,
            "linear_accuracy": b,
            "linear_gain": b - 0.351,
            "knn_k": 20,
            "final_loss": loss,
            "train_seconds": 1712.4,
            "images_per_s": 1712.4,
            "peak_memory_mb": 2250.0,
            "baseline": "untrained",
            "budget": "5 epochs",
        }
        for m, a, b, loss in (("simclr", 0.411, 0.402, 5.41), ("byol", 0.351, 0.33, 0.2))
    ]
    table = ComparisonTable(
        [untrained, *trained],
        meta={
            "dataset": "cifar10-sample",
            "n_train": 5000,
            "image_size": 32,
            "budget": "5 epochs",
            "batch_size": 256,
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = _drawn(table.plot(path=tmp_path / "c.png"))
    title = fig._suptitle.get_text()
    assert all(part in title for part in ("cifar10-sample", "32 px", "5 epochs", "batch 256"))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "kNN accuracy (k=20)",
        "linear probe accuracy",
        "training time (s)",
        "throughput (images/s)",
        "peak memory (MB)",
    ]  # no loss panel
    texts = [
        t.get_text()
        for ax in fig.axes
        for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts)
    ]
    assert not [t for t in texts if "e+" in t or "e-" in t]  # plain numbers
    assert "1,712" in texts and "0.330\n(-0.021)" in texts  # value and gain over untrained
    knn = fig.axes[0]
    assert knn.get_xticklabels()[0].get_text() == "untrained\n(baseline)"
    assert knn.patches[0].get_hatch() == "//" and knn.patches[1].get_hatch() is None
    assert any(
        line.get_linestyle() == "--" and line.get_ydata()[0] == 0.308 for line in knn.get_lines()
    )  # the baseline across the panel
    assert [t.get_text() for t in fig.axes[2].get_xticklabels()] == ["simclr", "byol"]
    with pytest.raises(ConfigError, match="not comparable"):
        table.plot(metrics=["knn_accuracy", "final_loss"])


@pytest.mark.parametrize("epochs", [1, 2])
def test_history_figure_of_one_or_two_epochs(epochs):
    history = [
        {"epoch": 1, "loss": 5.7, "lr": 1e-3 if epochs == 2 else 0.0, "images_per_s": 1712.4},
        {"epoch": 2, "loss": 5.5, "lr": 0.0, "images_per_s": 1750.0},
    ][:epochs]
    fig = _drawn(plots.plot_history(history))  # an lr of 0 raised a log-scale warning
    for ax in fig.axes:
        assert _visible_ticks(ax) == list(range(1, epochs + 1))  # whole epochs only
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert not [t for t in labels if "e-" in t or "e+" in t or "mathdefault" in t]
    lr = next(ax for ax in fig.axes if ax.get_title().startswith("learning rate"))
    assert lr.get_yscale() == "linear" and lr.get_ylim()[0] == 0
    assert "0" in [t.get_text() for t in lr.get_yticklabels()]


def test_augmentation_grids_are_labelled(tmp_path):
    from PIL import Image

    from super_selfish import augment

    images = data.dataset("cifar10-sample").images[[3, 1500, 4000]]
    plain = augment.preview("simclr", images, n_views=2, labels=False)
    grid = augment.preview("simclr", images, n_views=2)
    assert grid.info["title"] == "simclr: 2 views of 32 px (shown enlarged); originals 32 px"
    assert grid.info["columns"] == "original | view 1 | view 2"
    header = grid.height - plain.height
    assert header > 10 and grid.width >= plain.width  # widened when the title is longer
    ink = torch.tensor(np.asarray(grid.convert("L")))[:header] < 128
    assert ink[:, :64].any() and ink[:, 66:130].any()  # text over the original and view 1
    out = tmp_path / "grid.png"
    assert (
        cli.main(["preview", "simclr", "--n-images", "2", "--n-views", "3", "--out", str(out)]) == 0
    )
    saved = Image.open(out)
    assert saved.text["title"].startswith("simclr: 3 views of 32 px")
    assert saved.text["columns"] == "original | view 1 | view 2 | view 3"
    again = tmp_path / "again.png"  # --seed fixes the images and their views
    assert (
        cli.main(["preview", "simclr", "--n-images", "2", "--n-views", "3", "--out", str(again)])
        == 0
    )
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(saved))
    fig = _drawn(plots.plot_augmentations("simclr", images, n_views=2))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["original", "view 1", "view 2"]
    assert ax.get_title() == "simclr: 2 views of 32 px; originals 32 px"
