"""Jigsaw puzzles (Noroozi & Favaro, 2016, "Unsupervised Learning of Visual Representations
by Solving Jigsaw Puzzles"), with the context-free network (CFN).
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

# Default permutation-set sizes: every permutation of a 2x2 grid, the paper's 100 for 3x3.
DEFAULT_PERMUTATIONS = {2: 24, 3: 100}


@register("jigsaw")
class JigsawSupervisor(Supervisor):
    """Recover which permutation shuffled the tiles of an image.

    Each image is cut into a ``grid x grid`` puzzle (:func:`super_selfish.jigsaw.cut_tiles`):
    one ``tile_size`` crop at a random place inside each cell, so tiles are separated by gaps
    of random width and never line up, then colour-jittered independently (per-tile
    brightness/contrast and grayscale, :func:`~super_selfish.jigsaw.jitter_tiles`). The tiles
    are shuffled by a permutation drawn uniformly from a fixed set chosen for maximal Hamming
    distance (:func:`~super_selfish.jigsaw.hamming_permutations`), encoded *separately* by
    the shared backbone (one batched pass over all tiles: the context-free network), and the
    features, concatenated in shuffled order, are classified by permutation index.

    Defaults: ``grid`` 2 for images under 64 px, else 3; all 24 permutations for 2x2 and 100
    for 3x3 (greedy max-min selection with ``permutation_seed=0``: the 100-permutation 3x3
    set has a minimum pairwise Hamming distance of 6, the 2x2 set of 2);
    ``tile_fraction=0.85`` (64-px tiles in 75-px cells in the paper), colour jitter 0.4/0.4
    and grayscale p=0.3; a classifier ``[grid^2 * feature_dim, hidden_dim, n_permutations]``
    with ``hidden_dim=1024``. The permutation set is a buffer, so checkpoints carry it.
    Views come from the ``none`` preset (resize only): tiling makes the crops.

    Heads as arguments: the classifier: ``predictor`` (None: the paper's, above) takes a module
    of your own mapping the concatenated tile features to one logit per permutation; it is
    trained, saved and restored like the built-in one (rebuild with ``from_checkpoint(name,
    predictor=...)``; table in ``docs/methods.md``).
    """

    default_augment = "none"

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        grid: Optional[int] = None,
        n_permutations: Optional[int] = None,
        permutation_seed: int = 0,
        tile_fraction: float = 0.85,
        brightness: float = 0.4,
        contrast: float = 0.4,
        grayscale: float = 0.3,
        hidden_dim: int = 1024,
        predictor: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        super().__init__(dataset, backbone, **kwargs)
        if grid is None:
            grid = 2 if self.image_size < 64 else 3
        check(isinstance(grid, int) and 2 <= grid <= 4, "grid", grid, "2, 3 or 4 (or None)")
        n_tiles = grid * grid
        if n_permutations is None:
            n_permutations = DEFAULT_PERMUTATIONS.get(grid, 100)
        self.grid = grid
        self.cell, self.tile_size = tiling.tile_geometry(
            self.image_size, grid, tile_fraction, min_tile=4
        )
        for name, value in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("grayscale", grayscale),
        ):
            check(
                0 <= value < 1 or (name == "grayscale" and value == 1),
                name,
                value,
                "a number in [0, 1)",
            )
        self.colour = dict(brightness=brightness, contrast=contrast, grayscale=grayscale)
        self.register_buffer(
            "permutations", tiling.hamming_permutations(n_tiles, n_permutations, permutation_seed)
        )
        feature_dim = tiling.tile_feature_dim(
            self.backbone, self.tile_size, image_size=self.image_size
        )
        validate.positive_int(hidden_dim, "hidden_dim")
        self.classifier = _heads.resolve(
            self,
            "predictor",
            predictor,
            lambda: MLPHead([n_tiles * feature_dim, hidden_dim, n_permutations]),
        )
        if predictor is not None:
            _heads.check_width(
                "predictor",
                self.classifier,
                n_tiles * feature_dim,
                n_permutations,
                "one logit per permutation, n_permutations",
            )
        self._record_hparams(grid=grid, n_permutations=n_permutations, tile_size=self.tile_size)

    def make_puzzles(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffled, jittered tiles ``(N, grid^2, C, t, t)`` and their permutation labels."""
        gen = getattr(self, "_aug_gen", None)
        tiles = tiling.cut_tiles(images, self.grid, self.tile_size, jitter=None, generator=gen)
        tiles = tiling.jitter_tiles(tiles, generator=gen, **self.colour)
        labels = torch.randint(0, len(self.permutations), (len(images),), generator=gen)
        labels = labels.to(images.device)
        return tiling.apply_permutation(tiles, self.permutations[labels]), labels

    def _forward(self, batch: Batch) -> torch.Tensor:
        images = self.augment_views(batch.images)[0]
        puzzles, labels = self.make_puzzles(images)
        n, t = puzzles.shape[:2]
        features = self.backbone(puzzles.flatten(0, 1)).reshape(n, -1)  # tiles in puzzle order
        logits = self.classifier(features)
        self.log(accuracy=(logits.detach().argmax(1) == labels).float().mean())
        return F.cross_entropy(logits, labels)
