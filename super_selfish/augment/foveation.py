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
from functools import lru_cache
from typing import ClassVar

import torch

from .blur import gaussian_blur, separable
from .core import Params, Size, as_range, uniform
from .fixation import FixationOp

# Blurs below this sigma (pixels) mix the sharp image with the first level.
SMALLEST_LEVEL_SIGMA = 1.0
# Each pyramid octave serves sigmas from this many of its own pixels up.
PYRAMID_SIGMA = 0.85
# On the CPU the op processes chunks of at most this many pixels per channel.
CPU_CHUNK_PIXELS = 2**17
# Pyramid levels stay at least this many pixels per side.
SMALLEST_PYRAMID_SIDE = 4
# Weight every point gives the first pyramid level on top of its rings' weights, so that the mix
# of pyramid levels stays defined (and close to that level) where the rings give them none.
PYRAMID_WEIGHT_FLOOR = 1e-3


@lru_cache(maxsize=64)
def halving_matrix(size: int, out: int, margin: int, device: torch.device) -> torch.Tensor:
    """The (out, size) matrix that averages pairs of a signal padded by replication, ``margin``
    pixels before and as many as ``out`` needs after: padding and 2x pooling in one product.
    """
    columns = torch.arange(out, device=device)[:, None] * 2 - margin
    columns = (columns + torch.arange(2, device=device)).clamp(0, size - 1)
    matrix = torch.zeros(out, size, device=device)
    return matrix.scatter_add_(1, columns, torch.full((out, 2), 0.5, device=device))


@lru_cache(maxsize=64)
def upsampling_matrix(
    size: int, times: int, start: int, out: int, device: torch.device
) -> torch.Tensor:
    """Rows ``start`` to ``start + out`` of ``times`` bilinear x2 upsamplings of a ``size``-pixel
    signal (align_corners=False, edges replicated: the numbers of ``F.interpolate``).
    """
    matrix = torch.eye(size, device=device)
    for _ in range(times):
        old = torch.arange(matrix.shape[0], device=device)
        rows = torch.cat([2 * old, 2 * old, 2 * old + 1, 2 * old + 1])
        columns = torch.cat([old, (old - 1).clamp_min(0), old, (old + 1).clamp_max(len(old) - 1)])
        taps = torch.tensor([0.75, 0.25, 0.75, 0.25], device=device).repeat_interleave(len(old))
        step = torch.zeros(2 * len(old), len(old), device=device)
        matrix = step.index_put_((rows, columns), taps, accumulate=True) @ matrix
    return matrix[start : start + out]


def raised_cosine(x: torch.Tensor) -> torch.Tensor:
    """1 for |x| <= 1/4, a cos² ramp down to 0 at |x| = 3/4, then 0: copies shifted by whole
    numbers sum to one (cos² + sin²).
    """
    # 0 on the plateau, pi/2 where the window has ended.
    ramp = (x.abs() - 0.25).mul_(math.pi).clamp_(0, math.pi / 2)
    return ramp.cos_().square_()


def ring_blend(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split log-eccentricity ``u`` (in ring spacings, 0 at the fovea edge) between two rings.

    Returns the inner ring index (an integer tensor; 0 is the fovea) and the weights of the inner
    and outer ring, the only two windows that are non-zero at ``u``.
    """
    u = u.clamp_min(0)
    inner = u.long()
    inner_weight = raised_cosine(u.frac_())
    return inner, inner_weight, 1 - inner_weight


def truncated_kernel_std(sigma: torch.Tensor, truncate: float) -> torch.Tensor:
    """The standard deviation of a sampled Gaussian of std ``sigma`` cut to an odd kernel of
    int(2 x ``truncate`` x sigma) taps (the study's int(3 sigma) for ``truncate=1.5``) and
    renormalised: the blur such a kernel actually applies, up to a few percent narrower than
    sigma for wide truncation and about 0.74 sigma at 1.5.
    """
    half = (2 * truncate * sigma).floor().div(2).floor()  # odd size int(2 t s) (+1): half-width
    taps = torch.arange(int(half.max().item()) + 1, dtype=sigma.dtype, device=sigma.device)
    weight = torch.exp(-taps.square() / (2 * sigma[..., None].square().clamp_min(1e-12)))
    weight = weight * (taps <= half[..., None]) * torch.where(taps > 0, 2.0, 1.0)
    return ((weight * taps.square()).sum(-1) / weight.sum(-1)).sqrt()


def pixel_centres(
    count: int, device: torch.device, block: int = 1, margin: int = 0
) -> torch.Tensor:
    """Centres of ``count`` pixels that each cover ``block`` image pixels, the first starting
    ``margin`` pixels before the image, in image pixel coordinates (0 is the image's edge).
    """
    return torch.arange(count, device=device) * block + block / 2 - margin


class BlurPyramid:
    """Gaussian blurs of one batch up to ``max_sigma``, large sigmas at reduced resolution.

    Octave m is the image average-pooled m times by 2, so one of its pixels covers a d x d block
    (d = 2**m); a sigma is blurred at the octave where about ``PYRAMID_SIGMA`` of its pixels
    remain. The octaves above 0 are built from the image padded by replication by one block of
    the deepest octave, so their blurs and upsampling see the replicated edge a full-resolution
    blur would see; :meth:`to_full` upsamples (bilinear, x2 at a time) and removes the padding.
    Padding, pooling and upsampling are products with small cached matrices, which the CPU runs
    faster than the equivalent padding and strided element-wise ops.
    """

    def __init__(self, images: torch.Tensor, max_sigma: float) -> None:
        self.images = images
        self.size = tuple(images.shape[-2:])
        self.deepest = max(
            0,
            min(self.octave(max_sigma), int(math.log2(min(self.size) / SMALLEST_PYRAMID_SIDE))),
        )
        self.margin = 2**self.deepest if self.deepest > 0 else 0
        # Padded to a multiple of the deepest block so that every octave halves exactly.
        block = 2**self.deepest
        self.padded_size = tuple(side + 2 * self.margin + (-side % block) for side in self.size)
        self.octaves = [images]  # octave m of the padded image is self.octaves[m], m >= 1

    @staticmethod
    def octave(sigma: float) -> int:
        """The pyramid level whose blur is the largest not above ``sigma``."""
        return max(0, math.floor(math.log2(sigma / PYRAMID_SIGMA)))

    def octave_of(self, sigma: float) -> int:
        """The octave ``sigma`` is blurred at."""
        return min(self.octave(sigma), self.deepest)

    def octave_images(self, m: int) -> torch.Tensor:
        """Octave m: the image for m = 0, the padded image pooled m times by 2 beyond."""
        while len(self.octaves) <= m:
            k = len(self.octaves)
            margin = self.margin if k == 1 else 0
            rows, columns = (
                halving_matrix(source, padded >> k, margin, self.images.device)
                for source, padded in zip(self.octaves[-1].shape[-2:], self.padded_size)
            )
            self.octaves.append(separable(self.octaves[-1], rows, columns))
        return self.octaves[m]

    def pixel_centres(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The x and y of the pixel centres of padded octave m (>= 1), in image pixels."""
        height, width = (side >> m for side in self.padded_size)
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
        return gaussian_blur(self.octave_images(m), residual, kernel)

    def upsampling(self, images: torch.Tensor, times: int, start: int, out: Size) -> torch.Tensor:
        """Rows and columns ``start`` to ``start + out`` of ``images`` upsampled ``times`` x2."""
        rows, columns = (
            upsampling_matrix(side, times, start, length, images.device)
            for side, length in zip(images.shape[-2:], out)
        )
        return separable(images, rows, columns)

    def to_full(self, images: torch.Tensor, m: int) -> torch.Tensor:
        """Bring an octave-m tensor back to full resolution."""
        return images if m == 0 else self.upsampling(images, m, self.margin, self.size)

    def collapse(self, octaves: dict[int, torch.Tensor]) -> torch.Tensor:
        """The sum, at octave 1, of tensors given at octaves >= 1: each is added to the
        upsampled sum of the coarser ones, so there is one x2 upsampling per octave.
        """
        total = None
        for m in range(self.deepest, 0, -1):
            if total is not None:
                total = self.upsampling(total, 1, 0, tuple(2 * side for side in total.shape[-2:]))
            if m in octaves:
                total = octaves[m] if total is None else total.add_(octaves[m])
        return total


@dataclass(frozen=True, kw_only=True, repr=False)
class Foveation(FixationOp):
    """Blur each image more the farther a pixel is from its fixation (foveated vision).

    ``fovea_area``: the sharp fovea's share of the image area, drawn per image.
    ``kerW_coef``: blur sigma per pixel of eccentricity (ring n: sigma = kerW_coef x its centre
    eccentricity), so the blur grows linearly with distance from the fixation.
    ``spacing``: ring width in log-eccentricity; each ring spans a factor exp(spacing).
    ``levels_per_octave``: how finely the shared blur levels sample sigma (accuracy vs speed).
    ``border`` keeps fixations that many reference pixels from the edges (12 at 96 px).
    ``truncate``: None blurs each ring with a full Gaussian of its sigma; a number cuts the ring's
    kernel at ±``truncate`` sigma as the study does (its kernels span int(3 sigma) taps, i.e.
    ``truncate=1.5``), which blurs less: the ring is then blurred by a Gaussian with the
    truncated kernel's standard deviation (about 0.74 sigma at 1.5, so the study's blur at a
    given ``kerW_coef`` is about 1.35 times weaker than this op's default).
    """

    name: ClassVar[str] = "foveation"
    border: float = 12.0
    fovea_area: tuple[float, float] = (0.01, 0.5)
    kerW_coef: float = 0.06
    spacing: float = 0.2
    levels_per_octave: int = 2
    truncate: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(
            self.truncate is None or self.truncate > 0,
            "truncate",
            self.truncate,
            "None (full Gaussians) or a positive kernel half-width in sigmas (the study: 1.5)",
        )
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
        ``SMALLEST_LEVEL_SIGMA * 2 ** ((k - 1) / levels_per_octave)``; linear in sigma below 1.
        """
        relative = sigma / SMALLEST_LEVEL_SIGMA
        octaves = torch.log2(relative.clamp(min=1.0))
        return relative.clamp(max=1.0) + self.levels_per_octave * octaves

    def level_sigma(self, level: int) -> float:
        """The sigma of ladder level ``level`` (0 for the sharp image)."""
        if level == 0:
            return 0.0
        return SMALLEST_LEVEL_SIGMA * 2 ** ((level - 1) / self.levels_per_octave)

    def ring_coordinates(self, radius: torch.Tensor, count: int) -> torch.Tensor:
        """The blur-ladder coordinates (N, count) of rings 0 (the fovea, sharp) to count - 1 of
        each image: ring n >= 1 is blurred by kerW_coef x its centre eccentricity.
        """
        ring = torch.arange(count, device=radius.device)
        sigma = self.kerW_coef * radius[:, None] * torch.exp(ring * self.spacing)
        if self.truncate is not None:
            sigma = truncated_kernel_std(sigma, self.truncate)
        return self.level_coordinate(sigma * (ring > 0))

    def rings(
        self, centre: torch.Tensor, radius: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`ring_blend` at the points (x, y) (pixel coordinates of the image) of each
        image: the inner ring index (N, h * w) and the two ring weights (N, 1, h, w), for h, w
        the lengths of y and x.
        """
        squared = (x - centre[:, :1, None]).square() + (y[:, None] - centre[:, 1:, None]).square()
        # u = log(distance / radius) / spacing, from the squared distance.
        offset = (radius.log() / -self.spacing).view(-1, 1, 1)
        u = torch.add(offset, squared.log_(), alpha=0.5 / self.spacing)
        inner, inner_weight, outer_weight = ring_blend(u)
        return inner.flatten(1), inner_weight[:, None], outer_weight[:, None]

    @staticmethod
    def level_weight(
        shares: torch.Tensor, rings: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """The weight (N, 1, h, w) of a blur level at the points of ``rings``: the level's share
        of each ring, ``shares`` (N, rings), looked up for the two rings there and mixed by their
        weights. Two small gathers replace a dozen full-size ops per level.
        """
        inner, inner_weight, outer_weight = rings
        inner_share = shares.gather(1, inner).view_as(inner_weight)
        outer_share = shares[:, 1:].gather(1, inner).view_as(inner_weight)
        return inner_share.mul_(inner_weight).addcmul_(outer_share, outer_weight)

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        out = torch.empty_like(images)
        if images.device.type != "cpu":
            return self.foveate(images, params, out)
        # On the CPU, chunks of about 1.5 MB of images keep the op's intermediate maps in cache
        # and let the allocator reuse their memory: several times faster than one large batch.
        chunk = max(1, CPU_CHUNK_PIXELS // (images.shape[-2] * images.shape[-1]))
        for start in range(0, images.shape[0], chunk):
            part = slice(start, start + chunk)
            self.foveate(images[part], {k: v[part] for k, v in params.items()}, out[part])
        return out

    def foveate(self, images: torch.Tensor, params: Params, out: torch.Tensor) -> torch.Tensor:
        """The foveated blur of a batch with its parameters, written into ``out``.

        Each ring's share of every ladder level is tabulated per image, so a level's weight map
        costs two lookups. Ladder levels of octave 0 are mixed at full resolution, together with
        the mix of all coarser ones, which gets the rest of each pixel's weight: the weights sum
        to one and the fovea, all of whose weight is on the sharp image, stays exactly sharp.
        """
        height, width = images.shape[-2:]
        device = images.device
        radius = (height * width * params["fovea_area"] / math.pi).sqrt()
        centre = (params["fixation"] + 1) * torch.tensor([width / 2, height / 2], device=device)
        fine = self.rings(
            centre, radius, pixel_centres(width, device), pixel_centres(height, device)
        )
        # Enough rings for every point of the padded pyramid, at most a diagonal away.
        farthest = math.log(2 * math.hypot(height, width) / radius.min().item()) / self.spacing
        coordinates = self.ring_coordinates(radius, math.floor(farthest) + 2)
        outermost = fine[0].amax(1, keepdim=True) + 1
        top = math.ceil(coordinates.gather(1, outermost).max().item())
        # shares[n, j, k]: how much of ring j of image n goes to ladder level k (a linear split
        # between the two levels around the ring's coordinate).
        levels = torch.arange(top + 1, device=device)
        shares = (1 - (coordinates[..., None] - levels).abs()).clamp_min_(0)
        pyramid = BlurPyramid(images, self.level_sigma(top))
        fine_levels = 1 + sum(
            pyramid.octave_of(self.level_sigma(level)) == 0 for level in range(1, top + 1)
        )
        torch.mul(images, self.level_weight(shares[..., 0], fine), out=out)
        for level in range(1, fine_levels):
            blurred = pyramid.blur(self.level_sigma(level))
            out.addcmul_(self.level_weight(shares[..., level], fine), blurred)
        if fine_levels <= top:
            pyramid_share = 1 - shares[..., :fine_levels].sum(-1)
            mix = self.pyramid_mix(pyramid, centre, radius, shares[..., fine_levels:], fine_levels)
            out.addcmul_(self.level_weight(pyramid_share, fine), mix)
        return out.clamp_(0, 1)

    def pyramid_mix(
        self,
        pyramid: BlurPyramid,
        centre: torch.Tensor,
        radius: torch.Tensor,
        shares: torch.Tensor,
        first: int,
    ) -> torch.Tensor:
        """The weighted mean, at full resolution, of ladder levels ``first`` and up, whose
        ``shares`` of the rings are given: each level is weighted at its own octave, with the
        weights as an extra channel, the octaves are collapsed with one x2 upsampling each, and the
        mean is taken at octave 1, a quarter of the pixels, and then upsampled.
        """
        sums: dict[int, torch.Tensor] = {}
        rings = {}
        for index in range(shares.shape[-1]):
            sigma = self.level_sigma(first + index)
            m = pyramid.octave_of(sigma)
            blurred = pyramid.blur(sigma)
            channels = blurred.shape[1]
            if m not in sums:
                rings[m] = self.rings(centre, radius, *pyramid.pixel_centres(m))
                sums[m] = blurred.new_zeros(blurred.shape[0], channels + 1, *blurred.shape[-2:])
            level_shares = shares[..., index] + (PYRAMID_WEIGHT_FLOOR if index == 0 else 0)
            weight = self.level_weight(level_shares, rings[m])
            sums[m][:, :channels].addcmul_(weight, blurred)
            sums[m][:, channels:] += weight
        total = pyramid.collapse(sums)
        return pyramid.to_full(total[:, :-1] / total[:, -1:], 1)
