"""The study's formulas, one image at a time, as the foveated-vision study (Wang & Ponce,
arXiv 2112.07173) computed them: the yardstick the tests hold the batched ops to, and the
per-image baseline of the throughput benchmark.

Conventions are the study's, not this library's: fixations are integer pixel indices, pixel i
is at coordinate i (so the magnification grid, normalised as x / W * 2 - 1 for
``grid_sample(align_corners=False)``, reads half a pixel left of and above where the batched
op reads), the magnification's cover is normalised by the largest f(r) over the output's pixel
centres (not by f at the output's corner), foveation kernels span int(3 sigma) taps with
reflected borders, and saliency densities are exp((s - max s) / T) on the raw map.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d


def quad_radius(radius: np.ndarray, fov: float, K: float) -> np.ndarray:
    """The study's radial_quad map f(r): r inside ``fov``, quadratic outside."""
    return np.where(radius < fov, radius, (radius + K) ** 2 / (2 * (fov + K)) + fov - (fov + K) / 2)


def magnify_one(
    image: torch.Tensor, fixation: tuple[int, int], cover: float, fov: float, K: float
) -> torch.Tensor:
    """Cortical magnification (radial_quad) of one (C, H, W) image of even size, output the
    same size, fixation (x, y) integer pixels; ``fov``, ``K`` in output pixels.
    """
    _, height, width = image.shape
    x, y = fixation
    farthest = math.hypot(max(height - y, y), max(width - x, x))
    gy, gx = np.mgrid[-height // 2 + 0.5 : height // 2 + 0.5, -width // 2 + 0.5 : width // 2 + 0.5]
    r = np.hypot(gx, gy)
    f = quad_radius(r, fov, K)
    coef = farthest / f.max() * math.sqrt(cover)
    source_x = x + coef * f * gx / r
    source_y = y + coef * f * gy / r
    grid = np.stack([source_x / width * 2 - 1, source_y / height * 2 - 1], axis=-1)
    grid = torch.from_numpy(grid).float()[None].to(image.device)
    return F.grid_sample(
        image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[0]


def magnify_cover_factor(height: int, width: int, fov: float, K: float) -> float:
    """The factor c_study / c_op that makes :func:`magnify_one` zoom as much as the batched op:
    (max f over the pixel centres / f at the output's corner)².
    """
    gy, gx = np.mgrid[-height // 2 + 0.5 : height // 2 + 0.5, -width // 2 + 0.5 : width // 2 + 0.5]
    pixel_max = quad_radius(np.hypot(gx, gy), fov, K).max()
    corner = quad_radius(np.array(math.hypot(height / 2, width / 2)), fov, K)
    return float((pixel_max / corner) ** 2)


def raised_cosine(x: np.ndarray) -> np.ndarray:
    """The study's window: 1 for |x| < 1/4, cos² down to 0 at |x| = 3/4."""
    x = np.abs(x)
    return np.where(x < 0.25, 1.0, np.where(x > 0.75, 0.0, np.cos(np.pi * (x - 0.25)) ** 2))


def foveate_one(
    image: torch.Tensor,
    fixation: tuple[int, int],
    fovea_area: float,
    kerW_coef: float = 0.06,
    spacing: float = 0.2,
) -> torch.Tensor:
    """Foveated blur of one (C, H, W) image at integer pixel ``fixation`` (x, y), one
    full-resolution blur per ring as the study: ring n (from 0) is centred at
    rho e^{(n + 1) spacing} and blurred with sigma = kerW_coef x that radius, by a kernel of
    int(3 sigma) taps (made odd) with reflected borders; the number of rings reaches the
    farthest corner pixel.
    """
    _, height, width = image.shape
    rho = math.sqrt(height * width * fovea_area / math.pi)
    x, y = fixation
    gx, gy = np.meshgrid(np.arange(width) - x, np.arange(height) - y)
    distance = np.maximum(np.hypot(gx, gy), 1e-12)
    corners = [math.hypot(cx - x, cy - y) for cx in (0, width - 1) for cy in (0, height - 1)]
    n_rings = math.ceil(math.log(max(corners) / rho) / spacing + 1)
    u = np.log(distance / rho) / spacing
    to_tensor = lambda a: torch.from_numpy(a).float().to(image.device)  # noqa: E731
    out = to_tensor(raised_cosine(np.clip(u, 0, 1))) * image
    for ring in range(n_rings):
        sigma = kerW_coef * rho * math.exp((ring + 1) * spacing)
        kernel = int(3 * sigma)
        kernel += 1 - kernel % 2
        blurred = gaussian_blur2d(image[None], kernel, (sigma, sigma), border_type="reflect")[0]
        out = out + to_tensor(raised_cosine(u - (ring + 1))) * blurred
    return out.clamp(0, 1)


def saliency_density(log_density: torch.Tensor, temperature: float, border: int) -> torch.Tensor:
    """The study's fixation density on an (H, W) map: exp((s - max s) / T), zero within
    ``border`` pixels of the edges (unnormalised; the study draws a pixel with multinomial).
    """
    density = torch.exp((log_density - log_density.max()) / temperature)
    if border > 0:
        inside = torch.zeros_like(density)
        inside[border:-border, border:-border] = density[border:-border, border:-border]
        density = inside
    return density


def saliency_crop_box(
    density: torch.Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """The study's saliency-guided crop box (top, left, height, width) in pixels of an image
    the size of ``density``, without padding: up to 30 draws of a centre pixel (from
    ``density``), an area and an aspect; the first box whose overlap with the image lies
    strictly inside ``scale`` is moved inward past the top/left edges and cut at the
    bottom/right ones; if none, the centre crop.
    """
    height, width = density.shape
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(30):
        target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=generator))
        draw = torch.rand(1, generator=generator).item()
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draw)
        w = int(round(math.sqrt(target.item() * aspect)))
        h = int(round(math.sqrt(target.item() / aspect)))
        index = torch.multinomial(density.flatten(), 1, generator=generator).item()
        top, left = index // width - h // 2, index % width - w // 2
        overlap = max(0, min(top + h, height) - max(0, top)) * max(
            0, min(left + w, width) - max(0, left)
        )
        if area * scale[0] < overlap < area * scale[1]:
            top, left = max(0, top), max(0, left)
            return top, left, min(h, height - top), min(w, width - left)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w
