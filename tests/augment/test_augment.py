"""Batched augmentations: the registry, the standard ops, the presets and the preview."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from super_selfish import augment as A
from super_selfish.augment import registry
from super_selfish.augment.ops import LUMA
from super_selfish.errors import ConfigError, DataError, UnknownNameError


def textured(n: int, size: int = 40, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, size, size) images with structure at several scales and a colour gradient."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 5, 5, generator=g), size=(size, size), mode="bilinear")
    fine = torch.rand(n, 3, size, size, generator=g)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)
    return ((0.5 * coarse + 0.3 * fine + 0.2 * ramp) * 255).round().byte()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- simclr end to end


def test_simclr_views_have_the_promised_shape_dtype_and_range():
    views = A.build("simclr", 32)
    out = views(textured(8), seeded())
    assert len(views) == 2 and views.sizes == [(32, 32), (32, 32)]
    assert [tuple(v.shape) for v in out] == [(8, 3, 32, 32)] * 2
    assert all(v.dtype == torch.float32 for v in out)
    assert all(v.min() >= 0 and v.max() <= 1 for v in out)
    assert not torch.allclose(out[0], out[1])  # the two views are different augmentations


def test_simclr_is_deterministic_under_a_seed_and_varies_across_seeds():
    views, images = A.build("simclr", 32), textured(8)
    first, again, other = (
        views(images, seeded(1)),
        views(images, seeded(1)),
        views(images, seeded(2)),
    )
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.allclose(first[0], other[0])


def test_without_a_generator_the_global_torch_seed_decides():
    views, images = A.build("simclr", 32), textured(4)
    torch.manual_seed(3)
    first = views(images)
    torch.manual_seed(3)
    assert torch.equal(first[0], views(images)[0])


def test_gray_and_multichannel_inputs_keep_their_channels_and_float_inputs_work():
    views = A.build("none", 16)
    gray = textured(2)[:, :1]
    out = views(gray)[0]
    assert out.shape == (2, 1, 16, 16)
    assert torch.equal(out, views(gray.expand(-1, 3, -1, -1))[0][:, :1])
    four = torch.cat([textured(2), textured(2)[:, :1]], dim=1)
    assert views(four)[0].shape == (2, 4, 16, 16)
    as_float = views(textured(2).float() / 255)[0]
    assert torch.allclose(as_float, views(textured(2))[0])


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(3, 8, 8, dtype=torch.uint8), "images\\[None\\]"),
        (torch.zeros(1, 0, 8, 8, dtype=torch.uint8), "shape \\(N, C, H, W\\)"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int64), "uint8"),
    ],
)
def test_bad_images_raise_data_errors_that_say_what_to_do(bad, message):
    with pytest.raises(DataError, match=message):
        A.build("simclr", 8)(bad)


def test_a_cuda_or_non_generator_is_rejected_with_an_explanation():
    with pytest.raises(ConfigError, match="CPU torch.Generator"):
        A.build("simclr", 8)(textured(1), generator=42)


# ---------------------------------------------------------------- every op: the shared contract

OPS = [
    A.RandomResizedCrop(),
    A.RandomResizedCrop(fixation="saliency", temperature=1.0),
    A.RandomResizedCrop(fixation="saliency", boundary="study"),
    A.HorizontalFlip(),
    A.VerticalFlip(),
    A.Rotate90(),
    A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    A.Grayscale(p=0.5),
    A.GaussianBlur(p=1.0),
    A.Solarize(p=1.0, threshold=(0.2, 0.8)),
    A.Equalize(p=0.5),
    A.Posterize(p=1.0, bits=(1, 4)),
    A.RandomErasing(p=1.0),
    A.ElasticDeform(p=1.0),
    A.SomeOf(ops=(A.Solarize(p=1.0), A.HorizontalFlip(p=1.0), A.Grayscale(p=1.0)), k=1),
    A.Magnification(),
    A.Magnification(form="radial_exp", slope_C=(0.5, 3.0), fixation="saliency"),
    A.Foveation(),
    A.Foveation(fixation="saliency"),
    A.Foveation(truncate=1.5),
]


# Ops whose per-image parameters take only a few values.
DISCRETE = (A.HorizontalFlip, A.VerticalFlip, A.Rotate90, A.SomeOf, A.Posterize)


def one_image_repeated(n: int = 8) -> torch.Tensor:
    return textured(1).float().div(255).expand(n, -1, -1, -1).contiguous()


@pytest.mark.parametrize("op", OPS, ids=lambda op: repr(op)[:40])
def test_op_output_shape_dtype_and_range(op):
    out = op(one_image_repeated(), seeded(), size=32)
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("op", OPS, ids=lambda op: repr(op)[:40])
def test_op_draws_parameters_per_image(op):
    # The same image eight times: a per-batch parameter would give eight equal outputs.
    out = op(one_image_repeated(), seeded(), size=40).flatten(1)
    distinct = {tuple(row.tolist()) for row in out.round(decimals=5)}
    assert len(distinct) >= (2 if op.p < 1 or isinstance(op, DISCRETE) else 8)


@pytest.mark.parametrize("op", OPS, ids=lambda op: repr(op)[:40])
def test_op_is_deterministic_under_a_seed(op):
    images = torch.cat([one_image_repeated(4), textured(4).float() / 255])
    assert torch.equal(op(images, seeded(5), size=32), op(images, seeded(5), size=32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("op", OPS, ids=lambda op: repr(op)[:40])
def test_op_gives_the_same_result_on_cuda(op):
    images = textured(8).float() / 255
    on_cpu = op(images, seeded(7), size=32)
    on_gpu = op(images.cuda(), seeded(7), size=32)
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_cpu, on_gpu.cpu(), atol=2e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "name", ["simclr_magnif", "study_saliency_crop", "study_foveation", "study_magnif_saliency"]
)
def test_preset_views_stay_on_cuda_and_match_cpu(name):
    views, images = A.build(name, 32), textured(8)
    on_gpu = views(images.cuda(), seeded(1))
    assert all(v.device.type == "cuda" for v in on_gpu)
    assert all(
        torch.allclose(c, g.cpu(), atol=2e-3) for c, g in zip(views(images, seeded(1)), on_gpu)
    )


def test_probability_p_is_decided_per_image():
    tiny = torch.rand(4000, 3, 2, 2)
    _, records = A.Pipeline([A.Grayscale(p=0.2)], 2).trace(tiny, seeded())
    assert 0.17 < records[0].applied.float().mean() < 0.23


# ---------------------------------------------------------------- op semantics


def test_flips_and_rotations_move_pixels_exactly():
    images = textured(16).float() / 255
    out, (record,) = A.Pipeline([A.HorizontalFlip(p=0.5)], 40).trace(images, seeded())
    flipped = record.applied
    assert 0 < flipped.sum() < 16
    assert torch.equal(out[flipped], images[flipped].flip(-1)) and torch.equal(
        out[~flipped], images[~flipped]
    )
    out, (record,) = A.Pipeline([A.Rotate90()], 40).trace(images, seeded())
    for image, rotated, turns in zip(images, out, record.params["quarter_turns"]):
        assert torch.equal(rotated, image.rot90(int(turns), dims=(-2, -1)))


def test_rotate90_rejects_non_square_images():
    with pytest.raises(DataError, match="square"):
        A.Rotate90()(torch.rand(8, 3, 4, 6), seeded())


def test_color_jitter_factors_do_what_they_say():
    images = textured(4).float() / 255
    darker = A.ColorJitter(brightness=(0.5, 0.5))(images)
    assert torch.allclose(darker, images * 0.5, atol=1e-5)
    gray = A.ColorJitter(saturation=(0.0, 0.0))(images)
    luma = (images * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gray, luma.expand_as(gray), atol=1e-5)
    flat = A.ColorJitter(contrast=(0.0, 0.0))(images)
    assert torch.allclose(flat, luma.mean(dim=(2, 3), keepdim=True).expand_as(flat), atol=1e-5)
    mid = images * 0.5 + 0.25  # no clipping, so a hue turn must keep the luma exactly
    turned = A.ColorJitter(hue=(0.25, 0.25))(mid)
    turned_luma = (turned * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1)
    assert torch.allclose(
        turned_luma, (mid * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1), atol=1e-4
    )
    assert (turned - mid).abs().mean() > 0.01


def test_positive_hue_turns_red_towards_yellow_as_in_hsv():
    red = torch.tensor([0.8, 0.2, 0.2]).view(1, 3, 1, 1)
    turned = A.ColorJitter(hue=(0.1, 0.1))(red).flatten()
    assert turned[1] > 0.2 + 0.1 and turned[2] < 0.25


def test_color_jitter_skipped_images_are_unchanged():
    images = textured(16).float() / 255
    out, (record,) = A.Pipeline([A.ColorJitter(p=0.5, brightness=0.8, hue=0.3)], 40).trace(
        images, seeded()
    )
    skipped = ~record.applied
    assert skipped.any() and torch.allclose(out[skipped], images[skipped], atol=1e-5)
    assert (out[~skipped] - images[~skipped]).abs().amax(dim=(1, 2, 3)).min() > 0.01


def test_grayscale_uses_luma_on_every_channel():
    images = textured(2).float() / 255
    out = A.Grayscale(p=1.0)(images)
    luma = (images * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1)
    assert all(torch.allclose(out[:, c], luma, atol=1e-5) for c in range(3))


def high_frequency_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean squared Laplacian per image: how much fine detail is left."""
    laplacian = (
        images[..., 1:-1, 2:]
        + images[..., 1:-1, :-2]
        + images[..., 2:, 1:-1]
        + images[..., :-2, 1:-1]
    )
    return (laplacian - 4 * images[..., 1:-1, 1:-1]).square().mean(dim=(1, 2, 3))


def test_gaussian_blur_sigma_is_per_image_and_matches_a_direct_blur():
    from kornia.filters import gaussian_blur2d

    images = one_image_repeated(6)
    out, (record,) = A.Pipeline([A.GaussianBlur(p=1.0, sigma=(0.3, 1.5))], 40).trace(
        images, seeded()
    )
    sigma = record.params["sigma"]
    order = sigma.argsort()
    energy = high_frequency_energy(out)[order]
    assert (energy[1:] < energy[:-1]).all()  # more sigma, less detail
    direct = gaussian_blur2d(
        images[:1], 5, (float(sigma[0]), float(sigma[0])), border_type="reflect"
    )
    assert torch.allclose(out[:1], direct, atol=1e-5)  # 10% of 40 px -> a 5-tap kernel


def test_gaussian_blur_reflects_at_borders_for_any_kernel_and_image_size():
    from kornia.filters import gaussian_blur2d

    images = textured(3, 12).float() / 255
    sigma = torch.tensor([0.5, 2.0, 4.0])
    out = A.GaussianBlur(p=1.0, kernel_size=9).transform(images, {"sigma": sigma}, (12, 12))
    direct = gaussian_blur2d(images, 9, sigma[:, None].expand(-1, 2), border_type="reflect")
    assert torch.allclose(out, direct.clamp(0, 1), atol=1e-6)
    # a kernel wider than the image mirrors it again instead of failing: flat images stay flat
    flat = torch.full((3, 3, 12, 12), 0.7)
    wide = A.GaussianBlur(p=1.0, kernel_size=31).transform(flat, {"sigma": sigma}, (12, 12))
    assert torch.allclose(wide, flat, atol=1e-6)


def test_a_flip_after_a_crop_is_done_in_the_crop_and_traced_as_its_own_op():
    images, size = textured(16), (24, 24)
    fused, records = A.Pipeline([A.RandomResizedCrop(), A.HorizontalFlip()], size).trace(
        images, seeded(3)
    )
    generator, separate = seeded(3), images.float() / 255
    for op in (A.RandomResizedCrop(), A.HorizontalFlip()):
        separate, (record,) = op.run(separate, generator, size)
    assert [r.op.name for r in records] == ["random_resized_crop", "hflip"]
    assert torch.equal(records[1].applied, record.applied) and 0 < record.applied.sum() < 16
    assert torch.allclose(fused, separate, atol=1e-5)


def test_per_image_ops_give_the_same_views_a_few_images_at_a_time(monkeypatch):
    from super_selfish.augment import core

    views = A.build("simclr", 32)
    whole = views(textured(12), seeded(5))
    monkeypatch.setattr(core, "CPU_CHUNK_VALUES", 5 * 3 * 32 * 32)
    in_parts = views(textured(12), seeded(5))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(whole, in_parts))


def test_solarize_posterize_equalize_and_erasing_values():
    images = textured(4).float() / 255
    solarized = A.Solarize(p=1.0, threshold=0.5)(images)
    assert torch.allclose(solarized, torch.where(images >= 0.5, 1 - images, images), atol=1e-6)
    posterized = A.Posterize(p=1.0, bits=1)(images)
    levels = torch.tensor([0.0, 128 / 255])
    assert (posterized[..., None] - levels).abs().amin(-1).max() < 1e-6
    dull = images * 0.2 + 0.4
    equalized = A.Equalize(p=1.0)(dull)
    assert equalized.amax() - equalized.amin() > 0.9 and dull.amax() - dull.amin() < 0.25
    erased = A.RandomErasing(p=1.0, scale=(0.1, 0.2), value=0.0)(images + 0.01)
    fraction = (erased == 0).all(dim=1).float().mean(dim=(1, 2))
    assert ((fraction > 0.06) & (fraction < 0.26)).all()


def test_random_resized_crop_of_the_whole_image_is_the_identity():
    images = textured(3, size=33).float() / 255
    out = A.RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))(images, seeded(), size=33)
    assert torch.allclose(out, images, atol=1e-5)


def test_random_resized_crop_boxes_follow_scale_and_ratio():
    images = torch.rand(500, 3, 20, 30)
    box = A.RandomResizedCrop(scale=(0.2, 0.5), ratio=(0.5, 2.0)).sample(images, seeded())["box"]
    centre_x, centre_y, width, height = box.unbind(1)
    area = width * height
    aspect = width * 30 / (height * 20)
    assert ((area > 0.2 - 1e-6) & (area < 0.5 + 1e-6)).all()
    assert ((aspect > 0.5 - 1e-4) & (aspect < 2.0 + 1e-4)).all()
    assert (centre_x - width / 2 >= -1e-6).all() and (centre_x + width / 2 <= 1 + 1e-6).all()
    assert (centre_y - height / 2 >= -1e-6).all() and (centre_y + height / 2 <= 1 + 1e-6).all()


def test_normalize_standardises_channels():
    images = textured(2).float() / 255
    out = A.Normalize(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(images)
    assert torch.allclose(out, (images - 0.5) / 0.25, atol=1e-6)


def test_some_of_applies_exactly_k_ops_per_image():
    ops = (A.Solarize(p=1.0), A.Grayscale(p=1.0), A.VerticalFlip(p=1.0), A.Equalize(p=1.0))
    _, records = A.Pipeline([A.SomeOf(ops=ops, k=2)], 8).trace(torch.rand(64, 3, 8, 8), seeded())
    counts = torch.stack([record.applied for record in records]).sum(0)
    assert (counts == 2).all()
    assert torch.stack([record.applied for record in records]).float().mean(1).min() > 0.3


def test_elastic_deformation_warps_smoothly_and_keeps_shape_and_range():
    images = textured(4).float() / 255
    out = A.ElasticDeform(p=1.0, sigma=0.05)(images, seeded())
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert (out - images).abs().mean() > 0.02
    # a warp moves pixels, it does not change the overall colour much
    assert (out.mean(dim=(2, 3)) - images.mean(dim=(2, 3))).abs().max() < 0.05


def test_elastic_import_errors_tell_how_to_install(monkeypatch):
    import builtins

    from super_selfish.augment.elastic import import_elasticdeform

    real_import = builtins.__import__

    def numpy2_mismatch(name, *args, **kwargs):
        if name == "elasticdeform":
            raise ImportError("numpy.core.multiarray failed to import")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", numpy2_mismatch)
    with pytest.raises(ImportError, match="pip install --no-binary elasticdeform elasticdeform"):
        import_elasticdeform()


# ---------------------------------------------------------------- presets and registry


def expected_sizes(name: str, size: int) -> list[tuple[int, int]]:
    local = max(8, round(size * 96 / 224))
    multi = {
        "dino": [(size, size)] * 2 + [(local, local)] * 6,
        "swav": [(size, size)] * 2 + [(local, local)] * 6,
    }
    single = {"cpc": 1, "exemplar": 1, "none": 1, "rotation": 1}
    return multi.get(name, [(size, size)] * single.get(name, 2))


@pytest.mark.parametrize("name", A.available())
@pytest.mark.parametrize("size", [32, 96])
def test_every_preset_builds_and_runs_on_a_batch_of_another_size(name, size):
    views = A.build(name, size)
    assert views.sizes == expected_sizes(name, size)
    out = views(textured(2, size=40), seeded())
    assert [tuple(v.shape[-2:]) for v in out] == views.sizes
    assert all(v.shape[:2] == (2, 3) and v.dtype == torch.float32 for v in out)
    assert all(v.min() >= 0 and v.max() <= 1 for v in out)
    again = views(textured(2, size=40), seeded())  # the same seed gives the same views
    assert all(torch.equal(a, b) for a, b in zip(out, again))


def test_asymmetric_presets_differ_between_views():
    byol = A.build("byol", 32)
    first, second = (repr(pipeline) for pipeline in byol.pipelines)
    assert "GaussianBlur(p=1.0" in first and "Solarize" not in first
    assert "GaussianBlur(p=0.1" in second and "Solarize(p=0.2" in second
    dino = A.build("dino", 224)
    assert dino.sizes[2] == (96, 96) and "scale=(0.05, 0.4)" in repr(dino.pipelines[2])


def test_repr_lists_every_op_and_parameter():
    text = repr(A.build("simclr", 32, blur_p=0.5))  # 32 px: no blur unless asked
    assert text.count("Pipeline(size=(32, 32)") == 2
    for piece in (
        "RandomResizedCrop(p=1.0, fixation=None, scale=(0.08, 1.0), "
        "ratio=(0.75, 1.3333333333333333))",
        "HorizontalFlip(p=0.5)",
        "ColorJitter(p=0.8, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)",
        "Grayscale(p=0.2)",
        "GaussianBlur(p=0.5, sigma=(0.1, 2.0), kernel_size=None)",
    ):
        assert piece in text
    magnif = repr(A.build("simclr_magnif_saliency", 32))
    assert (
        "Magnification(p=1.0, fixation='saliency', temperature=1.0, standardize=True, border=16.0"
    ) in magnif
    assert "fov=30.0, K=20.0, cover_ratio=(0.05, 0.35), form='radial_quad')" in magnif


def test_overrides_reach_the_preset():
    views = A.build("simclr", 32, n_views=4, blur_p=0.0, scale=(0.2, 1.0))
    assert len(views) == 4
    assert "GaussianBlur" not in repr(views) and "scale=(0.2, 1.0)" in repr(views)
    assert "scale=(0.2, 1.0)" in repr(A.build("moco_v2", 32))


def test_unknown_preset_names_suggest_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'simclr'") as caught:
        A.build("simclrr", 32)
    assert isinstance(caught.value, KeyError) and "dino" in str(caught.value)


def test_unknown_overrides_and_bad_values_name_the_argument():
    with pytest.raises(ConfigError, match="no override 'blur_pp'. Did you mean 'blur_p'"):
        A.build("simclr", 32, blur_pp=0.1)
    with pytest.raises(ConfigError, match="GaussianBlur.p=1.5.*probability"):
        A.build("simclr", 32, blur_p=1.5)
    with pytest.raises(ConfigError, match="size"):
        A.build("simclr", 0)
    with pytest.raises(UnknownNameError, match="Did you mean 'saliency'"):
        A.Magnification(fixation="salency")


def test_build_accepts_op_specs_pipelines_and_views():
    views = A.build(["hflip", {"name": "solarize", "p": 1.0}, A.Grayscale(p=1.0)], 16)
    assert len(views) == 2 and "Solarize(p=1.0" in repr(views)
    pipeline = A.Pipeline([A.Resize()], 16)
    assert A.build(pipeline, 16).pipelines == (pipeline,)
    with pytest.raises(ConfigError, match="size"):
        A.build(pipeline, 32)
    with pytest.raises(UnknownNameError, match="Did you mean 'hflip'"):
        A.build(["hflpi"], 16)
    with pytest.raises(ConfigError, match="Did you mean 'threshold'"):
        A.build([{"name": "solarize", "treshold": 0.3}], 16)


def test_register_adds_a_preset_and_refuses_duplicates():
    @A.register("tiny_flip")
    def tiny_flip(size, *, n_views: int = 3) -> A.Views:
        """Three flipped views."""
        return A.Views([A.Pipeline([A.HorizontalFlip(p=1.0)], size)] * n_views)

    try:
        assert "tiny_flip" in A.available() and len(A.build("tiny_flip", 8)) == 3
        assert registry.PRESETS.describe()["tiny_flip"] == "Three flipped views."
        with pytest.raises(ConfigError, match="preset of that name is already registered"):
            A.register("tiny_flip")(tiny_flip)
    finally:
        registry.PRESETS.remove("tiny_flip")


def test_ops_register_themselves_once_and_refuse_a_taken_name():
    assert A.OPS.get("hflip") is A.HorizontalFlip and A.OPS.get("foveation") is A.Foveation
    assert "magnification" in A.OPS.describe() and len(A.OPS) == 17

    @dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
    class Invert(A.Op):
        """Invert the image."""

        name: ClassVar[str] = "test_invert"

        def transform(self, images, params, size):
            return 1 - images

    try:
        assert torch.equal(
            A.build(["test_invert"], 4, n_views=1)(torch.zeros(1, 3, 4, 4))[0],
            torch.ones(1, 3, 4, 4),
        )
        with pytest.raises(ConfigError, match="augmentation op of that name is already"):
            type("Flip", (A.Op,), {"name": "hflip"})
    finally:
        A.OPS.remove("test_invert")


# ---------------------------------------------------------------- preview


def test_preview_draws_one_row_per_image_and_marks_fixations(tmp_path):
    images = textured(3, size=40)
    grid = A.preview("simclr_magnif", images, n_views=2, size=32, labels=False)
    cell = 64  # 32 px views are enlarged to at least 64 px
    assert grid.size == (3 * cell + 2 * 2, 3 * cell + 2 * 2)
    pixels = torch.tensor(np.asarray(grid)).int()
    red = (pixels[..., 0] == 255) & (pixels[..., 1] == 0) & (pixels[..., 2] == 0)
    # magnification puts the fixation at each view's centre: a red ring there, none on originals
    assert red[:, :cell].sum() == 0
    view_centre = red[
        cell // 2 - 6 : cell // 2 + 6, cell + 2 + cell // 2 - 6 : cell + 2 + cell // 2 + 6
    ]
    assert view_centre.any()
    path = tmp_path / "grid.png"
    grid.save(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def brightest_point(images: torch.Tensor) -> torch.Tensor:
    """(N, 2) normalised (x, y) of each image's brightest pixel centre."""
    height, width = images.shape[-2:]
    index = images.sum(1).flatten(1).argmax(1)
    row, col = index // width, index % width
    return torch.stack([(2 * col + 1) / width - 1, (2 * row + 1) / height - 1], dim=1).float()


def test_fixation_marks_follow_later_flips_and_turns():
    from super_selfish.augment.preview import fixation_marks

    images = torch.zeros(8, 3, 33, 33)
    images[:, :, 10, 24] = 1.0  # a dot at the fixation pixel (x 24, y 10)
    crop = A.RandomResizedCrop(
        fixation=lambda batch: torch.tensor([[24.0, 10.0]]).expand(len(batch), 2), scale=(1.0, 1.0)
    )
    pipeline = A.Pipeline([crop, A.HorizontalFlip(p=0.5), A.Rotate90()], 33)
    out, records = pipeline.trace(images, seeded())
    (mark,) = fixation_marks(records)
    assert torch.allclose(mark, brightest_point(out), atol=1e-5)
    assert mark[:, 0].unique().numel() > 1  # flips and turns really moved some marks
    _, records = A.Pipeline([A.HorizontalFlip(p=1.0), crop, A.Resize()], 33).trace(images)
    assert fixation_marks(records) == []  # a resampling op after the fixation: no marks


def test_preview_cycles_views_and_shows_local_crops_in_the_same_cell():
    grid = A.preview(A.build("dino", 64), textured(1, size=80), n_views=5, labels=False)
    assert grid.size == (6 * 64 + 5 * 2, 64)
    with pytest.raises(ConfigError, match="size"):
        A.preview(A.build("dino", 64), textured(1), size=64)
    assert math.isclose(grid.size[0] / grid.size[1], (6 * 64 + 10) / 64)
