"""The CPU paths of benchmarks/peer_parity.py and benchmarks/time_to_accuracy.py, tiny scale."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import peer_parity  # noqa: E402
import time_to_accuracy  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return peer_parity.load_images(64, 40, sample=True)


def test_both_libraries_start_from_the_same_backbone():
    a, b, other = (peer_parity.fresh_backbone(s) for s in (0, 0, 1))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert any(
        not torch.equal(x, z) for x, z in zip(a.state_dict().values(), other.state_dict().values())
    )


def test_lightly_side_trains_the_given_backbone_on_its_recipe(tiny):
    pytest.importorskip("lightly")
    train, _ = tiny
    backbone = peer_parity.fresh_backbone(0)
    before = [p.detach().clone() for p in backbone.parameters()]
    result = peer_parity.run_lightly(
        "moco", train, backbone, epochs=1, batch_size=32, seed=0, device="cpu", workers=0
    )
    assert result["backbone"] is backbone
    assert any(not torch.equal(p, q) for p, q in zip(before, backbone.parameters()))
    assert result["recipe"] == "sgd lr 0.015 wd 5e-4, cosine/epoch"  # 6e-2 x 32/128
    assert result["images_per_s"] > 0


def test_ceiling_feeds_premade_views_only(tiny, monkeypatch):
    train, _ = tiny
    calls = []
    speed = peer_parity.run_ceiling(
        "simclr",
        train,
        peer_parity.fresh_backbone(0),
        batch_size=16,
        seed=0,
        device="cpu",
        steps=3,
        premade=1,
    )
    assert speed > 0
    real = peer_parity.methods.get("simclr").augment_views
    monkeypatch.setattr(
        peer_parity.methods.get("simclr"),
        "augment_views",
        lambda self, x: calls.append(1) or real(self, x),
    )
    peer_parity.run_ceiling(
        "simclr",
        train,
        peer_parity.fresh_backbone(0),
        batch_size=16,
        seed=0,
        device="cpu",
        steps=3,
        premade=1,
    )
    assert calls == []  # the training step never augmented


def test_table_compares_speed_with_the_peer_and_the_ceiling():
    rows = [
        {"method": "simclr", "library": "random", "seed": 0, "knn": 0.3},
        {
            "method": "simclr",
            "library": "lightly",
            "seed": 0,
            "knn": 0.36,
            "images_per_s": 100.0,
            "recipe": "sgd",
        },
        {
            "method": "simclr",
            "library": "super_selfish",
            "seed": 0,
            "knn": 0.38,
            "images_per_s": 150.0,
            "recipe": "lars",
        },
        {"method": "simclr", "library": "ceiling", "seed": 0, "images_per_s": 200.0},
        {"method": "byol", "library": "lightly", "seed": 0, "error": "boom"},
    ]
    text = peer_parity.table(rows, ["simclr", "byol"])
    ours = next(line for line in text.splitlines() if "| super_selfish |" in line)
    assert "| 0.3800 | 0.3000 | 150 |" in ours and "1.50x" in ours and "75% of 200" in ours
    assert "byol lightly seed 0: FAILED boom" in text


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_time_to_accuracy_levels_and_budget(tmp_path):
    common = [
        "--sample",
        "--images",
        "64",
        "--test-images",
        "40",
        "--backbone",
        "convnet-small",
        "--batch-size",
        "32",
        "--eval-every",
        "1",
    ]
    (row,) = time_to_accuracy.main(
        common + ["--epochs", "1", "--levels", "0", "1.01", "--out", str(tmp_path / "t")]
    )
    assert [p["epoch"] for p in row["curve"]] == [0, 1] and row["epochs_done"] == 1
    assert row["to_level"]["0.0"] == row["curve"][0]["minutes"]
    assert row["to_level"]["1.01"] is None and row["stopped"] == "schedule done"
    assert "| simclr |" in (tmp_path / "t.md").read_text()
    (cut,) = time_to_accuracy.main(common + ["--epochs", "3", "--minutes", "0.0001"])
    assert cut["stopped"] == "budget spent" and cut["epochs_done"] == 0
