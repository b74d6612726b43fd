"""Evaluation protocols (kNN, linear, MLP, fine-tuning, low-label) and compare()."""

from __future__ import annotations

import copy
import json
import sys
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from toys import ToyRotation, snapshot

from super_selfish import cli, data, evaluate
from super_selfish.compare import ComparisonTable, compare, parse_budget
from super_selfish.errors import ConfigError
from super_selfish.methods import registry

N_CLASSES = 4


def separable(n: int, seed: int):
    """Tiny 4x4 images whose class sets one bright pixel: linearly separable, noisy elsewhere."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % N_CLASSES
    images = torch.rand(n, 3, 4, 4, generator=g) * 100
    images.view(n, -1)[torch.arange(n), labels * 5] += 150
    return images.round().to(torch.uint8), labels


@pytest.fixture(scope="module")
def sets():
    return separable(400, 0), separable(200, 1)


def shuffled(pair, seed=5):
    images, labels = pair
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return images, labels[order]


class FlatBN(nn.Module):
    """Identity-like backbone: flattened pixels through a BatchNorm with non-trivial stats."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(48)
        self.norm.running_mean.fill_(0.4)
        self.norm.running_var.fill_(0.1)

    def forward(self, x):
        return self.norm(x.flatten(1))


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("protocol", ["knn", "linear-adam", "linear-sgd", "linear-lbfgs", "mlp"])
def test_frozen_probes_separable_then_chance_and_backbone_untouched(sets, protocol):
    train, test = sets
    backbone = FlatBN().train()  # left in train mode on purpose: probes must switch to eval
    before = state(backbone)
    kind, _, opt = protocol.partition("-")
    run = {
        "knn": lambda tr: evaluate.knn_accuracy(backbone, tr, test, k=20),
        "linear": lambda tr: evaluate.linear_probe(backbone, tr, test, optimizer=opt),
        "mlp": lambda tr: evaluate.mlp_probe(backbone, tr, test, epochs=30),
    }[kind]
    accuracy = run(train)
    assert isinstance(accuracy, float) and accuracy >= 0.98
    chance = run(shuffled(train))
    assert abs(chance - 1 / N_CLASSES) < 0.12
    assert same_state(before, state(backbone))  # BN running statistics unchanged
    assert all(p.grad is None for p in backbone.parameters())  # no gradient reached it
    assert backbone.training  # caller's mode restored


def test_knn_matches_a_brute_force_reference():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(30, 5, generator=g), torch.randn(7, 5, generator=g)
    train_y = torch.randint(0, 3, (30,), generator=g)
    k, t = 6, 0.2
    expected = []
    for q in test_x:
        sims = torch.stack([F.cosine_similarity(q, x, dim=0) for x in train_x])
        votes = [0.0, 0.0, 0.0]
        for i in sims.argsort(descending=True)[:k].tolist():
            votes[int(train_y[i])] += float(torch.exp(sims[i] / t))
        expected.append(max(range(3), key=lambda c: votes[c]))
    assert evaluate.knn_predict(train_x, train_y, test_x, k, t).tolist() == expected


def test_details_describe_the_protocol(sets):
    train, test = sets
    result = evaluate.knn_accuracy(
        FlatBN(), train, test, k=7, temperature=0.05, return_details=True
    )
    assert isinstance(result, evaluate.ProbeResult) and float(result) == result.accuracy
    assert "k=7" in result.description and "temperature=0.05" in result.description
    assert (result.n_train, result.n_test, result.n_classes) == (400, 200, 4)
    assert "top-1 accuracy" in str(result)


def test_lr_sweep_uses_only_the_training_set(sets):
    train, test = sets
    grid = (1e-4, 1e-2, 1.0)
    a = evaluate.linear_probe(FlatBN(), train, test, epochs=20, lr_sweep=grid, return_details=True)
    b = evaluate.linear_probe(
        FlatBN(), train, shuffled(test), epochs=20, lr_sweep=grid, return_details=True
    )
    assert a.sweep == b.sweep and a.settings["lr"] == b.settings["lr"]  # test set irrelevant
    assert set(a.sweep) == set(grid) and a.settings["lr"] == max(a.sweep, key=a.sweep.get)
    assert "validation split of the training set" in a.description
    assert a.accuracy > 0.9


def test_stratified_split_and_balanced_subset_are_deterministic():
    labels = torch.arange(100) % 4
    keep, held = evaluate.stratified_split(labels, 0.2, seed=3)
    assert len(set(keep.tolist()) & set(held.tolist())) == 0 and len(keep) + len(held) == 100
    assert torch.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    ds = data.materialize(data.dataset("cifar10-sample"))
    one = evaluate.balanced_subset(ds, 0.01, seed=0)
    two = evaluate.balanced_subset(ds, 0.01, seed=0)
    assert torch.bincount(one.labels).tolist() == [5] * 10  # 1% of 5,000, 10 classes
    assert torch.equal(one.images, two.images)
    assert not torch.equal(one.images, evaluate.balanced_subset(ds, 0.01, seed=1).images)
    assert torch.bincount(evaluate.balanced_subset(ds, 0.1).labels).tolist() == [50] * 10


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.BatchNorm1d(16), nn.ReLU())

    def forward(self, x):
        return self.net(x)


def test_fine_tune_trains_a_copy_and_leaves_the_caller_untouched(sets):
    train, test = sets
    torch.manual_seed(0)
    backbone = TinyNet().eval()
    for p in backbone.parameters():
        p.requires_grad_(False)  # e.g. a frozen momentum encoder: the copy is trained anyway
    before = state(backbone)
    rng = torch.get_rng_state()
    result = evaluate.fine_tune(
        backbone, train, test, epochs=30, lr=1e-2, batch_size=64, augment=None, return_details=True
    )
    assert result.accuracy >= 0.95
    assert same_state(before, state(backbone)) and not backbone.training
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())
    assert torch.equal(rng, torch.get_rng_state())  # global RNG untouched
    again = evaluate.fine_tune(
        backbone, train, test, epochs=30, lr=1e-2, batch_size=64, augment=None
    )
    assert again == result.accuracy  # deterministic for a seed
    low = evaluate.fine_tune(
        backbone,
        train,
        test,
        epochs=5,
        lr=1e-2,
        label_fraction=0.1,
        augment=None,
        return_details=True,
    )
    assert low.n_train == 40 and "0.1 label subset (40 of 400" in low.description
    assert 0.0 <= low.accuracy <= 1.0


def test_run_protocols_keys_and_errors(sets):
    train, test = sets
    results = evaluate.run_protocols(
        FlatBN(),
        train,
        test,
        {
            "knn": {"k": 20},
            "linear": {"epochs": 20, "optimizer": "lbfgs"},
            "finetune-10%": {"epochs": 1, "augment": None},
        },
    )
    assert list(results) == ["knn_accuracy", "linear_accuracy", "finetune_10pct_accuracy"]
    assert results["knn_accuracy"].accuracy >= 0.98
    assert results["finetune_10pct_accuracy"].settings["label_fraction"] == 0.1
    assert evaluate.protocol_key("finetune-1%") == "finetune_1pct_accuracy"
    with pytest.raises(ConfigError, match="protocol"):
        evaluate.run_protocols(FlatBN(), train, test, ["knn", "svm"])
    with pytest.raises(ConfigError, match="lr"):
        evaluate.linear_probe(FlatBN(), train, test, lr=-1.0)


# ---------------------------------------------------------------------------------- compare
class ToyFlip(ToyRotation):
    method = "toy-flip"

    def _forward(self, batch):
        flip = batch.index % 2
        images = torch.where(flip.view(-1, 1, 1, 1).bool(), batch.images.flip(-1), batch.images)
        return F.cross_entropy(self.head(self.backbone(images))[:, :2], flip)


def tiny_body():
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())


@pytest.fixture(scope="module")
def cifar():
    train = data.materialize(data.dataset("cifar10-sample"))
    test = data.materialize(data.dataset("cifar10-sample", "test"))

    def pick(ds, n):
        return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n])

    return pick(train, 64), pick(test, 32)


FIELDS = {
    "method",
    "knn_accuracy",
    "linear_accuracy",
    "final_loss",
    "epochs",
    "steps",
    "lr",
    "train_seconds",
    "images_per_s",
    "peak_memory_mb",
    "eval_seconds",
    "backbone",
    "budget",
    "seed",
}


def test_compare_records_and_same_seed_same_numbers(cifar):
    train, test = cifar
    body = tiny_body()
    run = lambda baseline=True: compare(  # noqa: E731
        [ToyRotation, ToyFlip],
        train,
        backbone=body,
        budget=dict(epochs=2),
        eval={"knn": {"k": 3}, "linear": {"epochs": 10}},
        test_dataset=test,
        batch_size=16,
        lr=1e-2,
        baseline=baseline,
    )
    rng = torch.get_rng_state()
    table = run()
    assert torch.equal(rng, torch.get_rng_state())
    assert isinstance(table, ComparisonTable) and len(table) == 3
    assert [r["method"] for r in table] == ["untrained", "toy-rotation", "toy-flip"]
    # the baseline row is exactly the network every method starts from, scored the same way
    untrained, trained = table[0], table[1:]
    start = ToyRotation(train, backbone=copy.deepcopy(body), seed=0).get_backbone()
    assert untrained["knn_accuracy"] == evaluate.knn_accuracy(start, train, test, k=3)
    assert untrained["linear_accuracy"] == evaluate.linear_probe(start, train, test, epochs=10)
    assert table.baselines == [untrained] and untrained["steps"] == 0
    assert untrained["knn_k"] == 3 and "knn_gain" not in untrained
    for record in trained:
        assert record["baseline"] == "untrained" and record["knn_k"] == 3
        for protocol in ("knn", "linear"):
            assert record[f"{protocol}_gain"] == pytest.approx(
                record[f"{protocol}_accuracy"] - untrained[f"{protocol}_accuracy"]
            )
    assert table.best("knn_accuracy")["method"] != "untrained"
    for record in trained:
        assert FIELDS <= set(record)
        assert record["epochs"] == 2 and record["steps"] == 8 and record["budget"] == "2 epochs"
        assert record["lr"] == 1e-2 and table.histories[record["method"]][-1]["lr"] == 1e-2
        assert 0 <= record["knn_accuracy"] <= 1 and 0 <= record["linear_accuracy"] <= 1
        assert record["peak_memory_mb"] > 0 and record["images_per_s"] > 0
        # final_loss is the last epoch's mean, as in the method's own history
        assert record["final_loss"] == pytest.approx(table.histories[record["method"]][-1]["loss"])
    # kNN on the returned backbone reproduces the table: same protocol, nothing leaked
    again = evaluate.knn_accuracy(table.backbones["toy-flip"], train, test, k=3)
    assert again == table[2]["knn_accuracy"]
    second = run(baseline=False)  # same numbers, and scoring the baseline changed nothing
    assert [r["method"] for r in second] == ["toy-rotation", "toy-flip"]
    assert not second.baselines and "knn_gain" not in second[0]
    for a, b in zip(trained, second):
        for key in ("knn_accuracy", "linear_accuracy", "final_loss", "steps"):
            assert a[key] == b[key], key
    markdown = table.to_markdown()
    header = [cell.strip() for cell in markdown.splitlines()[0].strip("|").split("|")]
    assert header[:5] == ["method", "knn_accuracy", "linear_accuracy", "knn_gain", "linear_gain"]
    assert markdown.splitlines()[2].startswith("| untrained ")
    assert f"{trained[0]['knn_gain']:+.4f}" in markdown.splitlines()[3]
    assert "weighted kNN (k=3" in markdown and repr(table) == markdown
    frame = table.to_pandas()
    assert list(frame["method"]) == ["untrained", "toy-rotation", "toy-flip"]
    fig = table.plot()
    assert len(fig.axes) >= 5


class ToyOtherStart(ToyFlip):
    """Starts from another network: the backbone's first weights are scaled after seeding."""

    method = "toy-other-start"

    def __init__(self, dataset=None, backbone="convnet-small", **kwargs):
        super().__init__(dataset, backbone, **kwargs)
        with torch.no_grad():
            next(self.backbone.parameters()).mul_(3.0)


def test_compare_gives_each_starting_network_its_own_baseline(cifar):
    train, test = cifar
    body = tiny_body()
    with pytest.warns(evaluate.KNNWarning) as caught:  # k=8, but only 4 dogs in 64 images
        table = compare(
            [ToyRotation, ToyFlip, ToyOtherStart],
            train,
            backbone=body,
            budget=1,
            eval={"knn": {"k": 8}},
            test_dataset=test,
            batch_size=16,
        )
    assert len(caught) == 1 and "Use k below 4" in str(caught[0].message)  # once, not 5 times
    assert sum("Use k below 4" in note for note in table.notes) == 1
    names = [r["method"] for r in table]
    assert names == [
        "untrained (for toy-rotation, toy-flip)",
        "untrained (for toy-other-start)",
        "toy-rotation",
        "toy-flip",
        "toy-other-start",
    ]
    shared, other = table.baselines
    for record in table[2:]:
        base = other if record["method"] == "toy-other-start" else shared
        assert record["baseline"] == base["method"] and record["knn_k"] == 8
        assert record["knn_gain"] == pytest.approx(record["knn_accuracy"] - base["knn_accuracy"])
    start = ToyOtherStart(train, backbone=copy.deepcopy(body), seed=0).get_backbone()
    with pytest.warns(evaluate.KNNWarning):
        assert other["knn_accuracy"] == evaluate.knn_accuracy(start, train, test, k=8)


def test_compare_without_lr_uses_each_methods_default(cifar):
    class SlowFlip(ToyFlip):
        method = "slow-flip"
        default_lr = 3e-4

    table = compare(
        [ToyRotation, SlowFlip], cifar[0], backbone=tiny_body(), budget=1, eval=(), batch_size=16
    )
    assert [r["lr"] for r in table] == [1e-3, 3e-4]
    assert [table.histories[m][-1]["lr"] for m in ("toy-rotation", "slow-flip")] == [1e-3, 3e-4]
    assert "each method's default lr" in table.to_markdown()


def test_compare_time_budget_stops_after_the_step(cifar, tmp_path):
    train, _ = cifar
    table = compare(
        {"a": ToyRotation},
        train,
        backbone=tiny_body(),
        budget="0.001s",
        eval=(),
        batch_size=16,
        name=str(tmp_path / "cmp"),
    )
    record = table[0]
    assert record["steps"] == 1 and record["epochs"] == 0.25 and record["budget"] == "0.001 s"
    assert "knn_accuracy" not in record
    saved = ComparisonTable.from_json(tmp_path / "cmp" / "comparison.json")
    assert saved[0]["steps"] == 1 and (tmp_path / "cmp" / "a.pt").exists()


def test_budget_parsing_and_errors(cifar):
    assert parse_budget(3) == {"epochs": 3} and parse_budget("90s") == {"seconds": 90.0}
    assert parse_budget("2 min") == {"seconds": 120.0}
    assert parse_budget(epochs=5, seconds=30) == {"epochs": 5, "seconds": 30.0}
    assert parse_budget() == {"epochs": 10}
    for bad in ("soon", 0, dict(steps=3), True):
        with pytest.raises(ConfigError, match="budget"):
            parse_budget(bad)
    train, _ = cifar
    with pytest.raises(ConfigError, match="test_dataset"):
        compare([ToyRotation], train, budget=1)
    with pytest.raises(ConfigError, match="protocol"):
        compare([ToyRotation], "cifar10-sample", budget=1, eval=("knn", "svm"))
    with pytest.raises(KeyError, match="Unknown method"):
        compare(["no-such-method"], train, budget=1, eval=())


@pytest.fixture
def toy_rotation_registered():
    """ToyRotation registered as 'toy-rotation' for one test (the CLI takes method names)."""
    registry.register("toy-rotation")(ToyRotation)
    yield ToyRotation
    registry.METHODS.remove("toy-rotation")


def test_cli_compare_prints_the_table(toy_rotation_registered, monkeypatch, capsys, tmp_path):
    out = tmp_path / "cmp"
    code = cli.main(
        [
            "compare",
            "toy-rotation",
            "--dataset",
            "cifar10-sample",
            "--epochs",
            "1",
            "--max-images",
            "48",
            "--batch-size",
            "16",
            "--eval",
            "knn",
            "--k",
            "3",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    rows = [line.split("|")[1].strip() for line in printed.splitlines() if line.startswith("|")]
    assert rows[0] == "method" and rows[2:] == ["untrained", "toy-rotation"]
    assert "knn_gain" in printed and "knn_k" in printed
    payload = json.loads((out / "comparison.json").read_text())
    assert payload["records"][1]["steps"] == 3 and payload["records"][1]["knn_k"] == 3
    assert payload["meta"]["dataset"] == "cifar10-sample (seeded random subset of 5,000)"
    assert payload["meta"]["n_train"] == 48 and payload["meta"]["image_size"] == 32
    assert (out / "comparison.png").exists()
    seen = {}
    monkeypatch.setattr(
        sys.modules["super_selfish.compare"],
        "compare",
        lambda *args, **kwargs: seen.update(kwargs) or ComparisonTable(),
    )
    assert cli.main(["compare", "toy-rotation", "--no-baseline", "--eval", "knn", "linear"]) == 0
    assert seen["baseline"] is False and seen["eval"] == {"knn": {"k": 200}, "linear": {}}


def test_knn_warns_when_k_reaches_the_smallest_class_and_records_k(sets):
    train, test = sets  # 400 training images, 100 per class
    images, labels = train
    keep = (labels != 3) | (torch.arange(len(labels)) < 200)  # class 3: 50 images left
    small = (images[keep], labels[keep])
    with pytest.warns(evaluate.KNNWarning, match=r"k=50.*\(class 3\) has 50 images.*k=25"):
        result = evaluate.knn_accuracy(FlatBN(), small, test, k=50, return_details=True)
    assert result.k == 50 and result.settings["k"] == 50 and "k=25" in result.warnings[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a k below the smallest class: no warning
        fits = evaluate.knn_accuracy(FlatBN(), small, test, k=49, return_details=True)
    assert fits.k == 49 and fits.warnings == []
    with pytest.warns(evaluate.KNNWarning, match="'dog'"):  # class names when the data has them
        named = data.TensorImageDataset(*small, classes=["cat", "car", "ship", "dog"])
        clamped = evaluate.run_protocols(FlatBN(), named, test, {"knn": {"k": 1000}})
    assert clamped["knn_accuracy"].k == 350  # every training image, and it says so
    assert clamped["knn_accuracy"].settings["requested_k"] == 1000
    with pytest.warns(evaluate.KNNWarning, match="has 1 image: .*No k fits"):
        evaluate.check_knn_k(1, torch.tensor([0, 0, 1]))


def test_cli_eval_scores_a_run_on_the_data_it_was_trained_on(
    toy_rotation_registered, monkeypatch, capsys, tmp_path
):
    from PIL import Image

    from super_selfish import Supervisor, store

    images = torch.randint(
        0, 256, (18, 16, 16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    for i, image in enumerate(images):  # imgs/train: 4 per class, imgs/test: 2 per class
        folder = tmp_path / "imgs" / ("train" if i < 12 else "test") / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(folder / f"{i}.png")
    train_folder = tmp_path / "imgs" / "train"
    rooted = data.provenance(data.dataset(str(tmp_path / "imgs")))  # a root with splits
    assert rooted == {"source": str(tmp_path / "imgs"), "split": "train", "image_size": 16}
    run = evaluate.run_data(rooted)
    assert (run.source, run.train_split, run.test_split, len(run.train), len(run.test)) == (
        str(tmp_path / "imgs"),
        "train",
        "test",
        12,
        6,
    )
    name = str(tmp_path / "run")
    ToyRotation(data.dataset(str(train_folder)), seed=0).supervise(
        epochs=1, batch_size=4, name=name, progress=False
    )
    assert store.read(name)["data"] == {
        "source": str(train_folder),
        "split": None,
        "image_size": 16,
    }
    capsys.readouterr()
    assert cli.main(["eval", "--name", name, "--k", "4"]) == 0
    err = capsys.readouterr().err
    assert f"dataset {tmp_path / 'imgs'}, split 'train' (12 images)" in err
    assert "split 'test' (6 images) scored, 16 px" in err
    assert "weighted kNN (k=4, temperature=0.1)" in err
    assert "[warning]" in err and "kNN with k=4" in err and "k=2" in err  # 4 per class
    with pytest.warns(evaluate.KNNWarning):
        expected = evaluate.knn_accuracy(
            Supervisor.from_checkpoint(name).get_backbone(),
            str(train_folder),
            str(tmp_path / "imgs" / "test"),
            k=4,
        )
    assert f"kNN accuracy {expected:.4f} (k=4) on {tmp_path / 'imgs'} split 'test'" in err
    assert cli.main(["eval", "--name", name, "--k", "3", "--size", "12"]) == 0
    assert "scored, 12 px" in capsys.readouterr().err
    memory = str(tmp_path / "memory")  # in-memory images: no source, eval asks for one
    ToyRotation(images[:8], seed=0).supervise(epochs=1, batch_size=4, name=memory, progress=False)
    assert store.read(memory)["data"] == {"source": None, "split": None, "image_size": 16}
    assert cli.main(["eval", "--name", memory]) == 2
    assert "--dataset" in capsys.readouterr().err
    named = data.dataset("cifar10-sample", "test")
    assert data.provenance(named) == {"source": "cifar10-sample", "split": "test", "image_size": 32}
    assert data.provenance(data.materialize(named))["source"] == "cifar10-sample"
    assert data.provenance(named.subset(torch.arange(4)))["source"] is None
    wrapped = data.dataset(torch.utils.data.TensorDataset(images[:2].permute(0, 3, 1, 2)))
    assert data.provenance(wrapped) == {"source": None, "split": None, "image_size": 16}


# ----------------------------------------------------------------- probes of a BatchNorm backbone
def separable_features(n: int = 300, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.rand(n, 3, 8, 8, generator=g) * 0.2
    for c in range(classes):  # class c is bright in channel c
        images[labels == c, c] += 0.7
    return images, labels


class MeanColour(nn.Module):
    """A 'backbone' with BatchNorm whose features are the mean colour of the image."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.norm(
            x.float().mean(dim=(2, 3))
            if x.dtype != torch.uint8
            else x.float().mean(dim=(2, 3)) / 255
        )


@pytest.mark.parametrize("protocol", ["knn", "linear"])
def test_probes_separable_vs_random_labels(protocol):
    images, labels = separable_features()
    train, test = (images[:200], labels[:200]), (images[200:], labels[200:])
    backbone = MeanColour()
    bn_before = snapshot(backbone)
    run = {
        "knn": lambda tr, te: evaluate.knn_accuracy(backbone, tr, te, k=10),
        "linear": lambda tr, te: evaluate.linear_probe(backbone, tr, te, epochs=30),
    }[protocol]
    assert run(train, test) > 0.97
    shuffled = labels[torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    chance = run((images[:200], shuffled[:200]), (images[200:], shuffled[200:]))
    assert chance < 0.55
    assert all(torch.equal(bn_before[k], v) for k, v in snapshot(backbone).items())
    assert all(p.grad is None for p in backbone.parameters())
