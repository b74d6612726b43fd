"""Supervisor core: training, checkpoints, hooks, NT-Xent, backbones, evaluation."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from super_selfish import CombinedNet, SimCLRSupervisor, Supervisor, backbones, data, evaluate
from super_selfish.errors import CheckpointError
from super_selfish.losses import NTXentLoss


def sample_subset(n: int, split: str = "train", seed: int = 0) -> data.TensorImageDataset:
    ds = data.materialize(data.dataset("cifar10-sample", split))
    return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n])


@pytest.fixture(scope="module")
def small_train() -> data.TensorImageDataset:
    return sample_subset(96)


def snapshot(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_sample_dataset_is_real_and_labelled():
    train, test = data.dataset("cifar10-sample", "train"), data.dataset("cifar10-sample", "test")
    assert (len(train), len(test)) == (5000, 1000)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [500] * 10
    assert train.classes[0] == "airplane" and train.images.float().std() > 40


def test_supervise_trains_saves_loads_and_resumes(small_train, tmp_path):
    name = str(tmp_path / "run")
    sup = SimCLRSupervisor(small_train, seed=0)
    before = snapshot(sup.backbone)
    history = sup.supervise(lr=1e-3, epochs=1, batch_size=32, name=name, progress=False)
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["loss"]))
    after = snapshot(sup.backbone)
    moved = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert len(moved) > len(before) // 2

    fresh = SimCLRSupervisor(backbone="convnet-small").load(name)
    assert fresh.epoch == 1
    x = small_train.images[:8]
    a, b = sup.get_backbone().eval(), fresh.get_backbone().eval()
    assert torch.equal(a(x), b(x))

    resumed = SimCLRSupervisor(small_train, seed=0)
    history = resumed.supervise(lr=1e-3, epochs=2, batch_size=32, name=name, pretrained=True,
                                progress=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert resumed.epoch == 2 and "optimizer" in resumed.load(name).checkpoint


def test_checkpoint_of_other_method_or_backbone_is_refused(small_train, tmp_path):
    name = str(tmp_path / "run")
    SimCLRSupervisor(small_train).save(name)
    with pytest.raises(CheckpointError, match="backbone 'convnet-small'.*'resnet18'"):
        SimCLRSupervisor(backbone="resnet18").load(name)

    class OtherMethod(SimCLRSupervisor):
        method = "other"

    with pytest.raises(CheckpointError, match="'simclr'.*'other'"):
        OtherMethod().load(name)


def test_hooks_are_overridable_and_called_in_order(small_train, tmp_path):
    calls = []

    class Traced(SimCLRSupervisor):
        method = "simclr"

        def _load_pretrained(self, name, pretrained):
            calls.append("load_pretrained")
            super()._load_pretrained(name, pretrained)

        def _init_data_optimizer(self, *args, **kwargs):
            calls.append("init_data_optimizer")
            super()._init_data_optimizer(*args, **kwargs)

        def _epochs(self, epochs, name):
            calls.append("epochs")
            super()._epochs(epochs, name)

        def _forward(self, batch):
            calls.append("forward")
            return super()._forward(batch)

        def _update(self, loss):
            calls.append("update")
            super()._update(loss)

    Traced(small_train).supervise(epochs=1, batch_size=48, name=str(tmp_path / "r"),
                                  progress=False)
    assert calls == ["load_pretrained", "init_data_optimizer", "epochs",
                     "forward", "update", "forward", "update"]


def test_every_trainable_part_is_in_the_optimizer(small_train, tmp_path):
    sup = SimCLRSupervisor(small_train)
    sup.supervise(epochs=1, batch_size=48, name=str(tmp_path / "r"), progress=False)
    in_optimizer = {id(p) for g in sup.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in sup.parameters() if p.requires_grad}
    assert any(id(p) in in_optimizer for p in sup.projector.parameters())


def test_supervise_defaults_to_the_methods_lr_and_optimizer(small_train, tmp_path):
    class SlowSGD(SimCLRSupervisor):
        default_lr = 5e-3
        default_optimizer = torch.optim.SGD

    sup = SlowSGD(small_train)
    history = sup.supervise(epochs=1, batch_size=48, name=str(tmp_path / "r"), progress=False)
    assert type(sup.optimizer) is torch.optim.SGD and history[-1]["lr"] == 5e-3 == sup.base_lr
    sup.supervise(lr=2e-3, optimizer=torch.optim.Adam, epochs=1, batch_size=48,
                  name=str(tmp_path / "r2"), progress=False)
    assert type(sup.optimizer) is torch.optim.Adam
    assert sup.optimizer.param_groups[0]["lr"] == 2e-3
    assert Supervisor.default_lr == 1e-3 and Supervisor.default_optimizer is torch.optim.Adam


def reference_ntxent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        sims = [torch.exp(z[i] @ z[j] / t) for j in range(2 * n) if j != i]
        total = total - torch.log(torch.exp(z[i] @ z[partner] / t) / sum(sims))
    return total / (2 * n)


def test_ntxent_matches_reference_and_prefers_identical_views():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5), torch.randn(6, 5)
    loss = NTXentLoss(temperature=0.3)
    assert torch.allclose(loss(z1, z2), reference_ntxent(z1, z2, 0.3), atol=1e-5)
    assert loss(z1, z1) < loss(z1, z2)
    assert loss(z1, z1 + 0.01 * torch.randn_like(z1)) < loss(z1, z2)


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
        return self.norm(x.float().mean(dim=(2, 3)) if x.dtype != torch.uint8
                         else x.float().mean(dim=(2, 3)) / 255)


@pytest.mark.parametrize("protocol", ["knn", "linear"])
def test_probes_separable_vs_random_labels(protocol):
    images, labels = separable_features()
    train, test = (images[:200], labels[:200]), (images[200:], labels[200:])
    backbone = MeanColour()
    bn_before = snapshot(backbone)
    run = {"knn": lambda tr, te: evaluate.knn_accuracy(backbone, tr, te, k=10),
           "linear": lambda tr, te: evaluate.linear_probe(backbone, tr, te, epochs=30)}[protocol]
    assert run(train, test) > 0.97
    shuffled = labels[torch.randperm(300, generator=torch.Generator().manual_seed(1))]
    chance = run((images[:200], shuffled[:200]), (images[200:], shuffled[200:]))
    assert chance < 0.55
    assert all(torch.equal(bn_before[k], v) for k, v in snapshot(backbone).items())
    assert all(p.grad is None for p in backbone.parameters())


@pytest.mark.parametrize("name", backbones.available())
def test_every_registry_backbone_runs_32_and_96_px(name):
    torch.manual_seed(0)
    net = backbones.build(name).eval()
    for size in (32, 96):
        with torch.no_grad():
            out = net(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
        assert out.shape == (2, net.feature_dim)
    expected = {"convnet-small": 256, "resnet18": 512, "resnet50": 2048,
                "cifar-resnet18": 512, "efficientnet-b0": 1280, "efficientnet-b7": 2560}
    if name in expected:
        assert net.feature_dim == expected[name]


def test_user_module_and_norm_choice():
    body = nn.Sequential(nn.Conv2d(3, 7, 3), nn.BatchNorm2d(7), nn.ReLU())
    net = backbones.build(body)
    assert net.feature_dim == 7 and net(torch.rand(3, 3, 20, 20)).shape == (3, 7)
    layer = backbones.build("convnet-small", norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())
    x = torch.rand(4, 3, 32, 32)
    layer.eval()
    alone = layer(x[:1])
    assert torch.allclose(alone, layer(x)[:1], atol=1e-5)  # no statistics shared in a batch


def test_combined_net_freezes_backbone():
    net = CombinedNet(backbones.build("convnet-small"), nn.Linear(256, 10), freeze_backbone=True)
    net.train()
    assert not net.backbone.training
    net(torch.rand(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert net.head.weight.grad is not None


def test_base_supervisor_needs_forward(small_train, tmp_path):
    with pytest.raises(NotImplementedError, match="_forward"):
        Supervisor(small_train).supervise(epochs=1, batch_size=32, name=str(tmp_path / "r"),
                                          progress=False)


def test_dataset_inputs_are_converted():
    arr = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8).numpy()
    ds = data.dataset(arr)
    assert ds.images.shape == (5, 3, 16, 16) and not ds.has_labels
    gray_float = torch.rand(4, 1, 10, 10)
    ds = data.dataset((gray_float, torch.arange(4)), size=12)
    assert ds.images.shape == (4, 3, 12, 12) and ds.has_labels
    assert torch.equal(ds.images[:, 0], ds.images[:, 1])


@pytest.mark.parametrize("method", sorted(m for m in __import__("super_selfish").methods.available()))
def test_from_checkpoint_rebuilds_every_method_with_saved_hyper_parameters(method, tmp_path):
    from super_selfish import methods
    cls = methods.get(method)
    train = sample_subset(64)
    options = {"backbone": "vit-tiny"} if method == "mae" else {}
    sup = cls(train if cls.needs_labels else train.images, seed=0, **options)
    sup.supervise(lr=1e-3, epochs=1, batch_size=32, name=str(tmp_path / "run"), progress=False)
    rebuilt = Supervisor.from_checkpoint(str(tmp_path / "run"))
    assert type(rebuilt) is cls and rebuilt.epoch == 1
    x = train.images[:4]
    assert torch.equal(sup.get_backbone().eval()(x), rebuilt.get_backbone().eval()(x))


def test_from_checkpoint_refuses_another_method_and_cli_eval_scores_a_run(tmp_path, capsys):
    from super_selfish import cli
    from super_selfish.methods import RotateNetSupervisor
    name = str(tmp_path / "run")
    SimCLRSupervisor(sample_subset(64), seed=0, temperature=0.2).supervise(
        epochs=1, batch_size=32, name=name, progress=False)
    assert Supervisor.from_checkpoint(name).hparams["temperature"] == 0.2
    with pytest.raises(CheckpointError, match="simclr"):
        RotateNetSupervisor.from_checkpoint(name)
    # trained on an in-memory subset: the checkpoint names no dataset, so eval is told one
    assert cli.main(["eval", "--name", name, "--k", "20", "--dataset", "cifar10-sample"]) == 0
    assert "simclr epoch 1, kNN accuracy 0." in capsys.readouterr().err


def test_cli_train_uses_the_methods_recipe_lr_unless_given(tmp_path):
    import json

    from PIL import Image

    from super_selfish import InstanceDiscriminationSupervisor, cli
    folder = tmp_path / "images" / "any"
    folder.mkdir(parents=True)
    for i, image in enumerate(sample_subset(24).images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    runs = {"default": [], "given": ["--lr", "2e-3"]}
    for run, extra in runs.items():
        assert cli.main(["train", "instdisc", "--dataset", str(tmp_path / "images"), "--epochs",
                         "1", "--batch-size", "8", "--schedule", "constant", "--name",
                         str(tmp_path / run), *extra]) == 0
    lrs = [json.loads((tmp_path / run / "history.json").read_text())[-1]["lr"] for run in runs]
    assert lrs == [pytest.approx(InstanceDiscriminationSupervisor.recipe().lr_for(8)), 2e-3]


def test_learning_check_simclr_beats_random_init_on_the_real_sample():
    """SimCLR must learn: on the bundled CIFAR-10 sample (5,000 train / 1,000 test), 5 epochs
    of SimCLR with convnet-small raise weighted kNN (k=200) accuracy from 0.308 at random
    initialisation to 0.385 (measured on a 2-core CPU, seed 0: +0.077). We require +0.04, so
    the test fails if training stops helping, not on small numeric drift."""
    train, test = data.dataset("cifar10-sample", "train"), data.dataset("cifar10-sample", "test")
    sup = SimCLRSupervisor(train, seed=0)
    random_init = evaluate.knn_accuracy(sup.get_backbone(), train, test)
    sup.supervise(lr=2e-3, optimizer="adam", epochs=5, batch_size=256, lr_scheduler="cosine",
                  progress=False, save=False, seed=0)
    trained = evaluate.knn_accuracy(sup.get_backbone(), train, test)
    assert 0.2 < random_init < 0.36  # above chance (0.1): random conv features already help
    assert trained >= random_init + 0.04, (random_init, trained)


def test_usage_examples_in_test_py_cover_every_registered_method():
    """test.py at the repository root must stay current as methods are added."""
    import ast
    from pathlib import Path

    from super_selfish import methods
    source = (Path(__file__).resolve().parents[1] / "test.py").read_text()
    listed = next(node.value for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ALL")
    names = [element.value for element in listed.elts]
    assert sorted(names) == methods.available()
    for name in names:  # every listed method has its own example branch
        assert f'method == "{name}"' in source


def test_readme_benchmark_lists_each_methods_default_lr():
    """The README's methods table says at which rate each method ran: its ``default_lr``."""
    from pathlib import Path

    from super_selfish import methods
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Every method against random initialisation"):]
    rows = [line.strip("|").split("|") for line in section.splitlines()
            if line.startswith("| ") and "default lr" not in line][:len(methods.available())]
    listed = {cells[0].strip(): float(cells[2]) for cells in rows}
    assert listed == {name: methods.get(name).default_lr for name in methods.available()}
