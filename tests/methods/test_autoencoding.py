"""Autoencoding and generative methods: denoise, context, splitbrain, mae, bigan."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from toys import sample_subset

from super_selfish import backbones, color, decoders, methods, store
from super_selfish.data import Batch
from super_selfish.errors import ConfigError
from super_selfish.losses import MaskedPatchLoss
from super_selfish.methods.mae import patchify, random_masking
from super_selfish.methods.splitbrain import quantize_ab, quantize_l

# method -> (class, backbone used for the registry-backbone checks, trainable parts)
METHODS = {
    "denoise": ("DenoiseSupervisor", "resnet18", ["backbone", "decoder"]),
    "context": ("ContextSupervisor", "resnet18", ["backbone", "decoder", "discriminator"]),
    "splitbrain": (
        "SplitBrainSupervisor",
        "resnet18",
        ["backbone", "backbone_ab", "decoder_l", "decoder_ab"],
    ),
    "mae": ("MAESupervisor", "vit-tiny", ["backbone", "decoder"]),
    "bigan": (
        "BiGANSupervisor",
        "resnet18",
        ["backbone", "encoder_head", "generator", "discriminator"],
    ),
}


def _cls(name):
    cls = methods.get(name)
    assert cls.__name__ == METHODS[name][0] and cls.method == name
    return cls


def _small_backbone(name):
    """convnet-small; for MAE (which needs a ViT) a 2-block ViT, so the runs stay fast; the
    registry's vit-tiny is covered by the size checks."""
    return backbones.VisionTransformer(depth=2) if name == "mae" else "convnet-small"


@pytest.fixture(scope="module")
def cifar64():
    return sample_subset(64)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _assert_same(a, b, where="state"):
    """Exact recursive equality of (optimizer) state dicts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ---------------------------------------------------------------------- whole runs
@pytest.mark.parametrize("name", list(METHODS))
def test_epoch_parts_move_and_checkpoint_restores_everything(name, cifar64, tmp_path):
    cls, parts = _cls(name), METHODS[name][2]
    torch.manual_seed(0)
    sup = cls(cifar64, _small_backbone(name), seed=0)
    before = {part: _snapshot(getattr(sup, part)) for part in parts}
    history = sup.supervise(
        lr=1e-3, epochs=1, batch_size=32, progress=False, device="cpu", name=str(tmp_path / "run")
    )
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    assert sup.global_step == 2
    for part in parts:  # every parameter tensor of every part was updated
        after = dict(getattr(sup, part).named_parameters())
        frozen = [k for k, v in before[part].items() if torch.equal(v, after[k])]
        assert not frozen, f"{name}.{part}: parameters did not move: {frozen[:5]}"
    adversarial = hasattr(sup, "discriminator") and sup.discriminator is not None
    if adversarial:  # the discriminator has its own optimizer and only that one
        main = {id(p) for g in sup.optimizer.param_groups for p in g["params"]}
        disc = {id(p) for g in sup.optimizer_d.param_groups for p in g["params"]}
        assert disc == {id(p) for p in sup.discriminator.parameters()}
        assert not main & disc
        assert main | disc == {id(p) for p in sup.parameters() if p.requires_grad}
        assert "optimizer_d" in store.read(str(tmp_path / "run"))

    # A fresh supervisor (other initial weights) resumes from the checkpoint exactly.
    torch.manual_seed(1)
    other = cls(cifar64, _small_backbone(name), seed=1)
    assert any(
        not torch.equal(v, other.state_dict()[k])
        for k, v in sup.state_dict().items()
        if v.is_floating_point()
    )
    other.supervise(
        lr=1e-3,
        epochs=1,
        batch_size=32,
        progress=False,
        device="cpu",
        name=str(tmp_path / "run"),
        pretrained=True,
    )
    _assert_same(sup.state_dict(), other.state_dict(), "model")
    _assert_same(sup.optimizer.state_dict(), other.optimizer.state_dict(), "optimizer")
    if adversarial:
        _assert_same(sup.optimizer_d.state_dict(), other.optimizer_d.state_dict(), "optimizer_d")
    assert other.global_step == sup.global_step and other.epoch == 1


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("size,kind", [(96, "small"), (32, "registry"), (96, "registry")])
def test_builds_and_steps_at_other_sizes_and_backbones(name, size, kind, tmp_path):
    """convnet-small (a 2-block ViT for MAE) at 96 px, the registry backbone at 32 px (one
    forward) and 96 px (one forward and update through supervise)."""
    backbone = _small_backbone(name) if kind == "small" else METHODS[name][1]
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    sup = _cls(name)(images, backbone, seed=0)
    assert sup.image_size == size
    if name == "mae":
        assert sup.vit.patch_size == (4 if size <= 64 else 8)
    if size == 32:
        loss = sup(Batch(images, torch.full((2,), -1), torch.arange(2)))
        assert loss.ndim == 0 and torch.isfinite(loss)
    else:
        watched = [p for p in sup.backbone.parameters()][:3]
        start = [p.detach().clone() for p in watched]
        history = sup.supervise(
            epochs=1,
            batch_size=2,
            progress=False,
            device="cpu",
            name=str(tmp_path / "run"),
            save=False,
        )
        assert sup.global_step == 1 and math.isfinite(history[0]["loss"])
        assert all(not torch.equal(a, p) for a, p in zip(start, watched))
    with torch.no_grad():
        features = sup.get_backbone()(images)
    assert features.shape[0] == 2 and features.ndim == 2 and torch.isfinite(features).all()


# Losses at step 0 are about 0.06 (MSE), 9.5 (two cross entropies), 1.0 (normalised patches).
@pytest.mark.parametrize(
    "name,ratio", [("denoise", 0.8), ("context", 0.8), ("splitbrain", 0.93), ("mae", 0.9)]
)
def test_reconstruction_loss_decreases_on_a_fixed_batch(name, ratio, cifar64, tmp_path):
    torch.manual_seed(0)
    ds = cifar64.subset(torch.arange(8))
    options = {"adversarial_weight": 0.0} if name == "context" else {}
    sup = _cls(name)(ds, _small_backbone(name), seed=0, **options)
    batch = Batch(ds.images, ds.labels, torch.arange(8))

    def fixed_loss():  # the same noise / erased blocks / masks every time
        torch.manual_seed(123)
        with torch.no_grad():
            return float(sup(batch))

    first = fixed_loss()
    sup.supervise(
        lr=3e-3,
        epochs=5,
        batch_size=8,
        progress=False,
        device="cpu",
        name=str(tmp_path / "run"),
        save=False,
    )
    last = fixed_loss()
    assert last < ratio * first, (first, last)


@pytest.mark.parametrize("name", ["context", "bigan"])
def test_gan_step_order_discriminator_first_then_generator_side(name, cifar64, tmp_path):
    ds = cifar64.subset(torch.arange(8))
    sup = _cls(name)(ds, seed=0)
    sup.supervise(
        epochs=1,
        batch_size=4,
        progress=False,
        device="cpu",
        save=False,
        name=str(tmp_path / "run"),
        lr_scheduler="constant",
    )  # lr as set: 2e-4
    if name == "bigan":  # the paper's optimizer, for E and G and for D
        for opt in (sup.optimizer, sup.optimizer_d):
            assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 2e-4
            assert opt.param_groups[0]["betas"] == (0.5, 0.999)
    calls, after_d = [], {}

    def wrap(attr):
        opt = getattr(sup, attr)
        original = opt.step

        def step(*args, **kwargs):
            calls.append(attr)
            out = original(*args, **kwargs)
            if attr == "optimizer_d":
                after_d.update(_snapshot(sup.discriminator))
            return out

        opt.step = step

    wrap("optimizer_d")
    wrap("optimizer")
    generator_loss = sup._generator_loss

    def scored(loss):
        calls.append("generator_loss")
        # the generator side is scored by the updated, frozen discriminator
        assert all(not p.requires_grad for p in sup.discriminator.parameters())
        return generator_loss(loss)

    sup._generator_loss = scored
    before = {part: _snapshot(getattr(sup, part)) for part in METHODS[name][2]}
    sup._update(sup(Batch(ds.images[:4], ds.labels[:4], torch.arange(4))))
    assert calls == ["optimizer_d", "generator_loss", "optimizer"]
    assert all(p.requires_grad for p in sup.discriminator.parameters())
    # the generator-side step leaves the discriminator as its own step left it
    for k, v in sup.discriminator.named_parameters():
        assert torch.equal(v, after_d[k]), k
    for part, params in before.items():  # ... and moves every other part (BiGAN: E too)
        now = dict(getattr(sup, part).named_parameters())
        assert any(not torch.equal(v, now[k]) for k, v in params.items()), part


# ---------------------------------------------------------------------- shared pieces
def test_conv_decoder_reaches_any_size():
    dec = decoders.ConvDecoder(64, 5, 3, 96)
    assert dec.stages == 5  # 3 * 2**5 = 96
    assert dec(torch.randn(2, 64, 3, 3)).shape == (2, 5, 96, 96)
    dec = decoders.ConvDecoder(64, 3, 4, 100, output="sigmoid")  # not 4 * 2**k: resized
    out = dec(torch.randn(2, 64, 4, 4))
    assert out.shape == (2, 3, 100, 100) and 0 <= out.min() and out.max() <= 1
    assert dec(torch.randn(2, 64, 5, 5), size=(40, 56)).shape == (2, 3, 40, 56)
    channels, h, w = decoders.feature_map_shape(backbones.build(probe_size=96), 96)
    assert (channels, h, w) == (256, 12, 12)  # convnet-small: stride 8
    with pytest.raises(ConfigError, match="convolutional"):
        decoders.for_backbone(backbones.build(backbones.VisionTransformer(depth=1)), 32, 3)
    gen = decoders.LatentGenerator(16, 96)
    assert gen.grid == 6 and gen(torch.randn(3, 16)).shape == (3, 3, 96, 96)
    # every trainable module is registered at construction (in parameters() before training)
    sup = methods.get("bigan")(None, image_size=32)
    names = {n.split(".")[0] for n, _ in sup.named_parameters()}
    assert {"backbone", "encoder_head", "generator", "discriminator"} <= names


def test_context_erases_random_blocks_and_can_drop_the_discriminator():
    sup = methods.get("context")(None, image_size=32, adversarial_weight=0.0, n_blocks=3)
    assert sup.discriminator is None
    torch.manual_seed(0)
    mask = sup.erase_mask(64, 32, 32, torch.device("cpu"))
    assert mask.shape == (64, 1, 32, 32) and set(mask.unique().tolist()) == {0.0, 1.0}
    area = mask.mean(dim=(1, 2, 3))
    side = round(0.1 * 32) ** 2 / 32**2
    assert (area >= side - 1e-6).all() and (area <= 3 * 0.3**2 + 0.02).all()
    assert len(set(area.tolist())) > 10  # blocks differ between images


# ---------------------------------------------------------------------- split-brain
def test_lab_round_trip():
    torch.manual_seed(0)
    rgb = torch.rand(4, 3, 16, 16)
    lab = color.to_lab(rgb)
    assert lab.min() >= -0.01 and lab.max() <= 1.01
    assert torch.allclose(color.from_lab(lab), rgb, atol=1e-3)
    as_uint8 = (rgb * 255).round().to(torch.uint8)
    assert torch.allclose(color.to_lab(as_uint8), color.to_lab(as_uint8.float() / 255))


def test_splitbrain_targets_are_the_other_channels_bins():
    # Left half pure red, right half pure blue. Reference CIE Lab (D65): red L 53.24, a 80.09,
    # b 67.20; blue L 32.30, a 79.19, b -107.86.
    image = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    image[0, 0, :, :4] = 255
    image[0, 2, :, 4:] = 255
    sup = methods.get("splitbrain")(
        None, image_size=8, l_bins=50, ab_bins=16, ab_range=(-110, 110)
    ).eval()
    lab = color.to_lab(image)
    ab_target, l_target = sup.targets(lab)
    width = 220 / 16  # ab grid step in raw Lab units

    def ab_class(a, b):
        return int((a + 110) // width) * 16 + int((b + 110) // width)

    assert ab_target.shape == l_target.shape == (1, 8, 8)
    assert (ab_target[0, :, :4] == ab_class(80.09, 67.20)).all()
    assert (ab_target[0, :, 4:] == ab_class(79.19, -107.86)).all()
    assert (l_target[0, :, :4] == int(53.24 / 100 * 50)).all()
    assert (l_target[0, :, 4:] == int(32.30 / 100 * 50)).all()
    assert quantize_l(torch.tensor([0.0, 0.999, 1.2]), 50).tolist() == [0, 49, 49]
    assert quantize_ab(torch.full((1, 2), (-200 + 128) / 255), 16).tolist() == [0]

    # Each branch sees only its own channels and predicts the other ones' classes.
    assert sup.backbone.in_channels == 1 and sup.backbone_ab.in_channels == 2
    with torch.no_grad():
        from_l, from_ab = sup.predict(lab)
        assert from_l.shape == (1, 16 * 16, 8, 8) and from_ab.shape == (1, 50, 8, 8)
        other = lab.clone()
        other[:, 1:] = 1 - other[:, 1:]  # same L, different ab
        from_l2, from_ab2 = sup.predict(other)
        assert torch.equal(from_l, from_l2) and not torch.allclose(from_ab, from_ab2)
        loss = sup(Batch(image, torch.tensor([-1]), torch.tensor([0])))
        ref = F.cross_entropy(from_l, ab_target) + F.cross_entropy(from_ab, l_target)
    assert torch.allclose(loss, ref, atol=1e-5)
    encoder = sup.get_backbone()
    assert encoder(image).shape == (1, encoder.feature_dim)
    assert encoder.feature_dim == sup.backbone.feature_dim + sup.backbone_ab.feature_dim


# ---------------------------------------------------------------------- MAE
def test_mae_masks_exactly_75_percent_and_scores_only_masked_patches():
    torch.manual_seed(0)
    keep, mask, restore = random_masking(8, 64, 0.75, torch.device("cpu"))
    assert keep.shape == (8, 16) and (mask.sum(dim=1) == 48).all()
    assert (mask.gather(1, keep) == 0).all()  # kept patches are the unmasked ones
    # restore puts [visible tokens, mask tokens] back in patch order
    assert torch.equal(restore.gather(1, keep), torch.arange(16).expand(8, -1))
    assert (restore[mask == 1] >= 16).all()

    sup = methods.get("mae")(None, backbones.VisionTransformer(depth=1), image_size=32)
    seen = []
    sup.vit.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    images = torch.rand(2, 3, 32, 32)
    pred, mask = sup.reconstruct(images)
    assert seen == [torch.Size([2, 1 + 16, 192])]  # cls + the 25% visible patches only
    assert pred.shape == (2, 64, 4 * 4 * 3) and (mask.sum(dim=1) == 48).all()

    # the loss: per-patch normalised targets, mean squared error over masked patches only
    target = patchify(images, 4)
    norm = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    ref = (((pred - norm) ** 2).mean(-1) * mask).sum() / mask.sum()
    criterion = MaskedPatchLoss()
    assert torch.allclose(criterion(pred, target, mask), ref, atol=1e-6)
    changed = pred.detach().clone()
    changed[mask == 0] += 10.0  # visible patches do not count
    assert torch.allclose(criterion(changed, target, mask), criterion(pred, target, mask))
    changed[mask == 1] += 1.0
    assert not torch.allclose(criterion(changed, target, mask), criterion(pred, target, mask))
    # patchify follows the ViT's row-major patch order
    assert torch.equal(
        patchify(images, 4)[:, 1], images[:, :, :4, 4:8].permute(0, 2, 3, 1).reshape(2, -1)
    )


def test_mae_needs_a_vit():
    with pytest.raises(ConfigError, match="vision transformer"):
        methods.get("mae")(None, "convnet-small", image_size=32)


def test_vit_accepts_any_size_divisible_by_its_patch():
    vit = backbones.build(backbones.VisionTransformer(depth=1, pos_embed="learned"), probe_size=32)
    assert vit.body.patch_size == 4 and vit.feature_dim == 192
    assert vit(torch.rand(2, 3, 48, 40)).shape == (2, 192)
    with pytest.raises(ConfigError, match="patch size"):
        vit(torch.rand(2, 3, 30, 32))
