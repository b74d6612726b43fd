"""Methods that follow their papers: freezing by dropped gradients, CPC's non-overlapping
targets, the per-resolution presets, SwAV's and MoCo's queues, per-view encoding, heads given
as arguments."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from super_selfish import augment, data, methods
from super_selfish.errors import CheckpointError, ConfigError
from super_selfish.methods import (
    ContrastivePredictiveCodingSupervisor,
    DINOSupervisor,
    MomentumContrastSupervisor,
    PIRLSupervisor,
    RotateNetSupervisor,
    SimCLRSupervisor,
    SwAVSupervisor,
)
from super_selfish.methods import cpc as cpc_module
from super_selfish.methods.mae import MAEDecoder


def tiny_net() -> nn.Module:
    """A 16-d, two-layer convolutional backbone: fast enough for many runs per test."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, 2, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
    )


@pytest.fixture(scope="module")
def images():
    ds = data.materialize(data.dataset("cifar10-sample"))
    return ds.images[:64]


def run(sup, name=None, epochs=1, **kw):
    options = dict(
        epochs=epochs,
        batch_size=32,
        progress=False,
        device="cpu",
        lr=1e-3,
        optimizer="adam",
        lr_scheduler="constant",
    )
    options.update(kw)
    return sup.supervise(name=name, save=name is not None, **options)


# ---------------------------------------------------------------------------- item 1: freezing
FROZEN = {
    "dino": (
        DINOSupervisor,
        dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, freeze_last_layer_steps=3),
        lambda s: s.head.last_layer.parametrizations.weight.original1,
    ),
    "swav": (
        SwAVSupervisor,
        dict(n_prototypes=16, hidden_dim=32, projection_dim=16, freeze_prototypes_steps=3),
        lambda s: s.prototypes.weight,
    ),
}


def frozen_case(name, images):
    cls, kwargs, part = FROZEN[name]
    sup = cls(images[:32], tiny_net(), seed=0, augment=augment.build(name, 32, n_local=0), **kwargs)
    return sup, part


@pytest.mark.parametrize("name", list(FROZEN))
def test_frozen_part_trains_in_a_second_supervise(name, images):
    sup, part = frozen_case(name, images)
    start = part(sup).detach().clone()
    run(sup, batch_size=16)  # 2 steps, both inside the freeze window (3 steps)
    assert torch.allclose(part(sup), start, atol=1e-6)  # SwAV: re-normalised only
    assert any(p is part(sup) for g in sup.optimizer.param_groups for p in g["params"])
    run(sup, epochs=2, batch_size=16)  # steps 2 (frozen) and 3 (free)
    assert not torch.allclose(part(sup), start)


@pytest.mark.parametrize("name", list(FROZEN))
def test_frozen_part_resumes_in_place(name, images, tmp_path):
    sup, part = frozen_case(name, images)
    start = part(sup).detach().clone()
    run(sup, name=str(tmp_path / "run"), batch_size=16)
    run(sup, name=str(tmp_path / "run"), epochs=2, batch_size=16, pretrained=True)  # no error
    assert sup.epoch == 2 and not torch.allclose(part(sup), start)


@pytest.mark.parametrize("name", list(FROZEN))
def test_default_freeze_window_is_at_most_a_tenth_of_a_short_run(name, images):
    """The papers freeze for one epoch; in a 1-epoch run that was the whole run, so the last
    layer / prototypes never trained. The default window is min(1 epoch, 10% of the run)."""
    cls, kwargs, part = FROZEN[name]
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("freeze_")}
    sup = cls(images[:64], tiny_net(), seed=0, augment=augment.build(name, 32, n_local=0), **kwargs)
    start = part(sup).detach().clone()
    run(sup, batch_size=8)  # 8 steps: frozen for ceil(0.8) = 1 step, then trained
    assert sup.global_step == 8 and not torch.allclose(part(sup), start)


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
    sup = ContrastivePredictiveCodingSupervisor(
        image_size=image_size, context_blocks=1, context_dim=8, directions=cpc_module.DIRECTIONS
    )
    assert sup.steps == (3,)  # half-overlapping patches: offsets 1 and 2 touch the context
    for direction in sup.directions:
        rows = _cpc_pixel_sets(sup, direction)
        for k in sup.steps:
            for r in range(sup.grid - k):
                seen = set().union(*rows[: r + 1])
                assert not rows[r + k] & seen, (direction, k, r)
    # The offsets below the default do share pixels: the check can fail.
    rows = _cpc_pixel_sets(sup, "top-down")
    assert rows[1] & rows[0]


def test_cpc_directions_train_their_own_context(images):
    sup = ContrastivePredictiveCodingSupervisor(
        images[:8],
        tiny_net(),
        seed=0,
        context_blocks=1,
        context_dim=8,
        directions=("top-down", "right-left"),
    )
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
    kwargs = dict(
        n_prototypes=16,
        hidden_dim=32,
        projection_dim=16,
        seed=0,
        augment=augment.build("swav", 32, n_local=0),
    )
    sup = SwAVSupervisor(images[:32], tiny_net(), **kwargs)
    assert sup.queues[0].size == 32  # min(3840, len(dataset))
    # Fills from epoch min(15, ceil(3 / 20)) = 1 (the second), is full and read in the third.
    history = run(sup, epochs=3, batch_size=16)
    assert [r["queue_active"] for r in history] == [0.0, 0.0, 1.0]
    assert sup._queue_start == 1 and int(sup.queues[0].filled) == 32
    assert capsys.readouterr().err.count("queue of 32 embeddings per global crop active") == 1
    # At the paper's batch (256) and above the automatic queue stays off.
    big = SwAVSupervisor(torch.cat([images] * 4), tiny_net(), **kwargs)
    run(big, epochs=0, batch_size=256)
    assert not big._queue_used
    assert SwAVSupervisor(images, tiny_net(), queue_length=0, **kwargs).queues is None


# ---------------------------------------------------------------------------- item 6: MoCo queue
def test_moco_auto_queue_is_a_tenth_of_the_data_at_most(images):
    sup = MomentumContrastSupervisor(
        torch.cat([images] * 8), tiny_net(), hidden_dim=16, projection_dim=8
    )  # 512 images
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


# ---------------------------------------------------------------------------- item 8: per view
PER_VIEW = {
    "byol": dict(hidden_dim=16, projection_dim=8),
    "simsiam": dict(hidden_dim=16, projection_dim=8, predictor_hidden_dim=4),
    "barlow": dict(hidden_dim=16, projection_dim=8),
    "vicreg": dict(hidden_dim=16, projection_dim=8),
    "nnclr": dict(hidden_dim=16, projection_dim=8, predictor_hidden_dim=16),
}


@pytest.mark.parametrize("name", list(PER_VIEW))
def test_each_view_gets_its_own_batchnorm_statistics(name, images):
    sup = methods.get(name)(images[:16], tiny_net(), seed=0, **PER_VIEW[name])
    run(sup, epochs=0, batch_size=8)
    sizes = []
    for module in sup.modules():
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            module.register_forward_hook(lambda m, args, out: sizes.append(len(args[0])))
    sup.train()._forward(next(iter(sup.loader)))
    assert sizes and set(sizes) == {8}  # never the two views' 16 together


# ---------------------------------------------------------------------------- item 9: heads
class MapDecoder(nn.Module):
    """A user decoder: 1x1 conv of the feature map, resized to ``size``."""

    def __init__(self, out, sigmoid=True):
        super().__init__()
        self.conv, self.sigmoid = nn.LazyConv2d(out, 1), sigmoid

    def forward(self, maps, size):
        out = F.interpolate(self.conv(maps), size=tuple(size), mode="nearest")
        return out.sigmoid() if self.sigmoid else out


class PairCritic(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.image, self.code = nn.Linear(3 * 32 * 32, 1), nn.Linear(latent_dim, 1)

    def forward(self, images, z):
        return (self.image(images.flatten(1)) + self.code(z)).squeeze(1)


def _user_heads(name):
    """Modules of the user's own for every head argument of method ``name`` (lazy layers take
    their input width from the first call, as a user's head may)."""
    lin = nn.LazyLinear
    if name in ("simclr", "barlow", "vicreg", "swav", "moco", "instdisc"):
        return {"projector" if name != "instdisc" else "head": lin(8)}
    if name in ("simsiam", "nnclr"):
        return {"projector": lin(8), "predictor": nn.Linear(8, 8)}
    if name == "byol":  # the default predictor takes the user projector's width
        return {"projector": lin(8)}
    if name == "dino":
        return {"head": lin(32)}
    if name in ("rotnet", "jigsaw", "relpos", "exemplar"):
        return {"predictor": lin({"rotnet": 4, "jigsaw": 24, "relpos": 8, "exemplar": 10}[name])}
    if name == "pirl":
        return {"head": lin(8), "tile_head": lin(4), "jigsaw_head": lin(8)}
    if name == "cmc":
        return {"head": lin(8), "ab_head": lin(8)}
    if name == "cpc":
        return {"context": nn.Conv2d(16, 16, 1)}
    if name == "denoise":
        return {"decoder": MapDecoder(3)}
    if name == "context":
        return {
            "decoder": MapDecoder(3),
            "discriminator": nn.Sequential(nn.Flatten(), lin(1), nn.Flatten(0)),
        }
    if name == "splitbrain":
        return {"decoder_l": MapDecoder(16**2, False), "decoder_ab": MapDecoder(50, False)}
    if name == "mae":
        return {"decoder": MAEDecoder(192, 4 * 4 * 3, 32, 1, 2)}
    if name == "bigan":
        return {
            "encoder_head": lin(128),
            "generator": nn.Sequential(
                nn.Linear(128, 3 * 32 * 32), nn.Sigmoid(), nn.Unflatten(1, (3, 32, 32))
            ),
            "discriminator": PairCritic(128),
        }
    raise AssertionError(f"no user heads for {name}")


ATTRIBUTE = {
    "predictor": {
        "rotnet": "classifier",
        "jigsaw": "classifier",
        "relpos": "classifier",
        "exemplar": "classifier",
    },
    "context": {"cpc": "context"},
}


def _tiny_backbone(name):
    if name == "mae":
        return "vit-tiny"
    if name in ("cmc", "splitbrain"):  # an L and an ab encoder
        return (
            nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(2, 16, 3, 2, 1), nn.ReLU()),
        )
    return tiny_net()


def test_every_supervisor_takes_its_heads_as_arguments():
    assert len(methods.available()) == 22
    for name in methods.available():
        cls = methods.get(name)
        extra = {"num_images": 10} if name == "exemplar" else {}
        heads = _user_heads(name)
        sup = cls(None, _tiny_backbone(name), image_size=32, **extra, **heads)
        for argument, module in heads.items():
            attribute = ATTRIBUTE.get(argument, {}).get(name, argument)
            assert getattr(sup, attribute) is module, (name, argument)
        assert sup.hparams["custom_heads"] == list(heads), name
    with pytest.raises(ConfigError, match="projector"):
        SimCLRSupervisor(None, tiny_net(), projector="mlp")


def test_a_user_head_is_trained_saved_and_restored(images, tmp_path):
    name = str(tmp_path / "rot")
    head = nn.Sequential(nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 4))
    sup = RotateNetSupervisor(images[:32], predictor=head, seed=0)
    start = [p.detach().clone() for p in head.parameters()]
    run(sup, name=name, batch_size=16)
    assert sup.classifier is head
    assert all(not torch.equal(a, b) for a, b in zip(start, head.parameters()))
    with pytest.raises(CheckpointError, match="predictor of your own.*predictor="):
        RotateNetSupervisor.from_checkpoint(name)
    other = nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.Linear(32, 4))  # sized on use
    back = RotateNetSupervisor.from_checkpoint(name, predictor=other)
    assert back.classifier is other
    assert all(torch.equal(a, b) for a, b in zip(head.parameters(), other.parameters()))
    with pytest.raises(ConfigError, match="predictor"):
        RotateNetSupervisor(image_size=32, predictor=nn.Linear(256, 5))  # 4 rotations
