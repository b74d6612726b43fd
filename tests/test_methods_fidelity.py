"""Methods that follow their papers: freezing by dropped gradients, CPC's non-overlapping
targets, the per-resolution presets, SwAV's and MoCo's queues, per-view encoding, heads given
as arguments."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from super_selfish import augment, data
from super_selfish.methods import DINOSupervisor, SwAVSupervisor


def tiny_net() -> nn.Module:
    """A 16-d, two-layer convolutional backbone: fast enough for many runs per test."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())


@pytest.fixture(scope="module")
def images():
    ds = data.materialize(data.dataset("cifar10-sample"))
    return ds.images[:64]


def run(sup, name=None, epochs=1, **kw):
    options = dict(epochs=epochs, batch_size=32, progress=False, device="cpu", lr=1e-2, lr_scheduler="constant")
    options.update(kw)
    return sup.supervise(name=name, save=name is not None, **options)


# ---------------------------------------------------------------------------- item 1: freezing
FROZEN = {
    "dino": (DINOSupervisor, dict(out_dim=64, hidden_dim=32, bottleneck_dim=16,
                                  freeze_last_layer_steps=3),
             lambda s: s.head.last_layer.parametrizations.weight.original1),
    "swav": (SwAVSupervisor, dict(n_prototypes=16, hidden_dim=32, projection_dim=16,
                                  freeze_prototypes_steps=3),
             lambda s: s.prototypes.weight),
}


def frozen_case(name, images):
    cls, kwargs, part = FROZEN[name]
    sup = cls(images, tiny_net(), seed=0, augment=augment.build(name, 32, n_local=1), **kwargs)
    return sup, part


@pytest.mark.parametrize("name", list(FROZEN))
def test_frozen_part_trains_in_a_second_supervise(name, images):
    sup, part = frozen_case(name, images)
    start = part(sup).detach().clone()
    run(sup)  # 2 steps, both inside the freeze window (3 steps)
    assert torch.allclose(part(sup), start, atol=1e-6)  # SwAV: re-normalised only
    assert any(p is part(sup) for g in sup.optimizer.param_groups for p in g["params"])
    run(sup, epochs=2)  # steps 2 (frozen) and 3 (free)
    assert not torch.allclose(part(sup), start)


@pytest.mark.parametrize("name", list(FROZEN))
def test_frozen_part_resumes_in_place(name, images, tmp_path):
    sup, part = frozen_case(name, images)
    start = part(sup).detach().clone()
    run(sup, name=str(tmp_path / "run"))
    run(sup, name=str(tmp_path / "run"), epochs=2, pretrained=True)  # no param-group error
    assert sup.epoch == 2 and not torch.allclose(part(sup), start)
