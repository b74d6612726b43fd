"""The standard batched ops: crops, flips, colour, blur and the intensity ops of the SSL papers.

Each op draws per-image parameters on the CPU and runs as a few tensor operations over the whole
batch; kornia does the pixel work wherever it takes per-image tensor parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from kornia.enhance import equalize, normalize, posterize, solarize
from kornia.filters import get_gaussian_kernel1d

from ..console import note_once
from ..errors import DataError, unknown_name
from .core import (
    LUMA,
    Applied,
    Op,
    Params,
    Size,
    as_range,
    pixel_coordinates,
    resize,
    still_owned,
    uniform,
)
from .fixation import FixationOp, FixationPolicy

# Draws per image when looking for a crop or an erased box that fits, as torchvision does.
BOX_ATTEMPTS = 10
# Draws per image of the study's saliency-guided crop (fixation, area and aspect each time).
STUDY_CROP_ATTEMPTS = 30
CROP_BOUNDARIES = ("clip", "study")


def box_candidates(
    n: int,
    image_size: Size,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    attempts: int = BOX_ATTEMPTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``attempts`` candidate boxes per image as (width, height) fractions of the image.

    The area fraction is uniform in ``scale`` and the aspect ratio (width / height, in pixels)
    log-uniform in ``ratio``.
    """
    height, width = image_size
    area = uniform(n * attempts, scale, generator).view(n, attempts)
    log_ratio = uniform(n * attempts, (math.log(ratio[0]), math.log(ratio[1])), generator)
    aspect = log_ratio.exp().view(n, attempts)
    box_width = (area * aspect * height / width).sqrt()
    box_height = (area / aspect * width / height).sqrt()
    return box_width, box_height


def first_valid(candidates: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per row, the first candidate marked valid (the first one if none is)."""
    first = valid.int().argmax(dim=1, keepdim=True)
    return candidates.gather(1, first)[:, 0]


@dataclass(frozen=True, kw_only=True, repr=False)
class RandomResizedCrop(FixationOp):
    """Crop a random box (area fraction in ``scale``, aspect in ``ratio``) and resize it.

    Crops are ``grid_sample`` calls over many images at once (bilinear, no antialiasing:
    shrinking a large image to a small crop can alias); a horizontal flip right after the crop
    is done by the same call. By default boxes lie fully inside the image. With a ``fixation``
    (e.g. ``"saliency"``) the box is centred on the fixation, as in the saliency-guided crops of
    the foveation study, and ``boundary`` says what happens where it leaves the image:

    * ``"clip"``: the box is cut to the image on every side; a box keeps at least ``scale[0]``
      of the image after clipping (10 draws of size, then the whole image).
    * ``"study"``: the study's cropper. Each of up to 30 draws takes a new fixation, area and
      aspect; a box is accepted when its overlap with the image lies strictly between
      ``scale[0]`` and ``scale[1]`` of the image; a box past the left or top edge is then moved
      inward (keeping its size), and one past the right or bottom edge is cut. Crops are
      larger on average than with ``"clip"`` (the study's fallback: the centre crop).
    """

    name: ClassVar[str] = "random_resized_crop"
    resamples: ClassVar[bool] = True
    per_image: ClassVar[bool] = True
    allows_no_fixation: ClassVar[bool] = True
    fixation: FixationPolicy | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    boundary: str = "clip"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("scale", as_range(self.scale, f"{type(self).__name__}.scale", 1e-6, 1.0))
        self._set("ratio", as_range(self.ratio, f"{type(self).__name__}.ratio", 1e-6))
        if self.boundary not in CROP_BOUNDARIES:
            raise unknown_name("crop boundary", self.boundary, CROP_BOUNDARIES)

    def shown_fields(self) -> list[str]:
        hidden = {"boundary"} if self.fixation is None else set()
        return [name for name in super().shown_fields() if name not in hidden]

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        n, _, height, width = images.shape
        if self.fixation is not None and self.boundary == "study":
            box_width, box_height = box_candidates(
                n, (height, width), self.scale, self.ratio, generator, STUDY_CROP_ATTEMPTS
            )
            fixation = self.sample_fixations(images, generator, STUDY_CROP_ATTEMPTS)
            box, fixation = self._study_boxes(fixation, box_width, box_height, (height, width))
            return {"box": box, "fixation": fixation}
        box_width, box_height = box_candidates(
            n, (height, width), self.scale, self.ratio, generator
        )
        if self.fixation is None:
            return {"box": self._inside_boxes(box_width, box_height, (height, width), generator)}
        fixation = self.sample_fixations(images, generator)
        return {"box": self._boxes_around(fixation, box_width, box_height), "fixation": fixation}

    def _fallback(self, image_size: Size) -> tuple[float, float]:
        """The whole image narrowed to the nearest allowed aspect ratio, as (width, height)
        fractions (torchvision's fallback).
        """
        height, width = image_size
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        return min(1.0, aspect * height / width), min(1.0, width / (aspect * height))

    def _inside_boxes(
        self,
        box_width: torch.Tensor,
        box_height: torch.Tensor,
        image_size: Size,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Boxes fully inside the image; (N, 4) as centre x, centre y, width, height fractions."""
        fits = (box_width <= 1) & (box_height <= 1)
        found = fits.any(dim=1)
        fallback_width, fallback_height = self._fallback(image_size)
        chosen_width = torch.where(found, first_valid(box_width, fits), fallback_width)
        chosen_height = torch.where(found, first_valid(box_height, fits), fallback_height)
        position = torch.rand(box_width.shape[0], 2, generator=generator)
        centre_x = chosen_width / 2 + position[:, 0] * (1 - chosen_width)
        centre_y = chosen_height / 2 + position[:, 1] * (1 - chosen_height)
        return torch.stack([centre_x, centre_y, chosen_width, chosen_height], dim=1)

    def _boxes_around(
        self, fixation: torch.Tensor, box_width: torch.Tensor, box_height: torch.Tensor
    ) -> torch.Tensor:
        """Boxes centred on the fixations and clipped to the image, same layout as above."""
        centre = (fixation + 1) / 2
        left = (centre[:, :1] - box_width / 2).clamp(0, 1)
        right = (centre[:, :1] + box_width / 2).clamp(0, 1)
        top = (centre[:, 1:] - box_height / 2).clamp(0, 1)
        bottom = (centre[:, 1:] + box_height / 2).clamp(0, 1)
        kept = (right - left) * (bottom - top) >= self.scale[0]
        found = kept.any(dim=1)
        # Fallback: the whole image.
        left, top = (torch.where(found, first_valid(edge, kept), 0.0) for edge in (left, top))
        right, bottom = (
            torch.where(found, first_valid(edge, kept), 1.0) for edge in (right, bottom)
        )
        return torch.stack(
            [(left + right) / 2, (top + bottom) / 2, right - left, bottom - top], dim=1
        )

    def _study_boxes(
        self,
        fixation: torch.Tensor,
        box_width: torch.Tensor,
        box_height: torch.Tensor,
        image_size: Size,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The study's boxes (see ``boundary``) from (N, A, 2) fixations and (N, A) sizes, and
        each image's fixation: the accepted draw's, or the image centre for the fallback.
        """
        centre = (fixation + 1) / 2
        left, top = centre[..., 0] - box_width / 2, centre[..., 1] - box_height / 2
        overlap = (torch.minimum(left + box_width, torch.ones(())) - left.clamp_min(0)).clamp_min(
            0
        ) * (torch.minimum(top + box_height, torch.ones(())) - top.clamp_min(0)).clamp_min(0)
        accepted = (overlap > self.scale[0]) & (overlap < self.scale[1])
        found = accepted.any(dim=1)
        fallback_width, fallback_height = self._fallback(image_size)
        left = torch.where(found, first_valid(left, accepted), (1 - fallback_width) / 2)
        top = torch.where(found, first_valid(top, accepted), (1 - fallback_height) / 2)
        box_width = torch.where(found, first_valid(box_width, accepted), fallback_width)
        box_height = torch.where(found, first_valid(box_height, accepted), fallback_height)
        # Moved inward past the left and top edges, cut at the right and bottom edges.
        left, top = left.clamp_min(0), top.clamp_min(0)
        box_width = torch.minimum(box_width, 1 - left)
        box_height = torch.minimum(box_height, 1 - top)
        chosen = torch.stack([first_valid(fixation[..., k], accepted) for k in range(2)], dim=1)
        chosen = torch.where(found[:, None], chosen, 0.0)
        box = torch.stack(
            [left + box_width / 2, top + box_height / 2, box_width, box_height], dim=1
        )
        return box, chosen

    def absorbs(self, following: Op) -> bool:
        return isinstance(following, HorizontalFlip)

    def absorb(self, params: Params, following: Applied) -> Params:
        return {**params, "mirror": following.applied}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        # Each box's pixel grid is the output's, scaled by the box extent and moved to its centre;
        # a negative width reads the box right to left (an absorbed flip). The grid is separable:
        # filling it from its rows and columns is cheaper than one broadcast over (x, y) pairs.
        box, (height, width) = params["box"], size
        box_width = box[:, 2:3]
        if "mirror" in params:
            box_width = torch.where(params["mirror"][:, None], -box_width, box_width)
        device = images.device
        x = torch.addcmul(2 * box[:, 0:1] - 1, box_width, pixel_coordinates(width, device))
        y = torch.addcmul(2 * box[:, 1:2] - 1, box[:, 3:4], pixel_coordinates(height, device))
        grid = images.new_empty(images.shape[0], height, width, 2)
        grid[..., 0], grid[..., 1] = x[:, None, :], y[:, :, None]
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="border", align_corners=False
        )

    def marked_fixations(self, params: Params) -> torch.Tensor | None:
        if "fixation" not in params:
            return None
        centre, extent = params["box"][:, :2], params["box"][:, 2:]
        return ((params["fixation"] + 1) / 2 - centre) / (extent / 2)


@dataclass(frozen=True, kw_only=True, repr=False)
class Resize(Op):
    """Resize to the output size (antialiased bilinear); the whole of the `none` preset."""

    name: ClassVar[str] = "resize"
    resamples: ClassVar[bool] = True

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        return resize(images, size)


@dataclass(frozen=True, kw_only=True, repr=False)
class HorizontalFlip(Op):
    """Mirror left-right."""

    name: ClassVar[str] = "hflip"
    per_image: ClassVar[bool] = True
    p: float = 0.5

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        return images.flip(-1)

    def move_points(self, points: torch.Tensor, params: Params) -> torch.Tensor:
        return points * torch.tensor([-1.0, 1.0])


@dataclass(frozen=True, kw_only=True, repr=False)
class VerticalFlip(Op):
    """Mirror top-bottom."""

    name: ClassVar[str] = "vflip"
    per_image: ClassVar[bool] = True
    p: float = 0.5

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        return images.flip(-2)

    def move_points(self, points: torch.Tensor, params: Params) -> torch.Tensor:
        return points * torch.tensor([1.0, -1.0])


@dataclass(frozen=True, kw_only=True, repr=False)
class Rotate90(Op):
    """Rotate by a random multiple of 90° (0, 90, 180 or 270, uniformly) per image.

    Quarter turns swap height and width, so non-square images are rejected.
    """

    name: ClassVar[str] = "rotate90"

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        return {"quarter_turns": torch.randint(0, 4, (images.shape[0],), generator=generator)}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        if images.shape[-1] != images.shape[-2]:
            raise DataError(
                "rotate90 needs square images to keep one output size; "
                f"got {tuple(images.shape[-2:])}. "
                "Put a square crop or resize before it."
            )
        out = images.clone()
        turns = params["quarter_turns"]
        for k in (1, 2, 3):
            index = (turns == k).nonzero()[:, 0]
            if len(index):
                out[index] = images[index].rot90(k, dims=(-2, -1))
        return out

    def move_points(self, points: torch.Tensor, params: Params) -> torch.Tensor:
        for turn in range(3):  # each quarter turn maps (x, y) to (y, -x)
            turned = torch.stack([points[:, 1], -points[:, 0]], dim=1)
            points = torch.where((params["quarter_turns"] > turn)[:, None], turned, points)
        return points


# NTSC luma and chroma (YIQ) basis. A hue shift is a rotation of the chroma plane, so the whole
# jitter becomes one 3x3 matrix per image (as DALI does), instead of an RGB -> HSV -> RGB round trip
# that made the op ten times slower on the CPU.
RGB_TO_YIQ = torch.tensor([LUMA, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312)])
YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def colour_matrices(
    brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor, hue: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (N, 3, 3) colour matrices and the weights (N,) of each image's mean luma.

    Brightness scales, contrast blends with the mean luma, saturation blends each pixel with its
    own luma and hue rotates the chroma plane; the output is ``matrix @ rgb + weight * mean_luma``.
    """
    n, device = brightness.shape[0], brightness.device
    luma = torch.tensor(LUMA, device=device)
    s = saturation.view(n, 1, 1)
    desaturate = s * torch.eye(3, device=device) + (1 - s) * luma.expand(3, 3)
    # Minus: a positive hue turns red towards yellow, as in HSV.
    cos, sin = torch.cos(-2 * math.pi * hue), torch.sin(-2 * math.pi * hue)
    rotation = torch.zeros(n, 3, 3, device=device)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    rotate_hue = YIQ_TO_RGB.to(device) @ rotation @ RGB_TO_YIQ.to(device)
    matrix = (brightness * contrast).view(n, 1, 1) * (rotate_hue @ desaturate)
    # Grays are fixed points of the saturation and hue matrices, so the contrast term stays gray.
    return matrix, (1 - contrast) * brightness


@dataclass(frozen=True, kw_only=True, repr=False)
class ColorJitter(Op):
    """Random brightness, contrast, saturation and hue, with independent factors per image.

    Numbers follow torchvision: ``brightness=0.4`` means a factor in [0.6, 1.4] (a pair gives the
    range itself) and ``hue=0.1`` a shift in [-0.1, 0.1] of a full turn. Unlike torchvision the
    four adjustments are composed into one colour matrix per image, clipped once at the end, and
    hue turns the YIQ chroma plane rather than the HSV hue.
    """

    name: ClassVar[str] = "color_jitter"
    per_image: ClassVar[bool] = True
    brightness: float | tuple[float, float] = 0.0
    contrast: float | tuple[float, float] = 0.0
    saturation: float | tuple[float, float] = 0.0
    hue: float | tuple[float, float] = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("brightness", "contrast", "saturation"):
            self._factor_range(field)
        self._hue_range()

    def _factor_range(self, field: str) -> tuple[float, float]:
        value = getattr(self, field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._check(
                value >= 0, field, value, "a non-negative strength or a (low, high) factor range"
            )
            return (max(0.0, 1.0 - value), 1.0 + value)
        return as_range(value, f"{type(self).__name__}.{field}", 0.0)

    def _hue_range(self) -> tuple[float, float]:
        value = self.hue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._check(
                0 <= value <= 0.5, "hue", value, "a strength in [0, 0.5] or a (low, high) range"
            )
            return (-value, value)
        return as_range(value, f"{type(self).__name__}.hue", -0.5, 0.5)

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        n = images.shape[0]
        params = {
            f: uniform(n, self._factor_range(f), generator)
            for f in ("brightness", "contrast", "saturation")
        }
        params["hue"] = uniform(n, self._hue_range(), generator)
        return params

    def neutralised(self, params: Params, skipped: torch.Tensor) -> Params:
        neutral = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
        return {key: value.masked_fill(skipped, neutral[key]) for key, value in params.items()}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        n = images.shape[0]
        if images.shape[1] != 3:
            return self._brightness_contrast(images, params)
        matrix, mean_weight = colour_matrices(**params)
        mean_luma = images.mean(dim=(-2, -1)) @ torch.tensor(LUMA, device=images.device)
        offset = (mean_weight * mean_luma).view(n, 1, 1)
        # bmm then add: baddbmm would first copy the broadcast offset over the whole output.
        out = torch.bmm(matrix, images.reshape(n, 3, -1)).add_(offset)
        return out.clamp_(0, 1).view_as(images)

    def _brightness_contrast(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        """Images that are not RGB (grayscale, multi-channel): brightness scales every channel
        and contrast blends with the image's mean; saturation and hue have no meaning there.
        """
        if self._factor_range("saturation") != (1.0, 1.0) or self._hue_range() != (0.0, 0.0):
            note_once(
                "colour-jitter",
                "color_jitter: saturation and hue are skipped for images "
                "that are not RGB; brightness and contrast apply to every channel.",
            )
        n = images.shape[0]
        brightness, contrast = params["brightness"], params["contrast"]
        mean = images.mean(dim=(1, 2, 3))
        scale = (brightness * contrast).view(n, 1, 1, 1)
        offset = ((1 - contrast) * brightness * mean).view(n, 1, 1, 1)
        return (images * scale + offset).clamp_(0, 1)


@dataclass(frozen=True, kw_only=True, repr=False)
class Grayscale(Op):
    """Replace colour by luminance (kept as 3 identical channels); images that are not RGB
    are left as they are (with a one-time note).
    """

    name: ClassVar[str] = "grayscale"
    per_image: ClassVar[bool] = True
    p: float = 0.2

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        n, channels, height, width = images.shape
        if channels != 3:
            note_once(
                "grayscale-op",
                f"grayscale: skipped for images that are not RGB ({channels} channel(s)).",
            )
            return images
        luma = torch.tensor(LUMA, device=images.device) @ images.reshape(n, 3, -1)
        return luma.view(n, 1, height, width).expand(-1, 3, -1, -1)


def reflected_blur_matrices(taps: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size, size) matrices that blur a length-``size`` signal with each row of the (N, k)
    ``taps``, the signal mirrored at its ends (without repeating the edge sample).
    """
    n, kernel = taps.shape
    positions = torch.arange(size, device=taps.device)
    sources = positions[:, None] + torch.arange(kernel, device=taps.device) - kernel // 2
    period = max(1, 2 * (size - 1))  # mirroring repeats the signal with this period
    sources = sources.remainder(period)
    sources = torch.where(sources >= size, period - sources, sources)
    matrices = torch.zeros(n, size, size, device=taps.device)
    return matrices.scatter_add_(2, sources.expand(n, -1, -1), taps[:, None].expand(-1, size, -1))


@dataclass(frozen=True, kw_only=True, repr=False)
class GaussianBlur(Op):
    """Gaussian blur with a per-image ``sigma`` (pixels) and reflected borders.

    The separable blur is two batched products with each image's banded blur matrices, which
    also fold in the reflected border: more arithmetic than kornia's depthwise convolution, but
    faster on the CPU, where that convolution is slow.

    ``kernel_size=None`` uses about 10% of the image's shorter side (odd, at least 3), as SimCLR.
    """

    name: ClassVar[str] = "gaussian_blur"
    per_image: ClassVar[bool] = True
    p: float = 0.5
    sigma: tuple[float, float] = (0.1, 2.0)
    kernel_size: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("sigma", as_range(self.sigma, f"{type(self).__name__}.sigma", 1e-3))
        self._check(
            self.kernel_size is None
            or (isinstance(self.kernel_size, int) and self.kernel_size % 2 == 1),
            "kernel_size",
            self.kernel_size,
            "None (10% of the image side) or an odd int",
        )

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        return {"sigma": uniform(images.shape[0], self.sigma, generator)}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        n, channels, height, width = images.shape
        kernel = self.kernel_size or max(3, int(0.1 * min(height, width)) // 2 * 2 + 1)
        taps = get_gaussian_kernel1d(kernel, params["sigma"][:, None])
        rows, columns = reflected_blur_matrices(taps, height), reflected_blur_matrices(taps, width)
        out = torch.bmm(images.reshape(n, channels * height, width), columns.mT)
        out = torch.matmul(rows[:, None], out.view(n, channels, height, width))
        # Rounding can put a blurred 1.0 a hair above 1.
        return out.clamp_(0, 1)


@dataclass(frozen=True, kw_only=True, repr=False)
class Solarize(Op):
    """Invert every pixel brighter than a per-image ``threshold``."""

    name: ClassVar[str] = "solarize"
    p: float = 0.2
    threshold: float | tuple[float, float] = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        as_range(self.threshold, f"{type(self).__name__}.threshold", 0.0, 1.0)

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        bounds = as_range(self.threshold, "threshold", 0.0, 1.0)
        return {"threshold": uniform(images.shape[0], bounds, generator)}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        return solarize(images, params["threshold"])


@dataclass(frozen=True, kw_only=True, repr=False)
class Equalize(Op):
    """Histogram-equalise each channel (as PIL's ImageOps.equalize)."""

    name: ClassVar[str] = "equalize"
    p: float = 0.5

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        return equalize(images)


@dataclass(frozen=True, kw_only=True, repr=False)
class Posterize(Op):
    """Keep only the top ``bits`` bits per channel (an int, or an inclusive per-image range)."""

    name: ClassVar[str] = "posterize"
    p: float = 0.5
    bits: int | tuple[int, int] = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        low, high = as_range(self.bits, f"{type(self).__name__}.bits", 1, 8)
        self._check(low.is_integer() and high.is_integer(), "bits", self.bits, "ints in [1, 8]")

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        low, high = as_range(self.bits, "bits", 1, 8)
        return {
            "bits": torch.randint(int(low), int(high) + 1, (images.shape[0],), generator=generator)
        }

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        return posterize(images, params["bits"])


@dataclass(frozen=True, kw_only=True, repr=False)
class RandomErasing(Op):
    """Fill a random box (area fraction in ``scale``, aspect in ``ratio``) with ``value``."""

    name: ClassVar[str] = "random_erasing"
    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("scale", as_range(self.scale, f"{type(self).__name__}.scale", 0.0, 1.0))
        self._set("ratio", as_range(self.ratio, f"{type(self).__name__}.ratio", 1e-6))
        self._check(0 <= self.value <= 1, "value", self.value, "a fill value in [0, 1]")

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        n, _, height, width = images.shape
        box_width, box_height = box_candidates(
            n, (height, width), self.scale, self.ratio, generator
        )
        fits = (box_width <= 1) & (box_height <= 1)
        # Like torchvision, an image with no fitting box is left as it is (an empty box).
        box_width = torch.where(fits.any(dim=1), first_valid(box_width, fits), 0.0)
        box_height = torch.where(fits.any(dim=1), first_valid(box_height, fits), 0.0)
        corner = torch.rand(n, 2, generator=generator)
        left, top = corner[:, 0] * (1 - box_width), corner[:, 1] * (1 - box_height)
        return {"box": torch.stack([left, top, left + box_width, top + box_height], dim=1)}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        height, width = images.shape[-2:]
        left, top, right, bottom = (edge.view(-1, 1, 1) for edge in params["box"].unbind(dim=1))
        # A pixel is erased when its centre falls inside the box.
        x = (torch.arange(width, device=images.device) + 0.5) / width
        y = (torch.arange(height, device=images.device) + 0.5) / height
        inside = (x >= left) & (x < right) & (y[:, None] >= top) & (y[:, None] < bottom)
        return images.masked_fill(inside[:, None], self.value)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, kw_only=True, repr=False)
class Normalize(Op):
    """Standardise channels with ``mean`` and ``std`` (for user pipelines; presets leave it out).

    The output leaves [0, 1], so put it last.
    """

    name: ClassVar[str] = "normalize"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(self.p == 1.0, "p", self.p, "1.0 (normalisation applies to every image)")
        self._check(len(self.mean) >= 1, "mean", self.mean, "one value per channel")
        self._check(
            len(self.std) == len(self.mean) and all(s > 0 for s in self.std),
            "std",
            self.std,
            f"{len(self.mean)} positive values (one per channel, as mean)",
        )

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        if images.shape[1] != len(self.mean):
            raise DataError(
                f"normalize has {len(self.mean)} mean/std values but the images have "
                f"{images.shape[1]} channels: pass one value per channel."
            )
        mean = torch.tensor(self.mean, device=images.device)
        std = torch.tensor(self.std, device=images.device)
        return normalize(images, mean, std)


@dataclass(frozen=True, kw_only=True, repr=False)
class SomeOf(Op):
    """Apply ``k`` ops drawn per image from ``ops`` (in listed order), each with its own ``p``.

    This is the "a few random ops from a pool" policy of the CPC augmentations.
    """

    name: ClassVar[str] = "some_of"
    ops: tuple[Op, ...] = ()
    k: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("ops", tuple(self.ops))
        self._check(
            all(isinstance(op, Op) and not op.resamples for op in self.ops),
            "ops",
            self.ops,
            "Op instances that keep the image size (no crops or resizes)",
        )
        self._check(
            isinstance(self.k, int) and 1 <= self.k <= len(self.ops),
            "k",
            self.k,
            f"an int in [1, {len(self.ops)}]",
        )

    def run(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None,
        size: Size,
        where: torch.Tensor | None = None,
        owned: bool = False,
    ) -> tuple[torch.Tensor, list[Applied]]:
        """Apply ``k`` ops drawn per chosen image, in listed order (see :meth:`Op.run`)."""
        n = images.shape[0]
        chosen = torch.rand(n, generator=generator) < self.p
        if where is not None:
            chosen &= where
        # The k ops with the smallest random keys are the ones picked for an image.
        keys = torch.rand(n, len(self.ops), generator=generator)
        smallest = keys.topk(self.k, largest=False).indices
        picked = torch.zeros_like(keys, dtype=torch.bool).scatter_(1, smallest, True)
        records: list[Applied] = []
        for column, op in enumerate(self.ops):
            only = chosen & picked[:, column]
            out, applied = op.run(images, generator, size, where=only, owned=owned)
            owned, images = still_owned(images, out, owned), out
            records.extend(applied)
        return images, records
