"""Supervisor core: training, saving, loading and resuming, the hooks' order, the optimizer and
rebuilding every method from its checkpoint."""

from __future__ import annotations

import pytest
import torch
from toys import sample_subset, snapshot

from super_selfish import SimCLRSupervisor, Supervisor
from super_selfish.errors import CheckpointError


def test_supervise_trains_saves_loads_and_resumes(small_train, tmp_path):
    name = str(tmp_path / "run")
    sup = SimCLRSupervisor(small_train, seed=0)
    before = snapshot(sup.backbone)
    history = sup.supervise(lr=1e-3, epochs=1, batch_size=32, name=name, progress=False)
    assert len(history) == 1 and torch.isfinite(torch.tensor(history[0]["loss"]))
    after = snapshot(sup.backbone)
    moved = [
        k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])
    ]
    assert len(moved) > len(before) // 2

    fresh = SimCLRSupervisor(backbone="convnet-small").load(name)
    assert fresh.epoch == 1
    x = small_train.images[:8]
    a, b = sup.get_backbone().eval(), fresh.get_backbone().eval()
    assert torch.equal(a(x), b(x))

    resumed = SimCLRSupervisor(small_train, seed=0)
    history = resumed.supervise(
        lr=1e-3, epochs=2, batch_size=32, name=name, pretrained=True, progress=False
    )
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

    Traced(small_train).supervise(epochs=1, batch_size=48, name=str(tmp_path / "r"), progress=False)
    assert calls == [
        "load_pretrained",
        "init_data_optimizer",
        "epochs",
        "forward",
        "update",
        "forward",
        "update",
    ]


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
    sup.supervise(
        lr=2e-3,
        optimizer=torch.optim.Adam,
        epochs=1,
        batch_size=48,
        name=str(tmp_path / "r2"),
        progress=False,
    )
    assert type(sup.optimizer) is torch.optim.Adam
    assert sup.optimizer.param_groups[0]["lr"] == 2e-3
    assert Supervisor.default_lr == 1e-3 and Supervisor.default_optimizer is torch.optim.Adam


def test_base_supervisor_needs_forward(small_train, tmp_path):
    with pytest.raises(NotImplementedError, match="_forward"):
        Supervisor(small_train).supervise(
            epochs=1, batch_size=32, name=str(tmp_path / "r"), progress=False
        )


@pytest.mark.parametrize("method", sorted(__import__("super_selfish").methods.available()))
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
