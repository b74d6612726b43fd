"""One Gaussian blur for a whole batch, as fast as the CPU allows (foveation, saliency)."""

from __future__ import annotations

from functools import lru_cache

import torch
from kornia.filters import gaussian_blur2d, get_gaussian_kernel1d

# Blurs are matrix products on images up to this many pixels a side, convolutions beyond.
MATMUL_BLUR_SIDE = 128


@lru_cache(maxsize=64)
def blur_matrix(size: int, sigma: float, kernel: int, device: torch.device) -> torch.Tensor:
    """The (size, size) matrix of a 1-D Gaussian blur with replicated borders (cached:
    foveation asks for the same few sigmas batch after batch).
    """
    taps = get_gaussian_kernel1d(kernel, sigma, device=device)
    rows = torch.arange(size, device=device)[:, None]
    columns = (rows + torch.arange(kernel, device=device) - kernel // 2).clamp(0, size - 1)
    matrix = torch.zeros(size, size, device=device)
    return matrix.scatter_add_(1, columns, taps.expand(size, kernel).contiguous())


def separable(images: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Apply the (H', H) matrix ``rows`` down and the (W', W) matrix ``columns`` across each
    (H, W) image: (..., H', W').
    """
    return rows @ images @ columns.T


def gaussian_blur(images: torch.Tensor, sigma: float, kernel: int) -> torch.Tensor:
    """Blur (N, C, H, W) ``images`` by ``sigma`` pixels with replicated borders.

    Small images are blurred by two products with banded matrices: more arithmetic than a
    convolution, but on the CPU the products cost less than kornia's depthwise convolution up to
    about 128 pixels a side, whatever the kernel. Larger ones use that convolution, with the sigma
    repeated per image: its per-image path is many times faster on the CPU than its shared-kernel
    one.
    """
    height, width = images.shape[-2:]
    if max(height, width) <= MATMUL_BLUR_SIDE:
        rows = blur_matrix(height, sigma, kernel, images.device)
        columns = blur_matrix(width, sigma, kernel, images.device)
        return separable(images, rows, columns)
    per_image = torch.full((images.shape[0], 2), sigma, device=images.device)
    return gaussian_blur2d(images, kernel, per_image, border_type="replicate")
