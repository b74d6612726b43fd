"""A picture of what an augmentation does: each row an original image followed by its views."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ..errors import check
from .core import Applied, Pipeline, Size, Views, as_float_images
from .fixation import FixationOp
from .registry import build

# Cells are enlarged (nearest neighbour) to at least this many pixels so small images stay legible.
MIN_CELL = 64
GAP = 2
MARK_COLOUR = (255, 0, 0)


def view_columns(
    views: Views, images: torch.Tensor, n_views: int, generator: torch.Generator | None
) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """``n_views`` augmented copies of ``images`` (cycling through the views), each with the
    fixations its ops placed, as (N, 2) normalised positions in the view (NaN where none).
    """
    columns = []
    while len(columns) < n_views:
        for pipeline in views.pipelines[: n_views - len(columns)]:
            out, records = pipeline.trace(images, generator)
            columns.append((out, fixation_marks(records)))
    return columns


def fixation_marks(records: list[Applied]) -> list[torch.Tensor]:
    """The fixations placed by the ops of one pipeline run, followed through the later ops."""
    marks: list[torch.Tensor] = []
    for record in records:
        if marks and record.applied.any():
            moved = [record.op.move_points(mark, record.params) for mark in marks]
            if any(mark is None for mark in moved):
                return []  # a later resampling op: the marks cannot be placed
            where = record.applied[:, None]
            marks = [torch.where(where, new, old) for new, old in zip(moved, marks)]
        if isinstance(record.op, FixationOp) and record.params:
            placed = record.op.marked_fixations(record.params)
            if placed is not None:
                marks.append(placed.masked_fill(~record.applied[:, None], math.nan))
    return marks


def to_cells(images: torch.Tensor, cell: Size) -> torch.Tensor:
    """Resize a [0, 1] batch to the display cell, as uint8 (N, H, W, 3) on the CPU
    (grayscale shown as gray, images of more channels by their first three).
    """
    images = images.detach().float().cpu()
    images = images[:, :3] if images.shape[1] >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    if tuple(images.shape[-2:]) != cell:
        images = F.interpolate(images, size=cell, mode="nearest")
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1)


def describe_sizes(sizes: list[Size]) -> str:
    """``2 views of 64 px, 6 of 32 px`` (square sizes by their side, others as HxW)."""
    counts: dict[Size, int] = {}
    for one in sizes:
        counts[one] = counts.get(one, 0) + 1
    parts = []
    for i, (one, count) in enumerate(counts.items()):
        side = f"{one[0]} px" if one[0] == one[1] else f"{one[0]}x{one[1]} px"
        noun = ("view" if count == 1 else "views") if i == 0 else ""
        parts.append(f"{count} {noun + ' ' if noun else ''}of {side}")
    return ", ".join(parts)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable (Pillow >= 10.1)
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _with_labels(grid: Image.Image, title: str, columns: list[str], cell_width: int) -> Image.Image:
    """The grid under a header: the title, then each column's name centred over it."""
    font = _font(max(11, min(16, cell_width // 6)))
    draw = ImageDraw.Draw(grid)
    line = int(draw.textbbox((0, 0), "Hg", font=font)[3]) + 4
    header = 2 * line + 4
    width = max(grid.width, int(draw.textlength(title, font=font)) + 4)  # the title fits
    out = Image.new("RGB", (width, grid.height + header), "white")
    out.paste(grid, (0, header))
    draw = ImageDraw.Draw(out)
    draw.text((2, 2), title, fill=(0, 0, 0), font=font)
    for column, name in enumerate(columns):
        centre = column * (cell_width + GAP) + cell_width / 2
        width = draw.textlength(name, font=font)
        draw.text((max(0.0, centre - width / 2), line + 2), name, fill=(60, 60, 60), font=font)
    return out


def preview(
    views_or_name: str | Views | Pipeline,
    images: torch.Tensor,
    n_views: int = 4,
    size: int | tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    *,
    labels: bool = True,
    title: str | None = None,
) -> Image.Image:
    """A grid image: one row per image, the original then ``n_views`` augmented views.

    A preset name is built at ``size`` (default: the images' own size). Views smaller than the
    largest one (local crops) are enlarged to the same cell. Fixations of magnification,
    foveation and saliency crops are circled in red, followed through later flips and turns.

    With ``labels`` (the default) a header names what is shown: ``title`` (default: the
    preset name, the view sizes and the originals' size) and each column (``original``,
    ``view 1``, ...). ``grid.info["title"]`` and ``grid.info["columns"]`` hold the same text
    (written into the PNG by ``super-selfish preview``).
    """
    check(isinstance(n_views, int) and n_views >= 1, "n_views", n_views, "a positive int")
    images = as_float_images(images)
    if isinstance(views_or_name, str):
        views = build(views_or_name, size if size is not None else tuple(images.shape[-2:]))
    else:
        check(
            size is None,
            "size",
            size,
            "None when views are given (size only applies to a preset name)",
        )
        views = Views([views_or_name]) if isinstance(views_or_name, Pipeline) else views_or_name
    name = views_or_name if isinstance(views_or_name, str) else "custom views"
    columns = view_columns(views, images, n_views, generator)
    height = max(out.shape[-2] for out, _ in columns)
    width = max(out.shape[-1] for out, _ in columns)
    zoom = max(1, math.ceil(MIN_CELL / min(height, width)))
    cell = (height * zoom, width * zoom)
    n = images.shape[0]
    grid = Image.new(
        "RGB", ((1 + n_views) * (cell[1] + GAP) - GAP, n * (cell[0] + GAP) - GAP), "white"
    )
    draw = ImageDraw.Draw(grid)
    for column, (out, marks) in enumerate([(images, []), *columns]):
        tiles = to_cells(out, cell)
        left = column * (cell[1] + GAP)
        for row in range(n):
            top = row * (cell[0] + GAP)
            grid.paste(Image.fromarray(tiles[row].numpy()), (left, top))
            for mark in marks:
                x, y = mark[row].tolist()
                if not math.isnan(x):
                    cx, cy = left + (x + 1) / 2 * cell[1], top + (y + 1) / 2 * cell[0]
                    radius = max(2, min(cell) // 24)
                    draw.ellipse(
                        (cx - radius, cy - radius, cx + radius, cy + radius),
                        outline=MARK_COLOUR,
                        width=2,
                    )
    shown: list[Size] = [(int(out.shape[-2]), int(out.shape[-1])) for out, _ in columns]
    enlarged = (
        " (shown enlarged)" if any(one != (height, width) for one in shown) or zoom > 1 else ""
    )
    original = tuple(images.shape[-2:])
    title = title or (
        f"{name}: {describe_sizes(shown)}{enlarged}; originals "
        + (f"{original[0]} px" if original[0] == original[1] else f"{original[0]}x{original[1]} px")
    )
    names = ["original", *(f"view {i + 1}" for i in range(n_views))]
    if labels:
        grid = _with_labels(grid, title, names, cell[1])
    grid.info["title"] = title
    grid.info["columns"] = " | ".join(names)
    return grid
