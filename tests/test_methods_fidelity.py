"""Methods that follow their papers: freezing by dropped gradients, CPC's non-overlapping
targets, the per-resolution presets, SwAV's and MoCo's queues, per-view encoding, heads given
as arguments."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from super_selfish import augment, data
from super_selfish.errors import ConfigError
from super_selfish.methods import (ContrastivePredictiveCodingSupervisor, DINOSupervisor,
                                   MomentumContrastSupervisor, PIRLSupervisor, SimCLRSupervisor,
                                   SwAVSupervisor)
from super_selfish.methods import cpc as cpc_module


def tiny_net() -> nn.Module:
    """A 16-d, two-layer convolutional backbone: fast enough for many runs per test."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())


@pytest.fixture(scope="module")
def images():
    ds = data.materialize(data.dataset("cifar10-sample"))
    return ds.images[:64]


def run(sup, name=None, epochs=1, **kw):
    options = dict(epochs=epochs, batch_size=32, progress=False, device="cpu", lr=1e-3,
                   optimizer="adam", lr_scheduler="constant")
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


# ---------------------------------------------------------------------------- item 3: CPC
def _cpc_pixel_sets(sup, direction):
    """For each grid row (in ``direction``'s reading order): the set of pixel positions of its
    patches."""
    size = sup.image_size
    position = torch.arange(size * size, dtype=torch.float64).view(1, 1, size, size)
    patches = sup.patches(position)  # (1, G, G, 1, p, p)
    grid = patches.flatten(3).permute(0, 3, 1, 2)  # (1, p*p, G, G)
    grid = cpc_module.orient(grid, direction)
    return [set(grid[0, :, r].flatten().long().tolist()) for r in range(sup.grid)]


@pytest.mark.parametrize("image_size", [32, 40])
def test_cpc_default_targets_share_no_pixels_with_their_context(image_size):
    sup = ContrastivePredictiveCodingSupervisor(image_size=image_size, context_blocks=1,
                                                context_dim=8, directions=cpc_module.DIRECTIONS)
    assert sup.steps == (3,)  # half-overlapping patches: offsets 1 and 2 touch the context
    for direction in sup.directions:
        rows = _cpc_pixel_sets(sup, direction)
        for k in sup.steps:
            for r in range(sup.grid - k):
                seen = set().union(*rows[:r + 1])
                assert not rows[r + k] & seen, (direction, k, r)
    # The offsets below the default do share pixels: the check can fail.
    rows = _cpc_pixel_sets(sup, "top-down")
    assert rows[1] & rows[0]


def test_cpc_directions_train_their_own_context(images):
    sup = ContrastivePredictiveCodingSupervisor(
        images[:8], tiny_net(), seed=0, context_blocks=1, context_dim=8,
        directions=("top-down", "right-left"))
    assert len(sup.contexts) == 2 and len(sup.predictors) == 2
    before = [p.detach().clone() for p in sup.contexts[1].parameters()]
    run(sup, batch_size=4, epochs=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, sup.contexts[1].parameters()))
    with pytest.raises(ConfigError, match="directions"):
        ContrastivePredictiveCodingSupervisor(directions=("up",))


# ---------------------------------------------------------------------------- item 4: PIRL
def test_pirl_image_branch_uses_the_paper_augmentation():
    views = PIRLSupervisor(image_size=32).views
    image_ops = [type(op).__name__ for op in views.pipelines[0].ops]
    assert image_ops == ["RandomResizedCrop", "HorizontalFlip", "ColorJitter", "Grayscale"]
    assert [type(op).__name__ for op in views.pipelines[1].ops] == ["Resize"]
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    image, source = views(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(source, x.float() / 255, atol=1e-6)  # tiles come from the image
    assert not torch.allclose(image, source, atol=0.05)


# ---------------------------------------------------------------------------- item 5: SwAV queue
def test_swav_queue_follows_the_paper_scaled_to_the_run(images, capsys):
    kwargs = dict(n_prototypes=16, hidden_dim=32, projection_dim=16, seed=0,
                  augment=augment.build("swav", 32, n_local=0))
    sup = SwAVSupervisor(images, tiny_net(), **kwargs)
    assert sup.queues[0].size == 64  # min(3840, len(dataset))
    # Fills from epoch min(15, ceil(3 / 20)) = 1 (the second), is full and read in the third.
    history = run(sup, epochs=3, batch_size=16)
    assert [r["queue_active"] for r in history] == [0.0, 0.0, 1.0]
    assert sup._queue_start == 1 and int(sup.queues[0].filled) == 64
    assert capsys.readouterr().err.count("queue of 64 embeddings per global crop active") == 1
    # At the paper's batch (256) and above the automatic queue stays off.
    big = SwAVSupervisor(torch.cat([images] * 4), tiny_net(), **kwargs)
    assert "queue_active" not in run(big, epochs=1, batch_size=256)[0]
    assert SwAVSupervisor(images, tiny_net(), queue_length=0, **kwargs).queues is None


# ---------------------------------------------------------------------------- item 6: MoCo queue
def test_moco_auto_queue_is_a_tenth_of_the_data_at_most(images):
    sup = MomentumContrastSupervisor(torch.cat([images] * 8), tiny_net(), hidden_dim=16,
                                     projection_dim=8)  # 512 images
    assert sup.queue.size == 51
    run(sup, epochs=0, batch_size=16)
    assert sup.queue.size == 48  # a multiple of the batch below len(dataset) / 10
    assert MomentumContrastSupervisor(hidden_dim=16, projection_dim=8).queue.size == 65536


# ---------------------------------------------------------------------------- item 7: SimCLR
def _op(views, name):
    return next((op for op in views.pipelines[0].ops if type(op).__name__ == name), None)


def test_simclr_preset_follows_the_paper_per_resolution():
    small, large = augment.build("simclr", 32), augment.build("simclr", 96)
    assert _op(small, "GaussianBlur") is None and _op(small, "ColorJitter").brightness == 0.4
    assert _op(small, "ColorJitter").hue == pytest.approx(0.1)
    assert _op(large, "GaussianBlur").p == 0.5 and _op(large, "ColorJitter").brightness == 0.8
    sup = SimCLRSupervisor(image_size=32, color_strength=1.0, hidden_dim=16)
    assert _op(sup.views, "ColorJitter").saturation == pytest.approx(0.8)
    assert _op(augment.build("moco_v2", 32), "GaussianBlur").p == 0.5  # MoCo v2's own recipe
    with pytest.raises(ConfigError, match="color_strength"):
        augment.build("simclr", 32, color_strength=-1)
