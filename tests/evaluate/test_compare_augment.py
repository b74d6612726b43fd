"""compare() over augmentation pipelines and seeds: same budget, mean ± sd, bootstrap CI."""

import sys

import pytest
import torch

from super_selfish import cli, data
from super_selfish.compare import ComparisonTable, bootstrap_difference, compare
from super_selfish.errors import ConfigError


@pytest.fixture(scope="module")
def tiny():
    pick = lambda ds, n: data.materialize(ds).subset(torch.arange(n))  # noqa: E731
    return (
        pick(data.dataset("cifar10-sample"), 32),
        pick(data.dataset("cifar10-sample", "test"), 16),
    )


def tiny_body():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.BatchNorm2d(8), torch.nn.ReLU()
    )


def test_compare_trains_each_pipeline_per_seed_and_summarises(tiny):
    train, test = tiny
    table = compare(
        "simclr",
        train,
        backbone=tiny_body(),
        budget=1,
        batch_size=16,
        eval={"knn": {"k": 3}},
        test_dataset=test,
        image_size=16,
        augment=["simclr", ["random_resized_crop", "grayscale"]],
        seeds=[0, 1],
    )
    labels = ["untrained", "simclr", "ops random_resized_crop+grayscale"]
    assert [r["method"] for r in table] == labels
    assert [(r["method"], r["seed"]) for r in table.runs] == [
        (label, seed) for seed in (0, 1) for label in labels
    ]
    for row in table:
        runs = [r["knn_accuracy"] for r in table.runs if r["method"] == row["method"]]
        assert row["knn_accuracy"] == pytest.approx(sum(runs) / 2)
        assert row["knn_accuracy_sd"] == pytest.approx(abs(runs[0] - runs[1]) / 2**0.5)
        assert row["seeds"] == "0 1" and row.get("epochs", 0) in (0, 1)
    first, second = table[1], table[2]
    assert "knn_accuracy_diff" not in first  # the first pipeline is the reference
    assert second["knn_accuracy_diff"] == pytest.approx(
        second["knn_accuracy"] - first["knn_accuracy"]
    )
    assert (
        second["knn_accuracy_diff_low"]
        <= second["knn_accuracy_diff"]
        <= second["knn_accuracy_diff_high"]
    )
    # the pipelines really differ: same seed and start, different trained weights
    a, b = (table.backbones[f"{label} (seed 0)"] for label in labels[1:])
    assert any(
        not torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())
    )
    assert "bootstrap" in table.to_markdown() and "knn_accuracy_sd" in table.to_markdown()


def test_bootstrap_resamples_each_group_at_its_own_size():
    diff, low, high = bootstrap_difference([0.0, 0.0, 0.0, 0.0], [1.0, 3.0])
    assert diff == 2.0 and low == pytest.approx(1.0) and high == pytest.approx(3.0)
    assert bootstrap_difference([1.0, 2.0], [1.0, 2.0])[0] == 0.0


def test_augment_needs_one_method_and_the_cli_passes_pipelines_and_seeds(monkeypatch, tiny):
    with pytest.raises(ConfigError, match="exactly one method"):
        compare(["simclr", "byol"], tiny[0], augment=["simclr"], budget=1, eval=())
    seen = {}
    monkeypatch.setattr(
        sys.modules["super_selfish.compare"],
        "compare",
        lambda *args, **kwargs: seen.update(kwargs) or ComparisonTable(),
    )
    monkeypatch.setattr(cli, "_datasets", lambda args: (tiny[0], tiny[1]))
    assert (
        cli.main(
            [
                "compare",
                "simclr",
                "--augment",
                "simclr",
                "magnification,hflip",
                "--seeds",
                "0",
                "1",
                "--eval",
                "none",
            ]
        )
        == 0
    )
    assert seen["augment"] == ["simclr", ["magnification", "hflip"]] and seen["seeds"] == [0, 1]
    assert cli.main(["compare", "simclr", "byol", "--augment", "simclr"]) == 2
