"""Training recipes (super_selfish.recipes), LARS, Polyak averaging (ema=), get_backbone(which=)
and the original Super-Selfish's names and supervise() arguments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from toys import ToyRotation

import super_selfish
from super_selfish import Supervisor, backbones, data, methods, recipes, store
from super_selfish.errors import ConfigError
from super_selfish.optim import LARS
from super_selfish.recipes import RECIPES, Recipe

README = Path(__file__).resolve().parents[2] / "README.md"


def tiny_body() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())


@pytest.fixture(scope="module")
def images() -> data.TensorImageDataset:
    ds = data.materialize(data.dataset("cifar10-sample", "train"))
    return ds.subset(torch.arange(32))


class RecipeToy(ToyRotation):
    """A fast method with a recipe of its own (SGD, linear scaling, warm-up then cosine)."""

    method = "toy-recipe"
    default_recipe = Recipe(
        "sgd", 0.1, 32, "linear", 0.01, momentum=0.8, warmup_epochs=10, paper="test"
    )


class LrRecorder(super_selfish.Callback):
    def __init__(self):
        self.lrs = []

    def on_step_end(self, sup, step, metrics):
        self.lrs.append(sup.optimizer.param_groups[0]["lr"])


# ---------------------------------------------------------------------------- the table
def test_every_registered_method_has_its_recipe():
    assert sorted(RECIPES) == methods.available()
    for name in methods.available():
        assert methods.get(name).recipe() is RECIPES[name]
        assert RECIPES[name].paper  # says where it comes from
    assert RECIPES["simclr"].optimizer == "lars" and RECIPES["moco"].optimizer == "sgd"
    assert RECIPES["dino"].optimizer == "adamw" and RECIPES["mae"].betas == (0.9, 0.95)


def test_readme_recipe_table_is_the_recipes_table():
    text = README.read_text()
    section = text[text.index("### Training recipes") :]
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ")
    ]
    assert rows[0] == recipes.TABLE_HEADER
    assert rows[1 : len(RECIPES) + 1] == recipes.table_rows()


def test_rate_scaling_and_warmup_clipping():
    linear = Recipe("lars", 0.3, 256, "linear", warmup_epochs=10)
    assert linear.lr_for(128) == pytest.approx(0.15)
    assert Recipe("lars", 0.3, 256, "sqrt").lr_for(64) == pytest.approx(0.15)
    assert Recipe("adam", 1e-3, 256, "none").lr_for(32) == 1e-3
    assert linear.warmup_for(5) == 0.5 and linear.warmup_for(1000) == 10  # <= 10% of a run
    given = linear.resolve(128, 5, warmup_epochs=3.0, lr=0.2, optimizer="adam")
    assert (given["warmup_epochs"], given["lr"], given["optimizer_name"]) == (3.0, 0.2, "adam")
    assert given["from_recipe"] == ["weight_decay", "lr_scheduler"]
    with pytest.raises(ConfigError, match="optimizer"):
        Recipe("rmsprop", 0.1)


# ---------------------------------------------------------------------------- supervise()
def test_supervise_trains_on_the_methods_recipe(images, tmp_path):
    sup = methods.get("simclr")(images, backbone=tiny_body(), seed=0)
    sup.supervise(epochs=1, batch_size=16, name=str(tmp_path / "run"), progress=False)
    opt = sup.optimizer
    assert type(opt) is LARS and sup.base_lr == pytest.approx(0.3 * 16 / 256)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-6 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert decay["momentum"] == 0.9
    assert sup.run_options["optimizer"] == "lars" and sup.run_options["lr_scheduler"] == "cosine"
    assert sup.run_options["warmup_epochs"] == pytest.approx(0.1)  # 10 epochs, clipped to 10%


def test_warmup_then_cosine_at_each_step(images, tmp_path):
    recorder = LrRecorder()
    sup = RecipeToy(images, backbone=tiny_body(), seed=0)
    sup.supervise(
        epochs=10, batch_size=16, name=str(tmp_path / "run"), progress=False, callbacks=[recorder]
    )
    base, warmup, total = 0.1 * 16 / 32, 2, 20  # warm-up: 10% of 10 epochs of 2 steps
    expected = [
        base
        * (
            (k + 1) / warmup
            if k < warmup
            else 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))
        )
        for k in range(1, total + 1)
    ]
    assert recorder.lrs == pytest.approx(expected)
    assert type(sup.optimizer) is torch.optim.SGD
    assert sup.optimizer.param_groups[0]["momentum"] == 0.8
    assert [g["weight_decay"] for g in sup.optimizer.param_groups] == [0.01, 0.0]


def test_explicit_arguments_override_the_recipe(images, tmp_path):
    sup = RecipeToy(images, backbone=tiny_body(), seed=0)
    sup.supervise(
        lr=2e-3,
        optimizer="adamw",
        weight_decay=0.5,
        warmup_epochs=0,
        lr_scheduler="constant",
        epochs=1,
        batch_size=16,
        name=str(tmp_path / "a"),
        progress=False,
    )
    assert type(sup.optimizer) is torch.optim.AdamW and sup.scheduler is None
    assert sup.optimizer.param_groups[0]["lr"] == 2e-3
    assert [g["weight_decay"] for g in sup.optimizer.param_groups] == [0.5, 0.0]
    assert sup.run_options["from_recipe"] == []
    sup.supervise(
        optimizer=torch.optim.Adam,
        epochs=1,
        batch_size=16,
        name=str(tmp_path / "b"),
        progress=False,
    )  # only the optimizer given
    assert type(sup.optimizer) is torch.optim.Adam and sup.base_lr == pytest.approx(0.05)
    assert sup.run_options["optimizer"] == "torch.optim.adam.Adam"


def test_resolved_recipe_is_in_run_options_history_and_checkpoint(images, tmp_path):
    name = str(tmp_path / "run")
    sup = RecipeToy(images, backbone=tiny_body(), seed=0)
    sup.supervise(epochs=1, batch_size=16, name=name, progress=False)
    record = json.loads((store.run_dir(name) / "history.json").read_text())[-1]
    assert (record["optimizer"], record["base_lr"], record["weight_decay"]) == ("sgd", 0.05, 0.01)
    assert (record["warmup_epochs"], record["lr_scheduler"]) == (0.1, "cosine")
    saved = store.read(name)["run_options"]
    assert saved["lr"] == 0.05 and saved["recipe"]["lr"] == 0.1
    assert saved["recipe"]["batch_size"] == 32 and saved["from_recipe"]
    assert RecipeToy(images, backbone=tiny_body()).load(name).run_options == saved


def test_a_class_setting_default_lr_keeps_its_constant_adam(images, tmp_path):
    assert Supervisor.recipe().factory is torch.optim.Adam
    sup = ToyRotation(images, backbone=tiny_body(), seed=0)  # no recipe: Adam 1e-3, constant
    sup.supervise(epochs=1, batch_size=16, name=str(tmp_path / "r"), progress=False)
    assert type(sup.optimizer) is torch.optim.Adam and sup.scheduler is None
    assert sup.base_lr == 1e-3 and sup.run_options["weight_decay"] == 0.0


def test_original_super_selfish_supervise_call(images, tmp_path):
    """The original signature, positionally, with a scheduler callable of the optimizer."""
    sup = methods.JigsawNetSupervisor(images, backbone="convnet-small", seed=0)
    steps = lambda optimizer: torch.optim.lr_scheduler.StepLR(  # noqa: E731
        optimizer, step_size=1, gamma=0.5
    )
    sup.supervise(
        1e-3, torch.optim.Adam, 1, 16, True, 0, str(tmp_path / "base"), False, steps, progress=False
    )
    assert isinstance(sup.scheduler, torch.optim.lr_scheduler.StepLR)
    assert sup.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**2)  # 2 steps
    assert sup.run_options["warmup_epochs"] == 0.0
    with pytest.raises(ConfigError, match="warmup_epochs"):
        sup.supervise(
            lr_scheduler=steps,
            warmup_epochs=1,
            epochs=1,
            batch_size=16,
            name=str(tmp_path / "x"),
            progress=False,
        )


def test_cli_train_uses_the_recipe(tmp_path):
    from PIL import Image

    from super_selfish import cli

    folder = tmp_path / "images" / "any"
    folder.mkdir(parents=True)
    for i, image in enumerate(data.materialize(data.dataset("cifar10-sample")).images[:16]):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    name = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "train",
                "jigsaw",
                "--dataset",
                str(tmp_path / "images"),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--name",
                name,
                "--ema",
                "0.9",
            ]
        )
        == 0
    )
    record = json.loads((Path(name) / "history.json").read_text())[-1]
    assert record["optimizer"] == "sgd" and record["lr_scheduler"] == "cosine"
    assert record["base_lr"] == pytest.approx(RECIPES["jigsaw"].lr_for(8))
    assert record["weight_decay"] == RECIPES["jigsaw"].weight_decay
    assert store.read(name)["run_options"]["ema"] == 0.9


# ---------------------------------------------------------------------------- LARS
def test_lars_follows_its_formula():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = LARS(
        [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
        lr=0.5,
        momentum=0.9,
        eta=0.01,
    )
    w.grad, b.grad = torch.tensor([[1.0, 0.0]]), torch.tensor([0.5, 0.5])
    w0 = w.detach().clone()
    u = w.grad + 0.1 * w0
    trust = 0.01 * w0.norm() / u.norm()
    opt.step()
    assert torch.allclose(w, w0 - 0.5 * trust * u)
    assert torch.allclose(b, torch.tensor([1.0 - 0.25, -1.0 - 0.25]))  # 1-d: plain SGD
    w1 = w.detach().clone()
    u2 = w.grad + 0.1 * w1
    v = 0.9 * trust * u + 0.01 * w1.norm() / u2.norm() * u2  # momentum of the scaled updates
    opt.step()
    assert torch.allclose(w, w1 - 0.5 * v)


def test_lars_adapts_1d_tensors_when_told():
    b = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||b|| = 5
    opt = LARS([{"params": [b], "weight_decay": 0.0}], lr=0.5, eta=0.01, exclude_1d=False)
    b.grad = torch.tensor([0.6, 0.8])  # ||g|| = 1
    opt.step()
    assert torch.allclose(b, torch.tensor([3.0, 4.0]) - 0.5 * 0.05 * torch.tensor([0.6, 0.8]))


def test_vicreg_recipe_adapts_biases_and_norm_weights(images, tmp_path):
    """VICReg's recipe is the one LARS recipe that adapts 1-d tensors too (docs/parity.md);
    the others leave them out, as their papers do, also when "lars" is named explicitly."""
    assert RECIPES["vicreg"].lars_exclude_1d is False and "biases" in RECIPES["vicreg"].deviation
    assert all(r.lars_exclude_1d for k, r in RECIPES.items() if k != "vicreg")
    for name, optimizer in (("vicreg", None), ("vicreg", "lars"), ("simclr", "lars")):
        sup = methods.get(name)(images, backbone=tiny_body(), seed=0)
        sup.supervise(
            epochs=1,
            batch_size=16,
            name=str(tmp_path / name),
            progress=False,
            optimizer=optimizer,
        )
        assert type(sup.optimizer) is LARS
        groups = sup.optimizer.param_groups
        assert [g["exclude_1d"] for g in groups] == [name != "vicreg"] * len(groups)


# ---------------------------------------------------------------------------- ema=
def test_ema_backbone_averages_and_round_trips(images, tmp_path):
    name = str(tmp_path / "run")
    sup = RecipeToy(images, backbone=tiny_body(), seed=0)
    with pytest.raises(ConfigError, match="ema"):
        sup.get_backbone("ema")
    start = {k: v.clone() for k, v in sup.backbone.state_dict().items()}
    sup.supervise(epochs=2, batch_size=16, name=name, progress=False, ema=0.5)
    ema, online = sup.get_backbone(which="ema"), sup.get_backbone()
    assert ema is sup.ema_backbone and online is sup.backbone
    weights = [
        k
        for k, v in start.items()
        if v.is_floating_point()
        and "running" not in k
        and (v - online.state_dict()[k]).abs().max() > 1e-4
    ]  # those training moved
    assert len(weights) >= 2
    for key in weights:  # between the start and the online weights
        assert not torch.equal(ema.state_dict()[key], online.state_dict()[key])
        assert not torch.equal(ema.state_dict()[key], start[key])
    assert torch.equal(
        ema.state_dict()["body.1.running_mean"], online.state_dict()["body.1.running_mean"]
    )
    assert not any(p.requires_grad for p in ema.parameters())
    assert sup.run_options["ema"] == 0.5
    loaded = RecipeToy(images, backbone=tiny_body()).load(name)
    for key, value in ema.state_dict().items():
        assert torch.equal(loaded.get_backbone("ema").state_dict()[key], value)


# ---------------------------------------------------------------------------- get_backbone
def test_dino_transfers_its_teacher_byol_and_moco_their_online_encoder(tmp_path):
    dino = methods.get("dino")(out_dim=64, hidden_dim=32, bottleneck_dim=16)
    assert dino.get_backbone() is dino.momentum_backbone
    assert dino.get_backbone("student") is dino.get_backbone("online") is dino.backbone
    with torch.no_grad():  # make the teacher differ: what is saved is the teacher
        next(dino.momentum_backbone.parameters()).add_(1.0)
    saved = backbones.load(dino.save_backbone(tmp_path / "dino.pt"))
    assert torch.equal(next(saved.parameters()), next(dino.momentum_backbone.parameters()))
    byol = methods.get("byol")(hidden_dim=32, projection_dim=16)
    assert byol.get_backbone() is byol.backbone
    assert byol.get_backbone("momentum") is byol.momentum_backbone
    moco = methods.get("moco")(hidden_dim=32, projection_dim=16, queue_size=32)
    assert moco.get_backbone() is moco.backbone
    assert moco.get_backbone("momentum") is moco.momentum_backbone
    with pytest.raises(ConfigError, match="which"):
        moco.get_backbone("teacher")


def test_original_class_names_are_aliases():
    pairs = {
        "JigsawNetSupervisor": "JigsawSupervisor",
        "ExemplarNetSupervisor": "ExemplarSupervisor",
        "DenoiseNetSupervisor": "DenoiseSupervisor",
        "ContextNetSupervisor": "ContextSupervisor",
        "SplitBrainNetSupervisor": "SplitBrainSupervisor",
        "BiGanSupervisor": "BiGANSupervisor",
    }
    for alias, name in pairs.items():
        assert getattr(super_selfish, alias) is getattr(super_selfish, name)
        assert getattr(methods, alias) is getattr(methods, name)
        assert alias in super_selfish.__all__


def test_an_lr_far_from_the_recipes_optimizer_scale_is_warned():
    """lr=2e-3 (an Adam rate) with SimCLR's LARS recipe (0.3 at batch 256) trained silently
    badly; the user is told to name the optimizer. A rate on the recipe's scale, or one given
    with its optimizer, is not warned about."""
    simclr = RECIPES["simclr"]
    with pytest.warns(UserWarning, match="optimizer='adam'"):
        simclr.resolve(256, 10, lr=2e-3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert simclr.resolve(256, 10, lr=0.5)["lr"] == 0.5
        resolved = simclr.resolve(256, 10, lr=2e-3, optimizer="adam")
    assert resolved["optimizer_name"] == "adam" and resolved["lr"] == 2e-3
