"""Tiling helpers shared by the patch-based pretext tasks (Jigsaw, relative position, PIRL).

All functions work on float image batches ``(N, C, H, W)`` (any device) and keep them float:
tiles are cut with index arithmetic, never through uint8/PIL. Random draws come from an
optional CPU ``torch.Generator`` (the run's augmentation generator), so results repeat.

Layout: the image is centre-cropped to ``grid * cell`` pixels per side (``cell = H // grid``)
and divided into ``grid x grid`` cells in row-major order (tile ``r * grid + c``). One square
tile of ``tile_size`` pixels is cut from each cell. The space left in a cell
(``cell - tile_size``) is the gap between tiles; the tile's position inside its cell is
jittered at random so that tiles do not line up (the shortcut the gap and jitter remove in
Doersch et al. 2015 and Noroozi & Favaro 2016).
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Optional

import numpy as np
import torch

from . import validate
from .errors import ConfigError, check

__all__ = [
    "hamming_permutations",
    "min_hamming_distance",
    "tile_geometry",
    "cut_tiles",
    "jitter_tiles",
    "drop_colour",
    "apply_permutation",
    "invert_permutation",
    "assemble_tiles",
    "tile_feature_dim",
]

# Above this many tiles, all n! permutations cannot be enumerated; candidates are sampled.
_ENUMERATE_MAX_TILES = 9
_SAMPLED_CANDIDATES = 200_000


# ---------------------------------------------------------------------- permutation sets
@lru_cache(maxsize=16)
def _hamming_permutations(n_tiles: int, n_perms: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if n_tiles <= _ENUMERATE_MAX_TILES:
        candidates = np.array(list(itertools.permutations(range(n_tiles))), dtype=np.int8)
    else:  # too many to enumerate: a seeded random pool (duplicates are harmless)
        candidates = np.argsort(rng.random((_SAMPLED_CANDIDATES, n_tiles)), axis=1)
        candidates = candidates.astype(np.int8)
    # Visiting candidates in a seeded random order makes ties (frequent: distances are small
    # integers) break differently per seed, yet identically for one seed.
    candidates = candidates[rng.permutation(len(candidates))]
    columns = np.ascontiguousarray(candidates.T)  # one row per position: fast comparisons

    def distance_to(row: int) -> np.ndarray:
        dist = np.zeros(len(candidates), dtype=np.int8)
        for pos in range(n_tiles):
            dist += columns[pos] != candidates[row, pos]
        return dist

    chosen = [0]
    # min_dist[j]: smallest Hamming distance from candidate j to the chosen set so far.
    min_dist = distance_to(0)
    for _ in range(n_perms - 1):
        best = int(np.argmax(min_dist))  # first maximum in the shuffled order
        chosen.append(best)
        np.minimum(min_dist, distance_to(best), out=min_dist)
    return torch.from_numpy(candidates[chosen].astype(np.int64))


def hamming_permutations(n_tiles: int, n_perms: int, seed: int = 0) -> torch.Tensor:
    """``n_perms`` permutations of ``n_tiles`` tiles, spread far apart in Hamming distance.

    Greedy max-min selection (farthest-point sampling on the permutation group): start from a
    seeded random permutation, then repeatedly add the permutation whose distance to its
    nearest already-chosen one is largest. Deterministic for a given ``seed``; computed on
    first use and cached in memory, so no permutation file ships with the package.

    Requesting all ``n_tiles!`` permutations (e.g. 24 for a 2x2 grid) returns every one.

    Args:
        n_tiles: tiles per puzzle (grid * grid), 2 to 64.
        n_perms: permutations to choose, at most ``n_tiles!`` and 10,000.
        seed: seed of the start and of tie-breaking.

    Returns:
        A ``(n_perms, n_tiles)`` long tensor; row ``k`` lists, for each position, the tile
        placed there (see :func:`apply_permutation`).

    Raises:
        ConfigError: an argument is out of range.
    """
    validate.int_in_range(n_tiles, "n_tiles", 2, 64, " (grid * grid)")
    limit = math.factorial(n_tiles)
    validate.int_in_range(
        n_perms, "n_perms", 1, min(limit, 10_000), f" (there are {n_tiles}! = {limit} permutations)"
    )
    validate.non_negative_int(seed, "seed")
    return _hamming_permutations(n_tiles, n_perms, seed).clone()


def min_hamming_distance(perms: torch.Tensor) -> int:
    """Smallest Hamming distance between two distinct rows of ``perms`` (for checks/docs).

    Args:
        perms: ``(P, T)`` permutations, P >= 2.

    Returns:
        The number of positions in which the closest two rows differ.
    """
    dist = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    dist.fill_diagonal_(perms.shape[1] + 1)
    return int(dist.min())


def apply_permutation(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Shuffle tiles: ``out[n, i] = tiles[n, perms[n, i]]``.

    ``tiles`` is ``(N, T, ...)``; ``perms`` is ``(N, T)`` (one permutation per sample) or
    ``(T,)`` (the same for all).

    Args:
        tiles: ``(N, T, ...)`` tiles.
        perms: the permutation(s).

    Returns:
        The shuffled tiles, same shape as ``tiles``.

    Raises:
        ConfigError: ``perms`` has another shape.
    """
    n, t = tiles.shape[:2]
    perms = perms.to(tiles.device).long()
    if perms.dim() == 1:
        perms = perms.expand(n, t)
    check(perms.shape == (n, t), "perms", tuple(perms.shape), f"shape ({n}, {t}) or ({t},)")
    rows = torch.arange(n, device=tiles.device)[:, None]
    return tiles[rows, perms]


def invert_permutation(perms: torch.Tensor) -> torch.Tensor:
    """The inverse permutation(s): ``apply_permutation(apply_permutation(x, p),
    invert_permutation(p))`` equals ``x``.

    Args:
        perms: ``(T,)`` or ``(N, T)`` permutations.

    Returns:
        The inverses, same shape.
    """
    return torch.argsort(perms, dim=-1)


# ---------------------------------------------------------------------- tiling
def tile_geometry(
    image_size: int,
    grid: int,
    tile_fraction: float = 0.85,
    min_tile: int = 4,
    argument: str = "image_size",
) -> tuple[int, int]:
    """``(cell, tile_size)`` for square images of ``image_size`` px on a ``grid x grid`` grid.

    ``tile_size = floor(cell * tile_fraction)`` (Noroozi & Favaro: 64-px crops in 75-px cells,
    0.85), kept at least 1 px below ``cell`` so that the crop can move.

    Args:
        image_size: side of the images.
        grid: tiles per side, at least 2.
        tile_fraction: tile side over cell side, in (0, 1).
        min_tile: the smallest acceptable tile side.
        argument: the name the error gives ``image_size``.

    Returns:
        ``(cell, tile_size)`` in pixels.

    Raises:
        ConfigError: an invalid ``grid`` or ``tile_fraction``, or a tile smaller than
            ``min_tile`` (the message names ``argument`` and the smallest size that works).
    """
    validate.int_at_least(grid, "grid", 2)
    check(0 < tile_fraction < 1, "tile_fraction", tile_fraction, "a number in (0, 1)")
    cell = image_size // grid
    tile = min(int(cell * tile_fraction), cell - 1)
    if tile < min_tile:
        smallest = grid * _smallest_cell(min_tile, tile_fraction)
        raise ConfigError(
            f"Invalid {argument}={image_size!r}: expected at least {smallest} pixels for a "
            f"{grid}x{grid} grid of tiles of at least {min_tile} px with gaps "
            f"(tile_fraction={tile_fraction})."
        )
    return cell, tile


def _smallest_cell(min_tile: int, tile_fraction: float) -> int:
    cell = min_tile + 1
    while min(int(cell * tile_fraction), cell - 1) < min_tile:
        cell += 1
    return cell


def cut_tiles(
    images: torch.Tensor,
    grid: int,
    tile_size: int,
    jitter: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    return_offsets: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Cut a ``grid x grid`` puzzle from each image: ``(N, grid*grid, C, tile, tile)``.

    Each tile lies inside its cell (``cell = H // grid``; the image is centre-cropped to
    ``grid * cell`` first). Its top-left corner inside the cell is the centred position plus
    a uniform integer shift in ``[-jitter, jitter]`` per axis, clipped to the cell; with
    ``jitter=None`` the tile may sit anywhere in its cell (Noroozi & Favaro's random crop),
    with ``jitter=0`` tiles are centred and separated by exactly ``cell - tile_size`` px.
    Draws are independent per image and tile.

    Args:
        images: ``(N, C, H, W)`` batch; uint8 is converted to float in [0, 1].
        grid: tiles per side.
        tile_size: tile side in pixels, at most the cell side.
        jitter: largest shift from the centred position, or None for anywhere in the cell.
        generator: generator of the shifts.
        return_offsets: also return the tiles' top-left ``(y, x)`` positions.

    Returns:
        The tiles ``(N, grid*grid, C, tile_size, tile_size)``, and with ``return_offsets`` the
        offsets ``(N, grid*grid, 2)`` in input pixels.

    Raises:
        ConfigError: a bad batch shape, ``grid``, ``tile_size`` or ``jitter``.
    """
    check(images.dim() == 4, "images", tuple(images.shape), "a batch (N, C, H, W)")
    n, c, h, w = images.shape
    validate.positive_int(grid, "grid")
    cell = min(h, w) // grid
    validate.int_in_range(
        tile_size, "tile_size", 1, cell, f" (the cell size: {min(h, w)} px / grid {grid})"
    )
    if not images.is_floating_point():
        images = images.float() / 255.0
    t = grid * grid
    room = cell - tile_size
    if jitter is None:
        shift = torch.randint(0, room + 1, (n, t, 2), generator=generator)
    else:
        validate.non_negative_int(jitter, "jitter", " (pixels)", none="anywhere in the cell")
        shift = torch.randint(-jitter, jitter + 1, (n, t, 2), generator=generator)
        shift = (shift + room // 2).clamp(0, room)
    cells = torch.arange(t)
    origin = torch.stack([cells // grid, cells % grid], dim=1) * cell  # (T, 2) cell corners
    origin = origin + torch.tensor([(h - grid * cell) // 2, (w - grid * cell) // 2])
    offsets = (origin[None] + shift).to(images.device)  # (N, T, 2)
    span = torch.arange(tile_size, device=images.device)
    rows = (offsets[..., 0, None] + span)[:, :, :, None]  # (N, T, tile, 1)
    cols = (offsets[..., 1, None] + span)[:, :, None, :]  # (N, T, 1, tile)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    tiles = images[batch, :, rows, cols]  # (N, T, tile, tile, C): advanced dims first
    tiles = tiles.permute(0, 1, 4, 2, 3).contiguous()
    return (tiles, offsets) if return_offsets else tiles


def jitter_tiles(
    tiles: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    grayscale: float = 0.3,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Independent colour jitter per tile, so tiles cannot be matched by their colour.

    ``tiles``: float ``(..., C, h, w)`` in [0, 1]. Brightness multiplies by a factor drawn
    from ``[1 - brightness, 1 + brightness]``, contrast blends with the tile mean by a factor
    from ``[1 - contrast, 1 + contrast]``, and with probability ``grayscale`` the tile becomes
    grey (RGB only). The result stays float and is clamped to [0, 1].

    Args:
        tiles: float tiles ``(..., C, h, w)`` in [0, 1].
        brightness: spread of the brightness factor, in [0, 1).
        contrast: spread of the contrast factor, in [0, 1).
        grayscale: probability of turning a tile grey.
        generator: generator of the draws.

    Returns:
        The jittered tiles, same shape.

    Raises:
        ConfigError: an argument is out of range.
    """
    for name, value in (("brightness", brightness), ("contrast", contrast)):
        check(0 <= value < 1, name, value, "a number in [0, 1)")
    validate.probability(grayscale, "grayscale", " (a probability)")
    lead = tiles.shape[:-3]
    flat = tiles.reshape(-1, *tiles.shape[-3:])
    m = flat.shape[0]

    def factor(spread: float) -> torch.Tensor:
        f = 1 + (torch.rand(m, generator=generator) * 2 - 1) * spread
        return f.to(flat.device, flat.dtype)[:, None, None, None]

    out = flat * factor(brightness)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor(contrast) + mean
    if grayscale > 0 and flat.shape[1] == 3:
        gray = torch.rand(m, generator=generator).to(flat.device) < grayscale
        weights = torch.tensor([0.299, 0.587, 0.114], device=flat.device, dtype=flat.dtype)
        luma = (out * weights[:, None, None]).sum(1, keepdim=True).expand_as(out)
        out = torch.where(gray[:, None, None, None], luma, out)
    return out.clamp(0, 1).reshape(*lead, *tiles.shape[-3:])


def drop_colour(
    tiles: torch.Tensor, noise: float = 0.01, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Colour dropping (Doersch et al. 2015): keep one random channel per tile.

    The two other channels are replaced by Gaussian noise around the kept channel's mean,
    with a standard deviation of ``noise`` times the kept channel's (1/100 in the paper), so
    that colour fringing (chromatic aberration) cannot reveal a tile's place in the image.

    Args:
        tiles: float tiles ``(..., C, h, w)``.
        noise: noise standard deviation relative to the kept channel's.
        generator: generator of the kept channel and the noise.

    Returns:
        A new tensor of the same shape.

    Raises:
        ConfigError: ``noise`` is negative.
    """
    validate.non_negative_number(noise, "noise")
    lead, (c, h, w) = tiles.shape[:-3], tiles.shape[-3:]
    flat = tiles.reshape(-1, c, h, w)
    m = flat.shape[0]
    keep = torch.randint(0, c, (m,), generator=generator).to(flat.device)
    kept = flat[torch.arange(m, device=flat.device), keep][:, None]  # (M, 1, h, w)
    mean = kept.mean(dim=(2, 3), keepdim=True)
    std = kept.std(dim=(2, 3), keepdim=True) if h * w > 1 else torch.zeros_like(mean)
    fill = torch.randn(m, c, h, w, generator=generator).to(flat.device, flat.dtype)
    fill = mean + noise * std * fill
    chosen = torch.arange(c, device=flat.device)[None, :] == keep[:, None]  # (M, C)
    out = torch.where(chosen[:, :, None, None], flat, fill)
    return out.reshape(*lead, c, h, w)


def tile_feature_dim(
    backbone: torch.nn.Module,
    tile_size: int,
    argument: str = "image_size",
    image_size: Optional[int] = None,
) -> int:
    """Feature size of ``backbone`` (a :class:`~super_selfish.backbones.Backbone`) on tiles of
    ``tile_size`` px.

    Args:
        backbone: the backbone to measure.
        tile_size: tile side in pixels.
        argument: the name the error gives ``image_size``.
        image_size: the value the error reports.

    Returns:
        The feature size.

    Raises:
        ConfigError: the backbone cannot encode tiles that small.
    """
    try:
        dim, _ = backbone._measure(tile_size)
    except RuntimeError as exc:
        raise ConfigError(
            f"Invalid {argument}={image_size!r}: backbone {getattr(backbone, 'name', '?')!r} "
            f"cannot encode its {tile_size}-px tiles ({exc}); expected a larger image or a "
            "backbone that accepts small inputs."
        ) from exc
    return int(dim)


def assemble_tiles(tiles: torch.Tensor, grid: int, gap: int = 0, fill: float = 1.0) -> torch.Tensor:
    """Lay ``(N, grid*grid, C, h, w)`` tiles out as ``(N, C, H, W)`` images (visualisation).

    Args:
        tiles: the tiles, row-major.
        grid: tiles per side.
        gap: pixels between tiles.
        fill: value of the gaps.

    Returns:
        Images of side ``grid * h + (grid - 1) * gap`` (and likewise for width).

    Raises:
        ConfigError: the tile count is not ``grid * grid``.
    """
    n, t, c, h, w = tiles.shape
    check(t == grid * grid, "grid", grid, f"sqrt of the tile count {t}")
    size_h, size_w = grid * h + (grid - 1) * gap, grid * w + (grid - 1) * gap
    out = tiles.new_full((n, c, size_h, size_w), fill)
    for k in range(t):
        r, col = divmod(k, grid)
        y, x = r * (h + gap), col * (w + gap)
        out[:, :, y : y + h, x : x + w] = tiles[:, k]
    return out
