"""Contrastive predictive coding on image patches (CPC v2: Hénaff et al., 2019, "Data-Efficient
Image Recognition with Contrastive Predictive Coding"; CPC: van den Oord, Li & Vinyals, 2018).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import augment, validate
from ..augment.core import resize
from ..data import Batch, resize_uint8
from ..errors import ConfigError, check
from ..losses import CPCLoss
from ..supervisor import Supervisor
from . import _heads, _joint
from .registry import register

MIN_PATCH = 8


class MaskedConv2d(nn.Conv2d):
    """PixelCNN-style masked convolution, top to bottom: the kernel rows below its centre are
    zero, so output row ``i`` depends only on input rows ``<= i`` (all columns in reach).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        check(kernel_size % 2 == 1, "kernel_size", kernel_size, "an odd int")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones_like(self.weight)
        mask[:, :, kernel_size // 2 + 1 :] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution with the rows below the centre masked out."""
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class ContextNetwork(nn.Module):
    """Residual stack over the grid of codes (N, C, H, W) -> contexts (N, C, H, W).

    Each block: 1x1 conv to ``hidden`` -> ReLU -> 3x3 masked conv -> ReLU -> 1x1 conv back,
    added to its input; a final ReLU (the paper's appendix A.2 layout: 5 blocks, 256 wide).
    The context at row ``i`` sees only codes of rows ``<= i``.
    """

    def __init__(self, channels: int, hidden: int = 256, blocks: int = 5):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, hidden, 1),
                nn.ReLU(inplace=True),
                MaskedConv2d(hidden, hidden, 3),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, channels, 1),
            )
            for _ in range(blocks)
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Contexts (N, C, H, W) of the codes (N, C, H, W)."""
        out = codes
        for block in self.blocks:
            out = out + block(out)
        return F.relu(out)


DIRECTIONS = ("top-down", "bottom-up", "left-right", "right-left")


def orient(grid: torch.Tensor, direction: str) -> torch.Tensor:
    """Turn a grid (N, C, H, W) so that ``direction`` reads top to bottom (its own inverse
    for the vertical directions; the horizontal ones read columns as rows).
    """
    if direction == "top-down":
        return grid
    if direction == "bottom-up":
        return grid.flip(2)
    if direction == "left-right":
        return grid.transpose(2, 3)
    return grid.transpose(2, 3).flip(2)  # right-left


def first_clear_step(patch: int, stride: int) -> int:
    """The smallest row offset ``k`` whose target patch neither shares a pixel with nor
    touches the patches of the context rows: ``k * stride > patch`` (3 for half-overlapping
    patches, the reference's only offset).
    """
    return patch // stride + 1


def patch_geometry(
    image_size: int,
    patch_size: Optional[int],
    stride: Optional[int],
    max_step: Optional[int] = None,
) -> tuple[int, int, int]:
    """``(patch, stride, grid)``: defaults ``patch = image_size // 4``, ``stride = patch // 2``
    (7x7 grid of half-overlapping patches; the paper's 64-px patches at stride 32). The grid
    must leave a row ``max_step`` rows below another (default: :func:`first_clear_step`).
    """
    patch = image_size // 4 if patch_size is None else patch_size
    if patch_size is None and patch < MIN_PATCH:
        raise ConfigError(
            f"Invalid image_size={image_size}: expected at least {4 * MIN_PATCH} pixels for CPC "
            f"(patches of image_size // 4 = {patch} px, at least {MIN_PATCH} px); resize the "
            f"images, e.g. data.dataset(..., size={4 * MIN_PATCH}), or pass patch_size."
        )
    check(
        isinstance(patch, int) and MIN_PATCH <= patch <= image_size,
        "patch_size",
        patch,
        f"an int from {MIN_PATCH} to image_size ({image_size})",
    )
    stride = max(1, patch // 2) if stride is None else stride
    validate.positive_int(stride, "patch_stride")
    grid = (image_size - patch) // stride + 1
    max_step = first_clear_step(patch, stride) if max_step is None else max_step
    if grid <= max_step:
        raise ConfigError(
            f"Invalid image_size={image_size}: a {grid}x{grid} grid of {patch}-px patches at "
            f"stride {stride} leaves no row {max_step} rows below another; expected at least "
            f"{patch + max_step * stride} pixels (or a smaller patch_size/patch_stride/steps)."
        )
    return patch, stride, grid


@register("cpc")
class ContrastivePredictiveCodingSupervisor(Supervisor):
    """Predict the codes of patches below from the context of the patches above (CPC v2).

    The image is cut into a grid of overlapping patches: ``patch_size`` = image_size // 4 and
    ``patch_stride`` = patch_size // 2 by default, i.e. a 7x7 grid (the paper: 64-px patches at
    stride 32 of a 260-px crop); images need at least 32 px (8-px patches). Every patch is
    augmented on its own with the ``cpc`` preset (built at the patch size) and encoded by the
    backbone to one vector (the pooled map). Backbone normalisation defaults to ``layer``
    (the paper replaces BatchNorm, whose batch statistics let patches see each other).

    A context network of ``context_blocks`` (5) residual blocks with PixelCNN-style masked
    3x3 convolutions (``context_dim`` 256 wide, top to bottom) turns the grid of codes into
    contexts. A trained 1x1 target projection maps codes to ``target_dim`` (64) targets; for
    each step ``k`` in ``steps`` a trained 1x1 prediction conv maps the context at row ``i``
    to a prediction of the target at row ``i + k``, scaled by ``prediction_scale`` (0.1, the
    paper's ``emb_scale``). InfoNCE (:class:`~super_selfish.losses.CPCLoss`): each prediction
    must pick its target among all patches of the batch (dot products, no temperature).

    ``steps`` defaults to the paper's: a single offset whose target patches share no pixel
    with, and do not touch, the context rows (:func:`first_clear_step`: ``k * stride >
    patch_size``, i.e. ``k = 3`` at the default half-overlapping patches, the reference's
    ``steps_to_ignore=2``). Nearer offsets would let the prediction copy pixels the context
    has already seen (a low-level shortcut); they can still be asked for explicitly.

    ``directions`` (default ``("top-down",)``, the paper's appendix pseudo-code) chooses the
    prediction directions among ``"top-down"``, ``"bottom-up"``, ``"left-right"`` and
    ``"right-left"``; the paper's final model predicts in all four. Each direction has its
    own context network and prediction convs (the grid of codes is turned so that the
    direction reads top to bottom); the target projection is shared and the loss is the mean
    over directions.

    :meth:`get_backbone` is the patch encoder; it also encodes whole images (features pooled).

    Heads as arguments: ``context`` (None: the network above; one direction only) takes a module
    of your own mapping the (N, C, H, W) grid of codes to contexts of the same shape, the
    context at row ``i`` seeing only rows ``<= i``; it is trained, saved and restored like the
    built-in one (rebuild with ``from_checkpoint(name, context=...)``; table in
    ``docs/methods.md``).
    """

    default_augment = "cpc"

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        patch_size: Optional[int] = None,
        patch_stride: Optional[int] = None,
        steps: Optional[Sequence[int]] = None,
        directions: Sequence[str] = ("top-down",),
        target_dim: int = 64,
        context_dim: int = 256,
        context_blocks: int = 5,
        prediction_scale: float = 0.1,
        norm: str = "layer",
        context: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        if steps is not None:
            steps = tuple(steps)
            check(
                len(steps) > 0 and all(isinstance(k, int) and k >= 1 for k in steps),
                "steps",
                steps,
                "None (the first offset clear of the context) or a "
                "non-empty sequence of positive ints, e.g. (3,)",
            )
        directions = (directions,) if isinstance(directions, str) else tuple(directions)
        check(
            len(directions) > 0
            and len(set(directions)) == len(directions)
            and all(d in DIRECTIONS for d in directions),
            "directions",
            directions,
            f"a non-empty sequence of distinct directions among {DIRECTIONS}",
        )
        _joint.check_positive_int(target_dim, "target_dim")
        _joint.check_positive_int(context_dim, "context_dim")
        _joint.check_positive_int(context_blocks, "context_blocks")
        validate.positive_number(prediction_scale, "prediction_scale")
        check(
            context is None or len(directions) == 1,
            "context",
            type(context).__name__,
            "None with several directions (each builds its own context network)",
        )
        self._patch_request = (patch_size, patch_stride, None if steps is None else max(steps))
        super().__init__(dataset, backbone, norm=norm, **kwargs)
        self.patch_size, self.patch_stride, self.grid = self._geometry()
        if steps is None:
            steps = (first_clear_step(self.patch_size, self.patch_stride),)
        channels = self.backbone.feature_dim
        self.contexts = (
            nn.ModuleList(
                [
                    _heads.resolve(
                        self,
                        "context",
                        context,
                        lambda: ContextNetwork(channels, context_dim, context_blocks),
                        "mapping the (N, C, H, W) grid of codes to contexts of the same "
                        "shape, row i seeing rows <= i",
                    )
                ]
            )
            if context is not None
            else nn.ModuleList(
                ContextNetwork(channels, context_dim, context_blocks) for _ in directions
            )
        )
        self.target_projection = nn.Conv2d(channels, target_dim, 1)
        self.predictors = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(channels, target_dim, 1) for _ in steps) for _ in directions
        )
        self.criterion = CPCLoss(steps)
        self.steps = steps
        self.directions = directions
        self.prediction_scale = float(prediction_scale)
        self._record_hparams(
            patch_size=self.patch_size,
            patch_stride=self.patch_stride,
            grid=self.grid,
            steps=list(steps),
        )  # resolved from the image size

    @property
    def context(self) -> ContextNetwork:
        """The context network of the first direction."""
        return self.contexts[0]

    def _geometry(self) -> tuple[int, int, int]:
        return patch_geometry(self.image_size, *self._patch_request)

    def _build_views(self, spec: Any) -> Any:
        """Per-patch augmentations: the preset is built at the patch size."""
        patch, _, _ = self._geometry()
        return augment.build(spec, patch)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, G, G, 3, patch, patch), row-major grid of overlapping patches."""
        p, s = self.patch_size, self.patch_stride
        out = images.unfold(2, p, s).unfold(3, p, s)  # (N, C, G, G, p, p)
        return out[:, :, : self.grid, : self.grid].permute(0, 2, 3, 1, 4, 5)

    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """Augmented, encoded patches as a grid (N, C, G, G)."""
        n = images.shape[0]
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = (
                resize_uint8(images, self.image_size)
                if images.dtype == torch.uint8
                else resize(images, (self.image_size,) * 2)
            )
        patches = self.patches(images).reshape(
            -1, images.shape[1], self.patch_size, self.patch_size
        )
        if self.views is not None:
            patches = self.augment_views(patches)[0]
        features = self.backbone(patches)
        return features.view(n, self.grid, self.grid, -1).permute(0, 3, 1, 2)

    def _forward(self, batch: Batch) -> torch.Tensor:
        codes = self.codes(batch.images)
        targets = self.target_projection(codes)
        losses = []
        for direction, context_net, predictors in zip(
            self.directions, self.contexts, self.predictors
        ):
            context = context_net(orient(codes, direction))
            predictions: list[torch.Tensor] = [
                self.prediction_scale * w(context) for w in predictors
            ]
            losses.append(self.criterion(predictions, orient(targets, direction)))
        return torch.stack(losses).mean()
