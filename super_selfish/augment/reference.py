"""Straightforward per-image versions of magnification and foveation, as the original study ran
them: one image at a time, the sampling grid rebuilt on every call, one full-resolution Gaussian
blur per foveation ring (kernel int(3 sigma), made odd, by default). They are the yardstick for
the batched ops: the tests check that the batched ops agree with them, the benchmark measures
the speed-up.

Coordinates follow the batched ops: pixel (x, y) with integer values at pixel centres.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from .core import Size


def magnify_one(
    image: torch.Tensor,
    fixation: tuple[float, float],
    cover: float,
    fov: float,
    K: float,
    size: Size,
) -> torch.Tensor:
    """Cortical magnification (radial_quad) of one (C, H, W) image; ``fov``, ``K`` in output px."""
    _, source_height, source_width = image.shape
    height, width = size
    gx, gy = np.meshgrid(np.arange(width) + 0.5 - width / 2, np.arange(height) + 0.5 - height / 2)
    r = np.hypot(gx, gy)

    def f(radius: np.ndarray) -> np.ndarray:
        return np.where(
            radius < fov, radius, (radius + K) ** 2 / (2 * (fov + K)) + fov - (fov + K) / 2
        )

    fx, fy = fixation[0] + 0.5, fixation[1] + 0.5
    farthest = math.hypot(max(fx, source_width - fx), max(fy, source_height - fy))
    coef = farthest / f(np.array(math.hypot(height / 2, width / 2))) * math.sqrt(cover)
    stretch = np.divide(f(r), r, out=np.ones_like(r), where=r > 0)
    source_x = fx + coef * stretch * gx
    source_y = fy + coef * stretch * gy
    grid = np.stack([source_x / source_width * 2 - 1, source_y / source_height * 2 - 1], axis=-1)
    grid = torch.from_numpy(grid).float()[None].to(image.device)
    return F.grid_sample(
        image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[0]


def raised_cosine(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 0.25, 1.0, np.where(x > 0.75, 0.0, np.cos(np.pi * (x - 0.25)) ** 2))


def foveate_one(
    image: torch.Tensor,
    fixation: tuple[float, float],
    fovea_area: float,
    kerW_coef: float,
    spacing: float,
    truncate: float = 1.5,
    border: str = "reflect",
) -> torch.Tensor:
    """Foveated blur of one (C, H, W) image with one full-resolution blur per ring.

    The study's kernels reach ``truncate`` = 1.5 sigma each side, with reflected borders; the
    batched op reaches 3 sigma with replicated borders, which ``truncate=3, border="replicate"``
    reproduces.
    """
    _, height, width = image.shape
    rho = math.sqrt(height * width * fovea_area / math.pi)
    fx, fy = fixation[0] + 0.5, fixation[1] + 0.5
    gx, gy = np.meshgrid(np.arange(width) + 0.5 - fx, np.arange(height) + 0.5 - fy)
    distance = np.maximum(np.hypot(gx, gy), 1e-6)
    farthest = math.hypot(max(fx, width - fx), max(fy, height - fy))
    n_rings = max(0, math.ceil((math.log(farthest) - math.log(rho)) / spacing + 1))
    u = (np.log(distance) - math.log(rho)) / spacing
    out = torch.from_numpy(raised_cosine(np.clip(u, 0, 1))).float().to(image.device) * image
    for ring in range(n_rings):
        weight = torch.from_numpy(raised_cosine(u - (ring + 1))).float().to(image.device)
        sigma = kerW_coef * rho * math.exp((ring + 1) * spacing)
        kernel = int(2 * truncate * sigma) // 2 * 2 + 1
        blurred = gaussian_blur2d(image[None], kernel, (sigma, sigma), border_type=border)[0]
        out = out + weight * blurred
    return out.clamp(0, 1)
