"""Foveated blur: sharp around a fixation, increasingly blurred with eccentricity.

The image is split into a fovea of radius rho and rings spaced evenly in log-eccentricity, blended
by a raised-cosine partition of unity; ring n is blurred with sigma = kerW_coef x its centre
eccentricity. Instead of one full-resolution blur per ring and image, the whole batch shares a
fixed ladder of blur levels (log-spaced sigmas, large ones computed on a Gaussian pyramid), and
each pixel mixes the levels that bracket its rings' sigmas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .blur import gaussian_blur
from .core import Params, Size, as_range, uniform
from .fixation import FixationOp

# Blurs below this sigma (pixels) mix the sharp image with the first level.
SMALLEST_LEVEL_SIGMA = 1.0
# Each pyramid octave serves sigmas from this many of its own pixels up.
PYRAMID_SIGMA = 0.85
# On the CPU the op processes chunks of at most this many pixels per channel.
CPU_CHUNK_PIXELS = 2**19
# Pyramid levels stay at least this many pixels per side.
SMALLEST_PYRAMID_SIDE = 4


def halve(images: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling of an even-sized batch (strided sums beat avg_pool2d on the CPU)."""
    return (
        images[..., 0::2, 0::2]
        + images[..., 1::2, 0::2]
        + images[..., 0::2, 1::2]
        + images[..., 1::2, 1::2]
    ) / 4


def upsample2x(images: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling (align_corners=False, edges replicated): the numbers of
    ``F.interpolate``, about three times faster on the CPU. Each new row (then column) is a lerp
    of its two nearest old ones, 1/4 of the way, written straight into every other output row."""

    def along(x: torch.Tensor, dim: int) -> torch.Tensor:  # dim -2 (rows) or -1 (columns)
        padded = F.pad(x, (1, 1, 0, 0) if dim == -1 else (0, 0, 1, 1), mode="replicate")
        before, centre, after = (padded.narrow(dim, start, x.shape[dim]) for start in range(3))
        shape = list(x.shape)
        shape[dim] *= 2
        out = x.new_empty(shape)
        torch.lerp(centre, before, 0.25, out=out[..., 0::2] if dim == -1 else out[..., 0::2, :])
        torch.lerp(centre, after, 0.25, out=out[..., 1::2] if dim == -1 else out[..., 1::2, :])
        return out

    return along(along(images, -2), -1)


def raised_cosine(x: torch.Tensor) -> torch.Tensor:
    """1 for |x| <= 1/4, a cos² ramp down to 0 at |x| = 3/4, then 0: copies shifted by whole
    numbers sum to one (cos² + sin²)."""
    ramp = ((x.abs() - 0.25) * 2).clamp(0, 1)  # 0 on the plateau, 1 where the window has ended
    return 0.5 + 0.5 * torch.cos(math.pi * ramp)


def ring_blend(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split log-eccentricity ``u`` (in ring spacings, 0 at the fovea edge) between two rings.

    Returns the inner ring index (0 is the fovea) and the weights of the inner and outer ring,
    the only two windows that are non-zero at ``u``.
    """
    u = u.clamp_min(0)
    inner = u.floor()
    offset = u - inner
    return inner, raised_cosine(offset), raised_cosine(offset - 1)


def pixel_centres(
    count: int, device: torch.device, block: int = 1, margin: int = 0
) -> torch.Tensor:
    """Centres of ``count`` pixels that each cover ``block`` image pixels, the first starting
    ``margin`` pixels before the image, in image pixel coordinates (0 is the image's edge)."""
    return torch.arange(count, device=device) * block + block / 2 - margin


class BlurPyramid:
    """Gaussian blurs of one batch up to ``max_sigma``, large sigmas at reduced resolution.

    Octave m is the image average-pooled m times by 2, so one of its pixels covers a d x d block
    (d = 2**m); a sigma is blurred at the octave where about ``PYRAMID_SIGMA`` of its pixels
    remain. The octaves above 0 are built from the image padded by replication by one block of
    the deepest octave, so their blurs and upsampling see the replicated edge a full-resolution
    blur would see; :meth:`to_full` upsamples (bilinear, x2 at a time) and removes the padding.
    """

    def __init__(self, images: torch.Tensor, max_sigma: float) -> None:
        self.images = images
        self.size = tuple(images.shape[-2:])
        self.deepest = min(
            self.octave(max_sigma), int(math.log2(min(self.size) / SMALLEST_PYRAMID_SIDE))
        )
        self.margin = 2**self.deepest if self.deepest > 0 else 0
        height, width = self.size
        # Pad to a multiple of the deepest block so that every octave halves exactly.
        block = 2**self.deepest
        padding = (
            self.margin,
            self.margin + (-width % block),
            self.margin,
            self.margin + (-height % block),
        )
        self.octaves = [F.pad(images, padding, mode="replicate")]  # octave m is self.octaves[m]

    @staticmethod
    def octave(sigma: float) -> int:
        return max(0, math.floor(math.log2(sigma / PYRAMID_SIGMA)))

    def octave_of(self, sigma: float) -> int:
        """The octave ``sigma`` is blurred at."""
        return min(self.octave(sigma), self.deepest)

    def padded(self, m: int) -> torch.Tensor:
        """Octave m of the padded image."""
        while len(self.octaves) <= m:
            self.octaves.append(halve(self.octaves[-1]))
        return self.octaves[m]

    def pixel_centres(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The x and y of the pixel centres of padded octave m (>= 1), in image pixels."""
        height, width = self.padded(m).shape[-2:]
        device, d = self.images.device, 2**m
        x = pixel_centres(width, device, d, self.margin)
        return x, pixel_centres(height, device, d, self.margin)

    def blur(self, sigma: float) -> torch.Tensor:
        """The batch blurred by ``sigma`` (full-resolution pixels), at ``octave_of(sigma)``."""
        m = self.octave_of(sigma)
        d = 2**m
        # Block averaging adds (d^2 - 1) / 12 of variance, the x2 bilinear steps (d^2 - 1) / 4.
        residual = math.sqrt(max(sigma**2 - (d**2 - 1) / 3, 0.01)) / d
        kernel = 2 * math.ceil(3 * residual) + 1
        return gaussian_blur(self.images if m == 0 else self.padded(m), residual, kernel)

    def to_full(self, images: torch.Tensor, m: int) -> torch.Tensor:
        """Bring an octave-m tensor back to full resolution."""
        for _ in range(m):
            images = upsample2x(images)
        if m == 0:
            return images
        rows = slice(self.margin, self.margin + self.size[0])
        columns = slice(self.margin, self.margin + self.size[1])
        return images[..., rows, columns]

    def collapse(self, octaves: dict[int, torch.Tensor]) -> torch.Tensor:
        """The sum, at full resolution, of tensors given at octaves >= 1: each is added to the
        upsampled sum of the coarser ones, so there is one x2 upsampling per octave."""
        total = None
        for m in range(self.deepest, 0, -1):
            total = None if total is None else upsample2x(total)
            if m in octaves:
                total = octaves[m] if total is None else total + octaves[m]
        return self.to_full(total, 1)


@dataclass(frozen=True, kw_only=True, repr=False)
class Foveation(FixationOp):
    """Blur each image more the farther a pixel is from its fixation (foveated vision).

    ``fovea_area``: the sharp fovea's share of the image area, drawn per image.
    ``kerW_coef``: blur sigma per pixel of eccentricity (ring n: sigma = kerW_coef x its centre
    eccentricity), so the blur grows linearly with distance from the fixation.
    ``spacing``: ring width in log-eccentricity; each ring spans a factor exp(spacing).
    ``levels_per_octave``: how finely the shared blur levels sample sigma (accuracy vs speed).
    ``border`` keeps fixations that many reference pixels from the edges (12 at 96 px).
    """

    name: ClassVar[str] = "foveation"
    border: float = 12.0
    fovea_area: tuple[float, float] = (0.01, 0.5)
    kerW_coef: float = 0.06
    spacing: float = 0.2
    levels_per_octave: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set(
            "fovea_area", as_range(self.fovea_area, f"{type(self).__name__}.fovea_area", 1e-6, 1.0)
        )
        self._check(
            self.kerW_coef > 0,
            "kerW_coef",
            self.kerW_coef,
            "a positive blur per pixel of eccentricity",
        )
        self._check(
            self.spacing > 0, "spacing", self.spacing, "a positive ring width in log-eccentricity"
        )
        self._check(
            isinstance(self.levels_per_octave, int) and self.levels_per_octave >= 1,
            "levels_per_octave",
            self.levels_per_octave,
            "a positive int",
        )

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        n = images.shape[0]
        return {
            "fixation": self.sample_fixations(images, generator),
            "fovea_area": uniform(n, self.fovea_area, generator),
        }

    def level_coordinate(self, sigma: torch.Tensor) -> torch.Tensor:
        """Position of ``sigma`` on the blur ladder: 0 is sharp, level k >= 1 has sigma
        ``SMALLEST_LEVEL_SIGMA * 2 ** ((k - 1) / levels_per_octave)``; linear in sigma below 1."""
        relative = sigma / SMALLEST_LEVEL_SIGMA
        octaves = torch.log2(relative.clamp(min=1.0))
        return relative.clamp(max=1.0) + self.levels_per_octave * octaves

    def level_sigma(self, level: int) -> float:
        """The sigma of ladder level ``level`` (0 for the sharp image)."""
        if level == 0:
            return 0.0
        return SMALLEST_LEVEL_SIGMA * 2 ** ((level - 1) / self.levels_per_octave)

    def ring_levels(
        self, params: Params, image_size: Size, x: torch.Tensor, y: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """At the points (x, y) (pixel coordinates of the image), each point's two rings as
        (weight, blur-ladder coordinate) pairs, each (N, len(y), len(x))."""
        height, width = image_size
        fovea_radius = (height * width * params["fovea_area"] / math.pi).sqrt().view(-1, 1, 1)
        centre = (params["fixation"] + 1) * torch.tensor([width / 2, height / 2], device=x.device)
        dx = x - centre[:, 0].view(-1, 1, 1)
        dy = y[:, None] - centre[:, 1].view(-1, 1, 1)
        eccentricity = torch.hypot(dx, dy).clamp_min(1e-6)
        inner, inner_weight, outer_weight = ring_blend(
            (eccentricity / fovea_radius).log() / self.spacing
        )

        # Ring n >= 1 is blurred by kerW_coef x its centre eccentricity, the fovea (n = 0) not.
        outer_sigma = self.kerW_coef * fovea_radius * torch.exp((inner + 1) * self.spacing)
        inner_sigma = outer_sigma * math.exp(-self.spacing) * inner.clamp(max=1)
        return [
            (inner_weight, self.level_coordinate(inner_sigma)),
            (outer_weight, self.level_coordinate(outer_sigma)),
        ]

    @staticmethod
    def level_weight(rings: list[tuple[torch.Tensor, torch.Tensor]], level: int) -> torch.Tensor:
        """Each ring's weight shared between the two ladder levels that bracket its sigma, as
        the weight of ``level``: (N, 1, h, w)."""
        shares = (w * (1 - (coordinate - level).abs()).clamp_min(0) for w, coordinate in rings)
        return sum(shares)[:, None]

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        if images.device.type != "cpu":
            return self.foveate(images, params)
        # On the CPU, chunks of a few megabytes keep the op's dozen intermediate maps in cache
        # and let the allocator reuse their memory: about 3x faster than one large batch.
        chunk = max(1, CPU_CHUNK_PIXELS // (images.shape[-2] * images.shape[-1]))
        return torch.cat(
            [
                self.foveate(
                    images[start : start + chunk],
                    {k: v[start : start + chunk] for k, v in params.items()},
                )
                for start in range(0, images.shape[0], chunk)
            ]
        )

    def foveate(self, images: torch.Tensor, params: Params) -> torch.Tensor:
        """The foveated blur of a batch with its parameters.

        Ladder levels of octave 0 are mixed at full resolution. Coarser levels are mixed at their
        own octave, with their weights as a 4th channel, and the octaves are then collapsed with
        one x2 upsampling each rather than one per level.
        """
        image_size = tuple(images.shape[-2:])
        height, width = image_size
        device = images.device
        fine = self.ring_levels(
            params, image_size, pixel_centres(width, device), pixel_centres(height, device)
        )
        top = math.ceil(max(coordinate.max().item() for _, coordinate in fine))
        pyramid = BlurPyramid(images, self.level_sigma(top))
        out = torch.zeros_like(images)
        total = torch.zeros_like(images[:, :1])
        coarse: dict[int, torch.Tensor] = {}
        coarse_rings: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for level in range(top + 1):
            sigma = self.level_sigma(level)
            m = 0 if level == 0 else pyramid.octave_of(sigma)
            blurred = images if level == 0 else pyramid.blur(sigma)
            if m == 0:
                weight = self.level_weight(fine, level)
                out.addcmul_(weight, blurred)
                total += weight
                continue
            if m not in coarse:
                coarse_rings[m] = self.ring_levels(params, image_size, *pyramid.pixel_centres(m))
                coarse[m] = images.new_zeros(images.shape[0], 4, *blurred.shape[-2:])
            weight = self.level_weight(coarse_rings[m], level)
            coarse[m][:, :3].addcmul_(weight, blurred)
            coarse[m][:, 3:] += weight
        if coarse:
            collapsed = pyramid.collapse(coarse)
            # Upsampling smears coarse weight a little into the fovea, whose weight is all on
            # the sharp image: keep it out, so that the fovea stays exactly sharp.
            inner_weight, inner_coordinate = fine[0]
            collapsed *= ((inner_coordinate > 0) | (inner_weight < 1))[:, None]
            out += collapsed[:, :3]
            total += collapsed[:, 3:]
        # The interpolated coarse weights only nearly sum to one with the others: renormalise.
        return out.div_(total).clamp_(0, 1)
