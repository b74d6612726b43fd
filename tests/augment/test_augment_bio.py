"""Bio-inspired augmentations: cortical magnification, foveated blur and saliency fixations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from super_selfish import augment as A
from super_selfish.augment import reference
from super_selfish.augment.blur import separable
from super_selfish.augment.fixation import sample_from_log_density
from super_selfish.augment.foveation import (
    BlurPyramid,
    halving_matrix,
    raised_cosine,
    ring_blend,
    upsampling_matrix,
)
from super_selfish.augment.magnification import quadratic_field
from super_selfish.errors import DataError


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coordinate_ramp(n: int, height: int, width: int) -> torch.Tensor:
    """Channel 0 holds each pixel's x, channel 1 its y (both as fractions of the side, at pixel
    centres): bilinear sampling of it returns the exact source position that was read."""
    x = (torch.arange(width) + 0.5) / width
    y = (torch.arange(height) + 0.5) / height
    ramp = torch.stack(
        [x.expand(height, width), y[:, None].expand(height, width), torch.zeros(height, width)]
    )
    return ramp.expand(n, -1, -1, -1).contiguous()


def smooth_noise(n: int, size: int, seed: int = 0) -> torch.Tensor:
    noise = gaussian_blur2d(torch.rand(n, 3, size, size, generator=seeded(seed)), 5, (1.0, 1.0))
    return (noise - noise.amin()) / (noise.amax() - noise.amin())


# ---------------------------------------------------------------- magnification


@pytest.mark.parametrize("size", [32, 33, (24, 37)])
def test_magnification_with_a_huge_fovea_is_the_identity(size):
    height, width = (size, size) if isinstance(size, int) else size
    images = smooth_noise(2, max(height, width))[..., :height, :width]
    op = A.Magnification(fov=1e4, cover_ratio=1.0)
    params = {"fixation": torch.zeros(2, 2), "cover": torch.ones(2)}
    out = op.transform(images, params, (height, width))
    assert torch.allclose(out, images, atol=1e-5)  # no lost row or column, no half-pixel shift


def test_magnification_puts_the_fixation_at_the_output_centre():
    images = coordinate_ramp(6, 64, 48)
    op = A.Magnification(border=16.0)
    out, (record,) = A.Pipeline([op], 33).trace(images, seeded())
    fixation = (record.params["fixation"] + 1) / 2  # as fractions of the side
    centre = out[:, :2, 16, 16]  # an odd size has a true centre pixel
    assert torch.allclose(centre, fixation, atol=1e-5)
    assert fixation.std(dim=0).min() > 0.05  # fixations differ per image


def test_magnification_magnifies_the_centre_by_the_predicted_ratio():
    fov, K, size = 20.0, 20.0, 64
    op = A.Magnification(fov=fov, K=K)
    params = {"fixation": torch.zeros(1, 2), "cover": torch.full((1,), 0.05)}
    out = op.transform(coordinate_ramp(1, 64, 64), params, (size, size))
    source_x = (
        out[0, 0, size // 2] * 64
    )  # source column read by each output pixel of the middle row
    step = source_x[1:] - source_x[:-1]  # source pixels per output pixel
    scale = size / 96  # fov and K are reference pixels of a 96 px image
    fov_px, K_px = fov * scale, K * scale
    eccentricity = torch.arange(size - 1) + 1 - size / 2  # between output pixel centres
    inside, outside = eccentricity.abs() < fov_px - 1, eccentricity.abs() > fov_px + 1
    centre_step = step[eccentricity.abs() < 1].mean()
    assert torch.allclose(
        step[inside], centre_step.expand(int(inside.sum())), rtol=1e-3
    )  # uniform fovea
    predicted = (eccentricity.abs()[outside] + K_px) / (fov_px + K_px)
    assert torch.allclose(step[outside] / centre_step, predicted, rtol=0.02)
    assert predicted.max() > 1.5  # the periphery really is compressed


def test_magnification_cover_ratio_sets_the_zoom():
    op = A.Magnification(fov=20.0, K=20.0)
    fixation = torch.tensor([[0.25, -0.5]])
    for cover in (0.05, 0.3):
        out = op.transform(
            coordinate_ramp(1, 40, 40),
            {"fixation": fixation, "cover": torch.tensor([cover])},
            (33, 33),
        )
        # The bottom-left output pixel (its centre, half a pixel inside the corner) points at the
        # farthest source corner, so it stays inside the image.
        corner = out[0, :2, -1, 0] * 40
        fixation_px = (fixation[0] + 1) * 20
        farthest = math.hypot(
            max(fixation_px[0], 40 - fixation_px[0]), max(fixation_px[1], 40 - fixation_px[1])
        )
        reach = (corner - fixation_px).norm()
        assert reach < math.sqrt(cover) * farthest and reach > 0.9 * math.sqrt(cover) * farthest


def test_radial_exp_magnification_also_centres_the_fixation_and_compresses_the_periphery():
    op = A.Magnification(form="radial_exp", slope_C=2.0)
    params = {
        "fixation": torch.tensor([[0.1, 0.2]]),
        "cover": torch.tensor([0.2]),
        "slope": torch.tensor([2.0]),
    }
    out = op.transform(coordinate_ramp(1, 64, 64), params, (33, 33))
    assert torch.allclose(out[0, :2, 16, 16], torch.tensor([0.55, 0.6]), atol=1e-5)
    step = (out[0, 0, 16, 1:] - out[0, 0, 16, :-1]) * 64
    assert step[-1] > 2 * step[16]


def test_magnification_field_is_cached_per_size_and_parameters():
    first = quadratic_field(32, 32, 10.0, 5.0, torch.device("cpu"))
    assert quadratic_field(32, 32, 10.0, 5.0, torch.device("cpu")) is first
    assert quadratic_field(33, 32, 10.0, 5.0, torch.device("cpu")) is not first


def test_magnification_matches_the_studys_formula():
    images = smooth_noise(3, 48)
    op = A.Magnification(fov=30.0, K=20.0)  # 15 and 10 px at 48 px
    pixels = [(10, 30), (24, 24), (40, 8)]  # the study's integer fixations (x, y)
    covers = torch.tensor([0.1, 0.3, 0.9])
    # The study reads at grid coordinate x / W * 2 - 1 and normalises its cover by the largest
    # f(r) over the pixel centres: the op agrees once given that point and cover.
    params = {"fixation": torch.tensor(pixels) / 24.0 - 1, "cover": covers}
    out = op.transform(images, params, (48, 48))
    factor = reference.magnify_cover_factor(48, 48, 15.0, 10.0)
    for image, pixel, cover, view in zip(images, pixels, covers, out):
        expected = reference.magnify_one(image, pixel, float(cover) * factor, 15.0, 10.0)
        assert torch.allclose(view, expected, atol=1e-4)
    unscaled = reference.magnify_one(images[0], pixels[0], float(covers[0]), 15.0, 10.0)
    assert not torch.allclose(out[0], unscaled, atol=1e-3)  # the corner normalisation matters


# ---------------------------------------------------------------- foveation


def test_raised_cosine_windows_form_a_partition_of_unity():
    assert raised_cosine(torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])).tolist() == pytest.approx(
        [1, 1, 0.5, 0, 0]
    )
    u = torch.linspace(-1, 20, 5000)
    inner, inner_weight, outer_weight = ring_blend(u)
    assert torch.allclose(inner_weight + outer_weight, torch.ones_like(u), atol=1e-6)
    assert (inner_weight[u < 0.25] == 1).all() and (inner[u < 1] == 0).all()


def foveation_params(n: int) -> dict[str, torch.Tensor]:
    return {
        "fixation": torch.tensor([[0.0, 0.0], [0.3, -0.4], [-0.5, 0.2]])[:n],
        "fovea_area": torch.tensor([0.02, 0.1, 0.05])[:n],
    }


def test_foveation_keeps_the_fovea_sharp_and_a_constant_image_constant():
    images = torch.rand(3, 3, 64, 64, generator=seeded())
    params = foveation_params(3)
    out = A.Foveation().transform(images, params, (64, 64))
    for image, view, fixation, area in zip(images, out, params["fixation"], params["fovea_area"]):
        radius = math.sqrt(64 * 64 * float(area) / math.pi)
        centre = (fixation + 1) * 32
        y, x = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
        distance = torch.hypot(x - centre[0], y - centre[1])
        fovea = distance < radius * math.exp(0.25 * 0.2)  # the window is flat up to a quarter ring
        assert torch.allclose(view[:, fovea], image[:, fovea], atol=1e-6)
        assert (
            view[:, distance > 2 * radius] - image[:, distance > 2 * radius]
        ).abs().mean() > 0.05
    grey = torch.full((3, 3, 64, 64), 0.37)
    assert torch.allclose(A.Foveation().transform(grey, params, (64, 64)), grey, atol=1e-5)


def test_foveated_blur_grows_with_eccentricity():
    images = torch.rand(1, 3, 96, 96, generator=seeded(1))
    out = A.Foveation().transform(images, foveation_params(1), (96, 96))
    laplacian = (
        out[0, :, 1:-1, 2:] + out[0, :, 1:-1, :-2] + out[0, :, 2:, 1:-1] + out[0, :, :-2, 1:-1]
    )
    energy = (laplacian - 4 * out[0, :, 1:-1, 1:-1]).square().mean(0)
    y, x = torch.meshgrid(torch.arange(1, 95) + 0.5, torch.arange(1, 95) + 0.5, indexing="ij")
    distance = torch.hypot(x - 48, y - 48)
    bands = [(0, 6), (8, 14), (16, 24), (26, 36), (38, 48)]
    per_band = torch.stack([energy[(distance >= a) & (distance < b)].mean() for a, b in bands])
    assert (per_band[1:] < per_band[:-1]).all()
    assert per_band[-1] < 0.05 * per_band[0]


def test_blur_pyramid_matches_a_full_resolution_gaussian():
    images = smooth_noise(2, 45)
    for sigma in (0.8, 1.7, 3.4, 7.0):  # the first sigma of octaves 1 and 2 is the worst case
        exact = gaussian_blur2d(
            images, 2 * math.ceil(4 * sigma) + 1, (sigma, sigma), border_type="replicate"
        )
        pyramid = BlurPyramid(images, sigma)
        blurred = pyramid.to_full(pyramid.blur(sigma), pyramid.octave_of(sigma))
        assert (blurred - exact).abs().max() < 0.025


def test_pyramid_matrices_pad_pool_and_upsample_like_torch():
    images = torch.rand(2, 3, 11, 14, generator=seeded())
    cpu = torch.device("cpu")
    pooled = separable(images, halving_matrix(11, 8, 2, cpu), halving_matrix(14, 9, 2, cpu))
    expected = F.avg_pool2d(F.pad(images, (2, 2, 2, 3), mode="replicate"), 2)
    assert torch.allclose(pooled, expected, atol=1e-6)
    upsampled = separable(
        images, upsampling_matrix(11, 2, 3, 30, cpu), upsampling_matrix(14, 2, 3, 40, cpu)
    )
    twice = F.interpolate(images, scale_factor=2, mode="bilinear")
    expected = F.interpolate(twice, scale_factor=2, mode="bilinear")[..., 3:33, 3:43]
    assert torch.allclose(upsampled, expected, atol=1e-6)


def test_foveation_is_per_image_and_agrees_with_the_studys_per_ring_blur():
    images = smooth_noise(3, 64)
    pixels = [(32, 32), (41, 19), (16, 38)]  # the study's integer fixations (x, y)
    params = {
        "fixation": (torch.tensor(pixels) + 0.5) / 32 - 1,
        "fovea_area": torch.tensor([0.02, 0.1, 0.05]),
    }
    study_like, full = A.Foveation(truncate=1.5), A.Foveation()
    batched = study_like.transform(images, params, (64, 64))
    wider = full.transform(images, params, (64, 64))
    for i, (image, pixel, area) in enumerate(zip(images, pixels, params["fovea_area"])):
        alone = study_like.transform(
            image[None], {k: v[i : i + 1] for k, v in params.items()}, (64, 64)
        )
        assert torch.allclose(alone[0], batched[i], atol=1e-6)  # levels do not mix images
        expected = reference.foveate_one(image, pixel, float(area))
        error = (batched[i] - expected).abs().mean()
        assert error < 0.15 * (image - expected).abs().mean()
        # Away from the borders, which the study reflects and the op replicates.
        assert (batched[i] - expected)[:, 8:-8, 8:-8].abs().max() < 0.05
        # Full Gaussians blur more than the study's truncated kernels.
        assert (wider[i] - expected).abs().mean() > 1.5 * error


# ---------------------------------------------------------------- saliency fixations


def peaked_map(n: int, size: int, peak: tuple[int, int]) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (-((x - peak[0]) ** 2 + (y - peak[1]) ** 2) / 20.0).expand(n, -1, -1)


def test_low_temperature_fixations_concentrate_at_the_saliency_peak():
    maps = peaked_map(400, 32, peak=(24, 9))
    fixations = sample_from_log_density(maps, temperature=0.001, margin=0.1, generator=seeded())
    peak = torch.tensor([(24 + 0.5) / 16 - 1, (9 + 0.5) / 16 - 1])
    assert ((fixations - peak).abs() <= 1 / 32 + 1e-6).all()  # inside the peak's map cell


def test_high_temperature_fixations_are_near_uniform_over_the_allowed_area():
    maps = peaked_map(4000, 32, peak=(24, 9))
    margin = 0.25
    fixations = sample_from_log_density(maps, temperature=1e4, margin=margin, generator=seeded())
    limit = 1 - margin
    assert (fixations.abs() <= limit + 1e-6).all()
    assert fixations.abs().max() > limit - 0.02
    assert fixations.mean(0).abs().max() < 0.03
    assert torch.allclose(fixations.std(0), torch.full((2,), limit / math.sqrt(3)), rtol=0.05)


def textured_background(n: int, size: int) -> torch.Tensor:
    """A smoothly varying scene: spectral residual needs a natural-looking spectrum."""
    coarse = torch.rand(n, 3, 8, 8, generator=seeded(3))
    return F.interpolate(coarse, size=(size, size), mode="bilinear") * 0.3 + 0.35


def test_spectral_residual_saliency_finds_an_odd_one_out():
    images = textured_background(2, 64)
    images[0, :, 40:46, 10:16] = 1.0
    images[1, :, 8:14, 50:56] = 0.0
    saliency = A.spectral_residual_saliency(images)
    assert saliency.shape == (2, 64, 64) and saliency.amax() == pytest.approx(0.0, abs=1e-6)
    peaks = [divmod(int(s.argmax()), 64) for s in saliency]
    assert abs(peaks[0][0] - 43) <= 4 and abs(peaks[0][1] - 13) <= 4
    assert abs(peaks[1][0] - 11) <= 4 and abs(peaks[1][1] - 53) <= 4


def test_saliency_is_computed_on_the_image_after_earlier_ops():
    images = textured_background(1, 48).expand(8, -1, -1, -1).clone()
    images[:, :, 20:26, 4:10] = 1.0  # salient blob on the left
    op = A.Magnification(fixation="saliency", temperature=0.05, border=0.0)
    _, records = A.Pipeline([A.HorizontalFlip(p=1.0), op], 32).trace(images, seeded())
    fixation_x = records[1].params["fixation"][:, 0]
    assert (fixation_x > 0.5).all()  # the flip moved the blob to the right, and so did the fixation


def test_fixation_callables_return_pixels_or_maps():
    images = torch.rand(3, 3, 20, 30)
    op = A.Foveation(fixation=lambda batch: torch.tensor([[0.0, 0.0], [29.0, 19.0], [14.5, 9.5]]))
    fixations = op.sample_fixations(images, seeded())
    assert torch.allclose(fixations, torch.tensor([[-29 / 30, -0.95], [29 / 30, 0.95], [0.0, 0.0]]))
    bad = A.Foveation(fixation=lambda batch: torch.zeros(3))
    with pytest.raises(DataError, match="expected a tensor of \\(N, h, w\\)"):
        bad.sample_fixations(images, seeded())


def test_saliency_crops_are_centred_on_the_fixation():
    op = A.RandomResizedCrop(
        fixation=lambda batch: torch.tensor([[20.0, 12.0]]).expand(len(batch), 2), scale=(0.05, 0.1)
    )
    box = op.sample(torch.rand(50, 3, 40, 40), seeded())["box"]
    assert torch.allclose(box[:, 0], torch.full((50,), 20.5 / 40)) and torch.allclose(
        box[:, 1], torch.full((50,), 12.5 / 40)
    )


def salient_square_scenes(n: int, size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Textured scenes with one 6-px square each, and the squares' centres (x, y) in px."""
    generator = seeded(5)
    blotches = F.interpolate(torch.rand(n, 3, 6, 6, generator=generator), size=size, mode="bicubic")
    images = 0.25 + 0.4 * blotches + 0.15 * torch.rand(n, 1, size, size, generator=generator)
    corner = torch.randint(22, size - 28, (n, 2), generator=generator)
    for i, (x, y) in enumerate(corner.tolist()):
        images[i, :, y : y + 6, x : x + 6] = float(i % 2)
    return images.clamp(0, 1), corner.float() + 3


def share_near_object(op: A.Magnification, images, centres) -> float:
    pixels = (op.sample_fixations(images, seeded(1)) + 1) * images.shape[-1] / 2
    return ((pixels - centres).norm(dim=1) <= 12).float().mean().item()


def test_default_saliency_fixations_land_on_a_small_salient_object():
    images, centres = salient_square_scenes(120)
    guided = share_near_object(A.Magnification(fixation="saliency", border=16.0), images, centres)
    hot = share_near_object(
        A.Magnification(fixation="saliency", temperature=1e4, border=16.0), images, centres
    )
    uniform = share_near_object(A.Magnification(border=16.0), images, centres)
    assert guided > 0.75  # most default fixations are on the object
    assert abs(hot - uniform) < 0.1 and hot < 0.25  # a large temperature is uniform (~11%)


def test_standardised_temperature_does_not_depend_on_the_maps_scale():
    maps = peaked_map(300, 32, peak=(24, 9))
    for standardize, same in ((True, True), (False, False)):
        draws = [
            sample_from_log_density(scale * maps, 1.0, 0.1, seeded(), standardize=standardize)
            for scale in (0.1, 10.0)
        ]
        assert torch.equal(draws[0], draws[1]) is same


def test_study_boundary_crops_match_the_studys_cropper():
    flat = lambda batch: torch.zeros(len(batch), 32, 32)  # noqa: E731  (the flat-map control)
    images = torch.rand(800, 3, 8, 8, generator=seeded())

    def mean_area(boundary: str) -> float:
        op = A.RandomResizedCrop(fixation=flat, boundary=boundary)
        box = op.sample(images, seeded(2))["box"]
        inside = (box[:, :2] - box[:, 2:] / 2 >= -1e-6) & (box[:, :2] + box[:, 2:] / 2 <= 1 + 1e-6)
        assert inside.all()
        return (box[:, 2] * box[:, 3]).mean().item()

    flat_density = torch.ones(32, 32)
    boxes = [reference.saliency_crop_box(flat_density, generator=seeded(i)) for i in range(800)]
    study = sum(h * w for _, _, h, w in boxes) / len(boxes) / 32**2
    assert mean_area("study") == pytest.approx(study, abs=0.02)
    assert mean_area("clip") < study - 0.05  # clipping on every side gives smaller crops


def ops_of(name: str) -> list:
    return list(A.build(name, 64)[0].ops)


def test_study_presets_are_the_studys_runs():
    for name in ("study_baseline", "study_saliency_crop", "study_foveation", "study_magnif"):
        jitter = next(op for op in ops_of(name) if isinstance(op, A.ColorJitter))
        assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (
            0.8,
            0.8,
            0.8,
            0.2,
        )
    for name in ("study_baseline", "study_saliency_crop"):
        (blur,) = [op for op in ops_of(name) if isinstance(op, A.GaussianBlur)]
        assert blur.p == 1.0 and blur.sigma == (0.1, 2.0)
    crop = ops_of("study_saliency_crop")[0]
    assert crop.fixation == "saliency" and crop.boundary == "study" and crop.temperature == 1.5
    foveation = ops_of("study_foveation")
    assert foveation[0].boundary == "study" and foveation[-1].truncate == 1.5
    assert not any(isinstance(op, A.GaussianBlur) for op in foveation + ops_of("study_magnif"))
    magnif = ops_of("study_magnif_saliency")[-1]  # after flip and colour, as in the study
    assert (magnif.fov, magnif.K, magnif.cover_ratio, magnif.border) == (30, 20, (0.05, 0.35), 16)
    assert magnif.fixation == "saliency"
    # The improved variants keep their own names and differ where documented.
    assert ops_of("simclr_saliency_crop")[0].boundary == "clip"
    assert ops_of("simclr_foveation")[-1].truncate is None
    assert ops_of("simclr_magnif_saliency")[0].temperature == 1.0
