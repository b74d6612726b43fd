"""Where to look: fixation points for magnification, foveation and saliency-guided crops.

Fixations are returned in ``grid_sample`` coordinates of the image they are drawn on: x and y in
[-1, 1] with ``align_corners=False`` (-1 is the left edge of the first pixel, not its centre).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Union

import torch
import torch.nn.functional as F

from ..errors import DataError, unknown_name
from .blur import gaussian_blur
from .core import Op, Params, luminance, uniform

FIXATION_POLICIES = ("uniform", "saliency")
FixationPolicy = Union[str, Callable[[torch.Tensor], torch.Tensor]]

# Spectral residual works on a small image: Hou & Zhang down-sample to 64 px.
SALIENCY_MAX_SIDE = 64
# Std of the final smoothing, as a fraction of the saliency map's longer side: the authors'
# code smooths the 64-px map with a Gaussian of sigma 2.5 px.
SALIENCY_SMOOTHING = 2.5 / 64
# Relative floor added before the log so that flat regions keep a finite log-density.
SALIENCY_FLOOR = 1e-6


def spectral_residual_saliency(
    images: torch.Tensor, max_side: int = SALIENCY_MAX_SIDE
) -> torch.Tensor:
    """Log-saliency maps (N, h, w) by the spectral residual method (Hou & Zhang, 2007).

    Needs no trained weights and runs batched with ``torch.fft``. As in the authors' code the
    luminance is shrunk to ``max_side`` (64) pixels, the spectral residual is the log amplitude
    minus its 3x3 average, and the squared inverse transform is smoothed by a Gaussian of sigma
    2.5 px at 64 px. Unlike it, the image is mirror-padded before the transform (so that its
    borders do not register as salient) and the 3x3 average wraps around the periodic spectrum.

    Args:
        images: (N, C, H, W) float batch in [0, 1].
        max_side: the longer side of the maps, at most.

    Returns:
        (N, h, w) maps holding ``log(S / max S)``, a log-density whose maximum is 0.
    """
    gray = luminance(images)
    height, width = gray.shape[-2:]
    shrink = min(1.0, max_side / max(height, width))
    if shrink < 1.0:
        small = (max(1, round(height * shrink)), max(1, round(width * shrink)))
        gray = F.interpolate(gray, size=small, mode="area")
    # The FFT sees the image as periodic; mirroring it first avoids seams at its borders,
    # which would otherwise be the most "salient" structure of every image.
    rows, cols = gray.shape[-2:]
    pad_rows, pad_cols = min(rows // 2, rows - 1), min(cols // 2, cols - 1)
    mirrored = F.pad(gray, (pad_cols, pad_cols, pad_rows, pad_rows), mode="reflect")[:, 0]
    spectrum = torch.fft.fft2(mirrored)
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-8))
    # The spectrum is periodic, so its local average wraps around.
    local_mean = F.avg_pool2d(
        F.pad(log_amplitude[:, None], (1, 1, 1, 1), mode="circular"), 3, stride=1
    )
    residual = log_amplitude - local_mean[:, 0]
    saliency = torch.fft.ifft2(torch.polar(torch.exp(residual), spectrum.angle())).abs().square()
    saliency = saliency[:, pad_rows : pad_rows + rows, pad_cols : pad_cols + cols]
    sigma = SALIENCY_SMOOTHING * max(saliency.shape[-2:])
    kernel = 2 * math.ceil(3 * sigma) + 1
    saliency = gaussian_blur(saliency[:, None], sigma, kernel)[:, 0]
    peak = saliency.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return torch.log(saliency / peak + SALIENCY_FLOOR)


def sample_from_log_density(
    log_density: torch.Tensor,
    temperature: float,
    margin: float,
    generator: torch.Generator | None,
    standardize: bool = False,
) -> torch.Tensor:
    """Draw one fixation per map with density ∝ exp((s - max s) / temperature) inside the border.

    Args:
        log_density: (N, h, w) log-saliency maps s.
        temperature: T > 0; small T concentrates fixations at the maximum, large T spreads
            them uniformly.
        margin: the excluded border in normalised units (a fraction of the half-width).
        generator: the CPU generator to draw from.
        standardize: first bring each map to zero mean and unit standard deviation, so that T
            is measured in standard deviations of the map and means the same for every image
            and every saliency model (a flat map gives uniform fixations).

    Returns:
        (N, 2) normalised (x, y) fixations on the CPU. The density is constant over each map
        cell and zero outside the allowed area, so a cell is drawn in proportion to its density
        times its area inside the allowed area, then a uniform point in that part of it: the
        result is continuous and independent of the map's resolution.
    """
    log_density = log_density.detach().float().cpu()
    n, rows, cols = log_density.shape
    limit = 1.0 - margin

    def allowed_part(cells: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per cell along one axis, the [low, high] part inside [-limit, limit]."""
        edges = torch.arange(cells + 1) * (2.0 / cells) - 1.0
        return edges[:-1].clamp(-limit, limit), edges[1:].clamp(-limit, limit)

    (left, right), (top, bottom) = allowed_part(cols), allowed_part(rows)
    area = (bottom - top)[:, None] * (right - left)[None, :]
    # The softmax ignores a shift of each map, so standardising only needs the division by
    # its standard deviation.
    scale = torch.full((n, 1, 1), 1.0 / temperature)
    if standardize:
        scale /= log_density.std(dim=(-2, -1), keepdim=True, unbiased=False).clamp_min(1e-12)
    logits = torch.addcmul(area.log(), log_density, scale)  # log 0 = -inf excludes the border
    probabilities = torch.softmax(logits.reshape(n, -1), dim=1)
    cell = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
    row, col = cell // cols, cell % cols
    position = torch.rand(n, 2, generator=generator)
    x = left[col] + position[:, 0] * (right[col] - left[col])
    y = top[row] + position[:, 1] * (bottom[row] - top[row])
    return torch.stack([x, y], dim=1)


def pixels_to_normalised(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel (x, y), where integer values are pixel centres, to [-1, 1] grid coordinates."""
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=points.dtype, device=points.device)
    return (points + 0.5) * scale - 1.0


@dataclass(frozen=True, kw_only=True, repr=False)
class FixationOp(Op):
    """An op organised around one fixation point per image.

    ``fixation`` picks the point: ``"uniform"`` (anywhere at least ``border`` from the edges),
    ``"saliency"`` (drawn from the spectral-residual saliency of the image as it is at this point of
    the pipeline, after any earlier crop or flip), or a callable ``fn(images) -> tensor``
    returning either (N, h, w) log-saliency maps (sampled the same way) or (N, 2) fixations as
    pixel (x, y) of ``images``.

    Saliency fixations are drawn with density ∝ exp(z / ``temperature``), where z is the
    log-saliency map standardised per image (zero mean, unit std; ``standardize=True``). The
    temperature is therefore measured in standard deviations of the map: at T = 1 a point one
    standard deviation more salient than another is e times as likely to be fixated; T → 0
    always picks the most salient point, T → ∞ gives uniform fixations. ``standardize=False``
    uses the study's formula exp((s - max s) / T) on the raw map, whose meaning depends on the
    scale of the saliency model's output (the study's T = 1.5 was set for its FastSal logits).

    Pixel-valued parameters, ``border`` included, are given for a ``reference_size``-pixel image
    (the study's 96 px) and scale with the image: ``border=16`` keeps 1/6 of each side clear at
    any resolution.
    """

    allows_no_fixation: ClassVar[bool] = False
    fixation: FixationPolicy | None = "uniform"
    temperature: float = 1.0
    standardize: bool = True
    border: float = 0.0
    reference_size: int = 96

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.fixation, str) and self.fixation not in FIXATION_POLICIES:
            raise unknown_name("fixation policy", self.fixation, FIXATION_POLICIES)
        self._check(
            callable(self.fixation)
            or isinstance(self.fixation, str)
            or (self.fixation is None and self.allows_no_fixation),
            "fixation",
            self.fixation,
            "'uniform', 'saliency' or a callable returning (N, h, w) saliency maps or (N, 2) pixels"
            + (", or None" if self.allows_no_fixation else ""),
        )
        self._check(self.temperature > 0, "temperature", self.temperature, "a positive number")
        self._check(
            isinstance(self.standardize, bool),
            "standardize",
            self.standardize,
            "True (temperature in standard deviations of each map) or False (raw maps)",
        )
        self._check(
            isinstance(self.reference_size, int) and self.reference_size > 0,
            "reference_size",
            self.reference_size,
            "a positive int (pixels of the image the pixel-valued parameters refer to)",
        )
        self._check(
            0 <= self.border < self.reference_size / 2,
            "border",
            self.border,
            f"pixels in [0, {self.reference_size / 2}) at reference_size={self.reference_size}",
        )

    def shown_fields(self) -> list[str]:
        hidden = {"border", "reference_size"} if self.fixation is None else set()
        if self.fixation is None or self.fixation == "uniform":
            hidden |= {"temperature", "standardize"}
        return [name for name in super().shown_fields() if name not in hidden]

    @property
    def margin(self) -> float:
        """The border as a fraction of the half-width, the same at every resolution."""
        return 2.0 * self.border / self.reference_size

    def sample_fixations(
        self, images: torch.Tensor, generator: torch.Generator | None, count: int = 1
    ) -> torch.Tensor:
        """Fixations for every image, on the CPU: (N, 2) normalised (x, y), or (N, count, 2)
        independent draws per image when ``count`` > 1 (the saliency maps are computed once).
        """
        n, _, height, width = images.shape
        limit = 1.0 - self.margin
        if self.fixation == "uniform":
            points = torch.stack(
                [uniform(n * count, (-limit, limit), generator) for _ in range(2)], dim=1
            )
            return points if count == 1 else points.view(n, count, 2)
        if self.fixation == "saliency":
            maps = spectral_residual_saliency(images)
        else:
            maps = self.fixation(images)
            if isinstance(maps, torch.Tensor) and maps.shape == (n, 2):
                points = pixels_to_normalised(maps.detach().float().cpu(), height, width)
                return points if count == 1 else points[:, None].expand(n, count, 2)
        if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] != n:
            raise DataError(
                f"The fixation callable of {type(self).__name__} returned "
                f"{getattr(maps, 'shape', type(maps).__name__)}; expected a tensor of (N, h, w) "
                f"log-saliency maps or (N, 2) pixel fixations (x, y) for N={n} images."
            )
        if count > 1:
            maps = maps.repeat_interleave(count, dim=0)
        points = sample_from_log_density(
            maps, self.temperature, self.margin, generator, self.standardize
        )
        return points if count == 1 else points.view(n, count, 2)

    def marked_fixations(self, params: Params) -> torch.Tensor | None:
        """Where each image's fixation lies in this op's output, normalised; None if it has none."""
        return params.get("fixation")
