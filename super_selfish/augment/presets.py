"""The augmentation recipes of the SSL papers, registered by name.

Presets stop at [0, 1] images: the backbone wrapper normalises. Pixel work is ordered so that the
geometric op that sets the output size (crop, magnification, resize) runs first and the colour
ops run on the small output images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import check
from .core import Op, Pipeline, Size, Views
from .elastic import ElasticDeform
from .fixation import FixationPolicy
from .foveation import Foveation
from .magnification import Magnification
from .ops import (
    ColorJitter,
    Equalize,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    Posterize,
    RandomErasing,
    RandomResizedCrop,
    Resize,
    Solarize,
    SomeOf,
    VerticalFlip,
)
from .registry import register

Jitter = tuple[float, float, float, float]
SIMCLR_JITTER: Jitter = (0.4, 0.4, 0.4, 0.1)
BYOL_JITTER: Jitter = (0.4, 0.4, 0.2, 0.1)
SWAV_JITTER: Jitter = (0.8, 0.8, 0.8, 0.2)
PIRL_JITTER: Jitter = (0.4, 0.4, 0.4, 0.4)
# The foveation study's colour jitter: SimCLR's strength s = 1, (0.8 s, 0.8 s, 0.8 s, 0.2 s).
STUDY_JITTER: Jitter = (0.8, 0.8, 0.8, 0.2)
STUDY_TEMPERATURE = 1.5
BLUR_SIGMA = (0.1, 2.0)
#: Images up to this size (px) get SimCLR's CIFAR setting: no blur, colour strength 0.5.
SMALL_IMAGE = 48
RATIO = (3 / 4, 4 / 3)


def kept(*ops: Op) -> list[Op]:
    """The ops that can fire: presets drop ops with probability 0 so the repr shows what runs."""
    return [op for op in ops if op.p > 0]


def colour_ops(jitter: Sequence[float], jitter_p: float, gray_p: float) -> list[Op]:
    """Colour jitter (brightness, contrast, saturation, hue strengths) then grayscale."""
    check(
        isinstance(jitter, (tuple, list)) and len(jitter) == 4,
        "jitter",
        jitter,
        "four strengths (brightness, contrast, saturation, hue)",
    )
    brightness, contrast, saturation, hue = jitter
    return kept(
        ColorJitter(
            p=jitter_p, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue
        ),
        Grayscale(p=gray_p),
    )


def repeated(ops: list[Op], size: Size, n_views: int) -> Views:
    """``n_views`` views that share one pipeline."""
    check(isinstance(n_views, int) and n_views >= 1, "n_views", n_views, "a positive int")
    return Views([Pipeline(ops, size)] * n_views)


def per_view(value: float | Sequence[float], view: int) -> float:
    """A per-view setting: a number for every view, or a sequence cycled over the views."""
    return value if isinstance(value, (int, float)) else value[view % len(value)]


@register("simclr")
@register("moco_v2", scale=(0.2, 1.0), jitter=SIMCLR_JITTER, blur_p=0.5)
@register("simsiam", scale=(0.2, 1.0), jitter=SIMCLR_JITTER, blur_p=0.5)
@register("simclr_saliency_crop", fixation="saliency", jitter=SIMCLR_JITTER, blur_p=0.5)
def simclr(
    size: Size,
    *,
    n_views: int = 2,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = RATIO,
    flip_p: float = 0.5,
    color_strength: float | None = None,
    jitter: Jitter | None = None,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float | None = None,
    blur_sigma: tuple[float, float] = BLUR_SIGMA,
    fixation: str | None = None,
    temperature: float = 1.0,
) -> Views:
    """SimCLR (Chen et al. 2020); MoCo v2 and SimSiam use it with crops of at least 20%.

    The paper's setting follows the resolution: images of at most ``SMALL_IMAGE`` (48) px
    (CIFAR-10, its appendix B.9) get no blur and colour strength 0.5; larger ones (ImageNet)
    blur with probability 0.5 and colour strength 1.0. ``color_strength`` ``s`` sets the
    jitter to brightness, contrast and saturation ``0.8 s`` and hue ``0.2 s`` (``jitter``
    gives the four strengths directly); ``blur_p`` overrides the blur probability. The
    ``moco_v2``, ``simsiam`` and ``simclr_saliency_crop`` presets keep strength 0.5 and blur
    0.5 at every size (MoCo v2's augmentation).

    ``fixation="saliency"`` centres each crop on a point drawn from the crop's source saliency
    (``simclr_saliency_crop``: the idea of the foveation study's default cropper with this
    library's SimCLR settings and calibrated saliency; ``study_saliency_crop`` is the study's).
    """
    small = max(size) <= SMALL_IMAGE
    if jitter is None:
        strength = (0.5 if small else 1.0) if color_strength is None else color_strength
        check(
            isinstance(strength, (int, float)) and 0 <= strength <= 1.25,
            "color_strength",
            strength,
            "a number in [0, 1.25] (the paper: 0.5 or 1.0)",
        )
        jitter = (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)
    blur_p = (0.0 if small else 0.5) if blur_p is None else blur_p
    ops = [
        RandomResizedCrop(scale=scale, ratio=ratio, fixation=fixation, temperature=temperature),
        *kept(HorizontalFlip(p=flip_p)),
        *colour_ops(jitter, jitter_p, gray_p),
        *kept(GaussianBlur(p=blur_p, sigma=blur_sigma)),
    ]
    return repeated(ops, size, n_views)


@register("byol")
@register("barlow")
def byol(
    size: Size,
    *,
    n_views: int = 2,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = RATIO,
    flip_p: float = 0.5,
    jitter: Jitter = BYOL_JITTER,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float | Sequence[float] = (1.0, 0.1),
    solarize_p: float | Sequence[float] = (0.0, 0.2),
    blur_sigma: tuple[float, float] = BLUR_SIGMA,
) -> Views:
    """BYOL (Grill et al. 2020), also Barlow Twins': the two views differ in blur and solarize.

    ``blur_p`` and ``solarize_p`` give one probability per view, cycled when ``n_views`` > 2.
    """
    check(isinstance(n_views, int) and n_views >= 1, "n_views", n_views, "a positive int")
    pipelines = []
    for view in range(n_views):
        ops = [
            RandomResizedCrop(scale=scale, ratio=ratio),
            *kept(HorizontalFlip(p=flip_p)),
            *colour_ops(jitter, jitter_p, gray_p),
            *kept(
                GaussianBlur(p=per_view(blur_p, view), sigma=blur_sigma),
                Solarize(p=per_view(solarize_p, view)),
            ),
        ]
        pipelines.append(Pipeline(ops, size))
    return Views(pipelines)


def multi_crop(
    size: Size,
    local_size: Size,
    global_ops: list[list[Op]],
    local_ops: list[Op],
    n_local: int,
) -> Views:
    """Global views (one op list each) at ``size``, then ``n_local`` crops at ``local_size``."""
    check(isinstance(n_local, int) and n_local >= 0, "n_local", n_local, "a non-negative int")
    pipelines = [Pipeline(ops, size) for ops in global_ops]
    pipelines += [Pipeline(local_ops, local_size)] * n_local
    return Views(pipelines)


def local_crop_size(size: Size, local_size: int | None) -> Size:
    """The local crop size: ``size`` x 96/224 (the papers' 96 px at 224), at least 8 px."""
    if local_size is not None:
        check(
            isinstance(local_size, int) and local_size > 0,
            "local_size",
            local_size,
            "a positive int or None",
        )
        return (local_size, local_size)
    return (max(8, round(size[0] * 96 / 224)), max(8, round(size[1] * 96 / 224)))


@register("dino")
def dino(
    size: Size,
    *,
    n_local: int = 6,
    local_size: int | None = None,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.4),
    flip_p: float = 0.5,
    jitter: Jitter = BYOL_JITTER,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    global_blur_p: Sequence[float] = (1.0, 0.1),
    global_solarize_p: Sequence[float] = (0.0, 0.2),
    local_blur_p: float = 0.5,
    blur_sigma: tuple[float, float] = BLUR_SIGMA,
) -> Views:
    """DINO (Caron et al. 2021) multi-crop: 2 asymmetric global crops, then ``n_local`` local."""
    check(
        isinstance(global_blur_p, (tuple, list))
        and isinstance(global_solarize_p, (tuple, list))
        and len(global_blur_p) == len(global_solarize_p),
        "global_solarize_p",
        global_solarize_p,
        f"one probability per global view, like global_blur_p={global_blur_p}",
    )
    global_ops = [
        [
            RandomResizedCrop(scale=global_scale),
            *kept(HorizontalFlip(p=flip_p)),
            *colour_ops(jitter, jitter_p, gray_p),
            *kept(GaussianBlur(p=blur_p, sigma=blur_sigma), Solarize(p=solarize_p)),
        ]
        for blur_p, solarize_p in zip(global_blur_p, global_solarize_p)
    ]
    local_ops = [
        RandomResizedCrop(scale=local_scale),
        *kept(HorizontalFlip(p=flip_p)),
        *colour_ops(jitter, jitter_p, gray_p),
        *kept(GaussianBlur(p=local_blur_p, sigma=blur_sigma)),
    ]
    return multi_crop(size, local_crop_size(size, local_size), global_ops, local_ops, n_local)


@register("swav")
def swav(
    size: Size,
    *,
    n_global: int = 2,
    n_local: int = 6,
    local_size: int | None = None,
    global_scale: tuple[float, float] = (0.14, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.14),
    flip_p: float = 0.5,
    jitter: Jitter = SWAV_JITTER,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float = 0.5,
    blur_sigma: tuple[float, float] = BLUR_SIGMA,
) -> Views:
    """SwAV (Caron et al. 2020) multi-crop: ``n_global`` crops at ``size``, ``n_local`` small."""
    check(isinstance(n_global, int) and n_global >= 1, "n_global", n_global, "a positive int")

    def crop_ops(scale: tuple[float, float]) -> list[Op]:
        return [
            RandomResizedCrop(scale=scale),
            *kept(HorizontalFlip(p=flip_p)),
            *colour_ops(jitter, jitter_p, gray_p),
            *kept(GaussianBlur(p=blur_p, sigma=blur_sigma)),
        ]

    return multi_crop(
        size,
        local_crop_size(size, local_size),
        [crop_ops(global_scale)] * n_global,
        crop_ops(local_scale),
        n_local,
    )


@register("rotation")
@register("none")
def identity(size: Size, *, n_views: int = 1) -> Views:
    """Resize only, for pretext tasks that make their own input (RotNet rotates the batch)."""
    return repeated([Resize()], size, n_views)


def cpc_pool() -> list[Op]:
    """The pool CPC-style augmentation draws from: colour, intensity, blur, erasing and flips."""
    return [
        ColorJitter(brightness=0.4),
        ColorJitter(contrast=0.4),
        ColorJitter(saturation=0.4),
        ColorJitter(hue=0.1),
        Equalize(p=1.0),
        Posterize(p=1.0, bits=(4, 8)),
        Solarize(p=1.0),
        GaussianBlur(p=1.0),
        RandomErasing(p=1.0),
        HorizontalFlip(p=1.0),
        VerticalFlip(p=1.0),
    ]


@register("cpc")
def cpc(
    size: Size,
    *,
    n_views: int = 1,
    n_ops: int = 3,
    elastic_p: float = 0.2,
    elastic_sigma: float = 0.045,
    gray_p: float = 0.25,
) -> Views:
    """super_selfish's CPC augmentations: ``n_ops`` random ops from a pool, elastic, grayscale.

    For per-tile augmentation build the preset at the tile size and call it on the batch of
    tiles (CPC does).
    """
    ops = [
        SomeOf(ops=tuple(cpc_pool()), k=n_ops),
        *kept(ElasticDeform(p=elastic_p, sigma=elastic_sigma), Grayscale(p=gray_p)),
    ]
    return repeated(ops, size, n_views)


@register("pirl")
def pirl(
    size: Size,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = RATIO,
    flip_p: float = 0.5,
    jitter: Jitter = PIRL_JITTER,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
) -> Views:
    """PIRL (Misra & van der Maaten 2020): two views, the image and the jigsaw's source.

    View 1 feeds the image branch: random resized crop, horizontal flip, colour jitter and
    grayscale, the paper's augmentation of ``I`` (strengths as lightly's ``PIRLTransform``:
    brightness, contrast, saturation and hue 0.4, applied with probability 0.8; grey 0.2).
    View 2 is the whole image resized: the method cuts it into tiles, crops each tile at a
    random place in its cell and jitters each tile on its own.
    """
    image = [
        RandomResizedCrop(scale=scale, ratio=ratio),
        *kept(HorizontalFlip(p=flip_p)),
        *colour_ops(jitter, jitter_p, gray_p),
    ]
    return Views([Pipeline(image, size), Pipeline([Resize()], size)])


@register("exemplar")
def exemplar(
    size: Size,
    *,
    n_views: int = 1,
    scale: tuple[float, float] = (0.2, 1.0),
    flip_p: float = 0.5,
    jitter: Jitter = SIMCLR_JITTER,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float = 0.5,
    erase_p: float = 0.3,
    elastic_p: float = 0.5,
) -> Views:
    """Exemplar-CNN style heavy augmentation: crop, flip, colour, blur, erasing, elastic warps."""
    ops = [
        RandomResizedCrop(scale=scale),
        *kept(HorizontalFlip(p=flip_p)),
        *colour_ops(jitter, jitter_p, gray_p),
        *kept(GaussianBlur(p=blur_p), RandomErasing(p=erase_p), ElasticDeform(p=elastic_p)),
    ]
    return repeated(ops, size, n_views)


@register("simclr_magnif")
@register("simclr_magnif_saliency", fixation="saliency")
def simclr_magnif(
    size: Size,
    *,
    n_views: int = 2,
    fov: float = 30.0,
    K: float = 20.0,
    cover_ratio: tuple[float, float] = (0.05, 0.35),
    form: str = "radial_quad",
    border: float = 16.0,
    fixation: FixationPolicy = "uniform",
    temperature: float = 1.0,
    flip_p: float = 0.5,
    jitter: Jitter = SIMCLR_JITTER,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    blur_p: float = 0.0,
    blur_sigma: tuple[float, float] = BLUR_SIGMA,
) -> Views:
    """SimCLR with cortical magnification in place of the random crop (fov 30, K 20, cover
    0.05-0.35, no blur: the final setting of the study), with this library's SimCLR colour
    strength. Magnification runs first, so saliency fixations are computed on exactly the image
    being magnified and the colour ops run on the small output (``study_magnif`` is the study's
    order and colour).
    """
    ops = [
        Magnification(
            fov=fov,
            K=K,
            cover_ratio=cover_ratio,
            form=form,
            border=border,
            fixation=fixation,
            temperature=temperature,
        ),
        *kept(HorizontalFlip(p=flip_p)),
        *colour_ops(jitter, jitter_p, gray_p),
        *kept(GaussianBlur(p=blur_p, sigma=blur_sigma)),
    ]
    return repeated(ops, size, n_views)


@register("simclr_foveation")
@register("simclr_foveation_saliency", fixation="saliency")
def simclr_foveation(
    size: Size,
    *,
    n_views: int = 2,
    scale: tuple[float, float] = (0.08, 1.0),
    flip_p: float = 0.5,
    jitter: Jitter = SIMCLR_JITTER,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    foveation_p: float = 1.0,
    fovea_area: tuple[float, float] = (0.01, 0.5),
    kerW_coef: float = 0.06,
    spacing: float = 0.2,
    border: float = 12.0,
    fixation: FixationPolicy = "uniform",
    temperature: float = 1.0,
    truncate: float | None = None,
) -> Views:
    """SimCLR with foveated blur in place of the Gaussian blur (the study's foveation defaults,
    full Gaussian kernels) after a plain random resized crop; the fixation is drawn on the
    cropped, flipped view it blurs (``study_foveation`` is the study's run).
    """
    ops = [
        RandomResizedCrop(scale=scale),
        *kept(HorizontalFlip(p=flip_p)),
        *colour_ops(jitter, jitter_p, gray_p),
        *kept(
            Foveation(
                p=foveation_p,
                fovea_area=fovea_area,
                kerW_coef=kerW_coef,
                spacing=spacing,
                border=border,
                fixation=fixation,
                temperature=temperature,
                truncate=truncate,
            )
        ),
    ]
    return repeated(ops, size, n_views)


# ------------------------------------------------------------------ the study's runs
# Wang & Ponce (arXiv 2112.07173), STL-10 at 96 px. Colour is SimCLR's at strength 1, the blur
# (when on) is applied to every image, saliency fixations use this library's spectral-residual
# maps (the study used FastSal) at the study's temperature on standardised maps.


def flat_map(images: torch.Tensor) -> torch.Tensor:
    """A flat log-saliency map per image: fixations uniform over the image (the study's
    ``--sal_control``).
    """
    return images.new_zeros(images.shape[0], 1, 1)


def study_colour(jitter: Jitter = STUDY_JITTER) -> list[Op]:
    """The study's flip, colour jitter (p 0.8) and grayscale (p 0.2)."""
    return [HorizontalFlip(p=0.5), *colour_ops(jitter, 0.8, 0.2)]


def study_crop(fixation: str | None, temperature: float) -> Op:
    """The study's crop: torchvision's RandomResizedCrop, or its saliency-density cropper
    (centre drawn from the map, 30 draws, boxes moved inward at the top/left edges).
    """
    if fixation is None:
        return RandomResizedCrop(scale=(0.08, 1.0), ratio=RATIO)
    return RandomResizedCrop(
        scale=(0.08, 1.0),
        ratio=RATIO,
        fixation=fixation,
        temperature=temperature,
        boundary="study",
    )


@register("study_baseline")
@register("study_saliency_crop", fixation="saliency")
@register("study_flat_crop", fixation=flat_map)
def study_crop_runs(
    size: Size,
    *,
    n_views: int = 2,
    fixation: FixationPolicy | None = None,
    temperature: float = STUDY_TEMPERATURE,
    blur_p: float = 1.0,
) -> Views:
    """The study's crop runs: ``study_baseline`` is its ``magnif_bsl`` SimCLR baseline (random
    resized crop 0.08-1, flip, jitter (0.8, 0.8, 0.8, 0.2) p 0.8, grayscale 0.2, Gaussian blur on
    every image, sigma 0.1-2, kernel 10% of the side); ``study_saliency_crop`` replaces the crop
    by its saliency-density cropper (T = 1.5, the default of its ``run_salcrop.py``),
    ``study_flat_crop`` by that cropper on a flat map (its ``--sal_control``).
    """
    ops = [
        study_crop(fixation, temperature),
        *study_colour(),
        *kept(GaussianBlur(p=blur_p, sigma=BLUR_SIGMA)),
    ]
    return repeated(ops, size, n_views)


@register("study_foveation")
def study_foveation(
    size: Size,
    *,
    n_views: int = 2,
    crop_fixation: FixationPolicy | None = "saliency",
    temperature: float = STUDY_TEMPERATURE,
    fovea_area: tuple[float, float] = (0.01, 0.5),
    kerW_coef: float = 0.06,
) -> Views:
    """The study's foveation run (``run_salcrop.py --foveation --disable_blur``): its saliency
    crop (``crop_fixation=None`` for the plain crop), flip, colour, then foveated blur with the
    study's defaults (area 0.01-0.5, kerW_coef 0.06, spacing 0.2, fixation border 12 px, kernels
    truncated at 1.5 sigma) in place of the Gaussian blur.
    """
    ops = [
        study_crop(crop_fixation, temperature),
        *study_colour(),
        Foveation(
            fovea_area=fovea_area, kerW_coef=kerW_coef, spacing=0.2, border=12.0, truncate=1.5
        ),
    ]
    return repeated(ops, size, n_views)


@register("study_magnif")
@register("study_magnif_saliency", fixation="saliency")
def study_magnif(
    size: Size,
    *,
    n_views: int = 2,
    fixation: FixationPolicy = "uniform",
    temperature: float = STUDY_TEMPERATURE,
    fov: float = 30.0,
    K: float = 20.0,
    cover_ratio: tuple[float, float] = (0.05, 0.35),
) -> Views:
    """The study's final magnification run (``run_magnif.py --magnif``, fov 30, K 20, cover
    0.05-0.35, fixation border 16 px, no blur), in its order: flip, colour, then magnification.
    ``study_magnif_saliency`` draws the fixation from saliency (``--sal_sample``, T = 1.5),
    computed on the flipped, colour-jittered image it magnifies (the study read the map of the
    original image, so after a flip its fixation missed the salient spot).
    """
    ops = [
        *study_colour(),
        Magnification(
            fov=fov,
            K=K,
            cover_ratio=cover_ratio,
            border=16.0,
            fixation=fixation,
            temperature=temperature,
        ),
    ]
    return repeated(ops, size, n_views)
