"""Relative patch position (Doersch, Gupta & Efros, 2015, "Unsupervised Visual
Representation Learning by Context Prediction").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import jigsaw as tiling
from .. import validate
from ..data import Batch
from ..errors import check
from ..heads import MLPHead
from ..supervisor import Supervisor
from . import _heads
from .registry import register

GRID = 3
CENTRE = 4
# Tile index (row-major on the 3x3 grid) of each of the 8 labels; label order is row-major
# over the neighbours: 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left,
# 6 bottom, 7 bottom-right.
NEIGHBOURS = (0, 1, 2, 3, 5, 6, 7, 8)
# (row, column) offset of each label's neighbour from the centre patch.
OFFSETS = tuple(((t // GRID) - 1, (t % GRID) - 1) for t in NEIGHBOURS)
# Cells below this side (px) get larger patches than the paper's 2/3, see the class docstring.
SMALL_CELL = 24


def default_patch_fraction(image_size: int) -> float:
    """The paper's 2/3 of the cell for images of 72 px or more, 0.8 for smaller images."""
    return 2 / 3 if image_size // GRID >= SMALL_CELL else 0.8


@register("relpos")
class RelativePositionSupervisor(Supervisor):
    """Predict where a patch lies relative to the centre patch (8 classes).

    The image is divided into a 3x3 grid of cells; a patch of ``patch_fraction`` of the cell
    side is cut from each cell, centred and shifted by up to ``jitter_fraction`` of the cell
    (7 px of 144 in the paper, ~0.05) per axis, so patches are separated by gaps and never
    line up. ``patch_fraction=None`` picks the paper's 2/3 (96-px patches with 48-px gaps) for
    cells of at least 24 px (images of 72 px or more) and 0.8 for smaller ones: at 32 px the
    paper's ratio leaves 6-px patches on which the task barely learns (measurements in
    ``docs/methods.md``). Each image gives one pair: the centre
    patch and one of its 8 neighbours, drawn uniformly. Both patches go through the shared
    backbone in one pass; their features are concatenated (centre first) and an MLP
    classifies the neighbour's position (labels: see ``OFFSETS``).

    Chromatic aberration countermeasure: colour dropping (the paper's alternative to its
    colour projection): with ``colour_dropping=True`` (default) each patch keeps one random
    colour channel and the other two are replaced by Gaussian noise with 1/100 of the kept
    channel's standard deviation (:func:`super_selfish.jigsaw.drop_colour`).

    Images must hold 3x3 cells with patches of at least 4 px plus gaps: ``image_size`` >= 15.

    Heads as arguments: the classifier: ``predictor`` (None: the paper's, above) takes a module
    of your own mapping the concatenated features of the two patches to 8 logits; it is trained,
    saved and restored like the built-in one (rebuild with ``from_checkpoint(name,
    predictor=...)``; table in ``docs/methods.md``).
    """

    default_augment = "none"

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        patch_fraction: Optional[float] = None,
        jitter_fraction: float = 0.05,
        colour_dropping: bool = True,
        hidden_dim: int = 1024,
        predictor: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        super().__init__(dataset, backbone, **kwargs)
        if patch_fraction is None:
            patch_fraction = default_patch_fraction(self.image_size)
        self.cell, self.patch_size = tiling.tile_geometry(
            self.image_size, GRID, patch_fraction, min_tile=4
        )
        check(
            0 <= jitter_fraction < 0.5, "jitter_fraction", jitter_fraction, "a number in [0, 0.5)"
        )
        self.jitter = max(1, round(jitter_fraction * self.cell)) if jitter_fraction > 0 else 0
        self.colour_dropping = bool(colour_dropping)
        feature_dim = tiling.tile_feature_dim(
            self.backbone, self.patch_size, image_size=self.image_size
        )
        validate.positive_int(hidden_dim, "hidden_dim")
        self.classifier = _heads.resolve(
            self,
            "predictor",
            predictor,
            lambda: MLPHead([2 * feature_dim, hidden_dim, len(NEIGHBOURS)]),
        )
        if predictor is not None:
            _heads.check_width(
                "predictor",
                self.classifier,
                2 * feature_dim,
                len(NEIGHBOURS),
                "one logit per neighbour position",
            )
        self._record_hparams(patch_fraction=patch_fraction, patch_size=self.patch_size)

    def make_pairs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centre patches, neighbour patches ``(N, C, p, p)`` and labels ``(N,)`` in 0..7."""
        gen = getattr(self, "_aug_gen", None)
        tiles = tiling.cut_tiles(images, GRID, self.patch_size, jitter=self.jitter, generator=gen)
        labels = torch.randint(0, len(NEIGHBOURS), (len(images),), generator=gen)
        labels = labels.to(images.device)
        neighbour_tile = torch.tensor(NEIGHBOURS, device=images.device)[labels]
        rows = torch.arange(len(images), device=images.device)
        centre, neighbour = tiles[:, CENTRE], tiles[rows, neighbour_tile]
        if self.colour_dropping:
            centre, neighbour = tiling.drop_colour(
                torch.stack([centre, neighbour]), generator=gen
            ).unbind(0)
        return centre, neighbour, labels

    def _forward(self, batch: Batch) -> torch.Tensor:
        images = self.augment_views(batch.images)[0]
        centre, neighbour, labels = self.make_pairs(images)
        first, second = self.backbone(torch.cat([centre, neighbour])).chunk(2)
        logits = self.classifier(torch.cat([first, second], dim=1))
        self.log(accuracy=(logits.detach().argmax(1) == labels).float().mean())
        return F.cross_entropy(logits, labels)
