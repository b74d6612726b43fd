"""PIRL: pretext-invariant representation learning (Misra & van der Maaten, 2020,
"Self-Supervised Learning of Pretext-Invariant Representations").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import jigsaw, validate
from ..data import Batch
from ..heads import MLPHead
from ..losses import MemoryBankNCELoss
from . import _bank, _heads, _joint
from .registry import register

TILE_FRACTION = 64 / 85  # the paper: 64-px crops from the 85-px cells of a 255-px image
MIN_TILE = 8


@register("pirl")
class PIRLSupervisor(_bank.MemoryBankSupervisor):
    """Make an image's representation invariant to the jigsaw transformation.

    Image branch ``f``: backbone -> linear ``head`` to ``feature_dim`` (128), L2-normalised.
    Jigsaw branch ``g``: the image is cut into a ``grid`` x ``grid`` grid (3x3 from 64 px up,
    else 2x2), one tile of ``cell * 64/85`` px is cropped at a random place in each cell
    (:func:`super_selfish.jigsaw.cut_tiles`), each tile gets its own colour jitter
    (:func:`super_selfish.jigsaw.jitter_tiles`) and the tiles are shuffled by a random
    permutation per image. Every tile is encoded by the shared backbone and its own linear
    ``tile_head`` (to ``feature_dim``); the tile vectors are concatenated in the shuffled
    order (slot 0, 1, ...) and mapped by ``jigsaw_head`` to ``feature_dim``, L2-normalised.
    All heads are trained and saved.

    A memory bank keeps ``m_I``, a moving average (``bank_momentum`` 0.5) of ``f(I)`` per
    image. Loss: ``lam * NCE(m_I, g(I_t)) + (1 - lam) * NCE(m_I, f(I))`` with ``lam`` 0.5: each
    of ``g(I_t)`` and ``f(I)`` must match ``m_I`` against ``n_negatives`` other bank rows
    (32000 as in the paper, capped below the dataset size) at ``temperature`` 0.07, with a
    softmax over the positive and the negatives (``loss="softmax"``, default) or the paper's
    NCE (``loss="nce"``; see :class:`InstanceDiscriminationSupervisor` for why it is not the
    default). Both terms share one draw of negatives, which take about
    batch x n_negatives x feature_dim x 4 bytes.

    Views come from the ``pirl`` preset: the first view feeds ``f`` and carries the paper's
    augmentation of ``I`` (random resized crop, horizontal flip, colour jitter, grayscale); the
    second, the whole image resized (the first if there is one view), is cut into tiles. Images
    too small for tiles of at least 8 px raise :class:`~super_selfish.errors.ConfigError` naming
    ``image_size`` and the minimum.

    Learning rate: ``default_lr`` 3e-4, that of the memory-bank methods (see
    :class:`super_selfish.methods._bank.MemoryBankSupervisor`); the recipe is in the README.

    Heads as arguments: ``head``, ``tile_head`` and ``jigsaw_head`` (None: the paper's, above)
    take modules of your own; the memory bank takes the width of ``head``, and ``jigsaw_head``
    maps the concatenated tile vectors to that width; each is trained, saved and restored like
    the built-in one (rebuild with ``from_checkpoint(name, head=...)``; table in
    ``docs/methods.md``).
    """

    default_augment = "pirl"

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        temperature: float = 0.07,
        feature_dim: int = 128,
        n_negatives: int = 32000,
        bank_momentum: float = 0.5,
        lam: float = 0.5,
        loss: str = "softmax",
        grid: Optional[int] = None,
        tile_jitter: bool = True,
        memory_size: Optional[int] = None,
        head: Optional[nn.Module] = None,
        tile_head: Optional[nn.Module] = None,
        jigsaw_head: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        _joint.check_temperature(temperature)
        _joint.check_positive_int(feature_dim, "feature_dim")
        _joint.check_positive_int(n_negatives, "n_negatives")
        validate.probability(lam, "lam")
        validate.int_at_least(grid, "grid", 2, none="3 from 64 px, else 2")
        self._grid_request = grid
        super().__init__(dataset, backbone, **kwargs)
        self.grid, self.tile_size = self._geometry()
        dim = self.backbone.feature_dim
        self.head = _heads.resolve(self, "head", head, lambda: MLPHead([dim, feature_dim]))
        if head is not None:  # the memory bank and the jigsaw branch take its width
            feature_dim = _heads.output_dim(self.head, dim)
        self.tile_head = _heads.resolve(
            self, "tile_head", tile_head, lambda: MLPHead([dim, feature_dim])
        )
        tile_dim = _heads.output_dim(self.tile_head, dim) if tile_head is not None else feature_dim
        self.jigsaw_head = _heads.resolve(
            self,
            "jigsaw_head",
            jigsaw_head,
            lambda: MLPHead([self.grid * self.grid * tile_dim, feature_dim]),
        )
        if jigsaw_head is not None:
            _heads.check_width(
                "jigsaw_head",
                self.jigsaw_head,
                self.grid * self.grid * tile_dim,
                feature_dim,
                "the image branch's width, feature_dim",
            )
        self.memory = _bank.make_bank(self.dataset, feature_dim, bank_momentum, memory_size)
        n_items = self.memory.items.shape[0]
        self.criterion = MemoryBankNCELoss(n_items, temperature, loss)  # f(I) vs m_I
        self.jigsaw_criterion = MemoryBankNCELoss(n_items, temperature, loss)  # g(I_t) vs m_I
        self.n_negatives = n_negatives
        self.lam = float(lam)
        self.tile_jitter = tile_jitter
        self._record_hparams(grid=self.grid, tile_size=self.tile_size)

    def _geometry(self) -> tuple[int, int]:
        grid = self._grid_request or (3 if self.image_size >= 64 else 2)
        _, tile = jigsaw.tile_geometry(self.image_size, grid, TILE_FRACTION, MIN_TILE)
        return grid, tile

    def _build_views(self, spec: Any) -> Any:
        self._geometry()  # fail early, naming image_size, when the image is too small
        return super()._build_views(spec)

    def jigsaw_tiles(self, images: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, tile, tile): random-crop tiles, jittered per tile, shuffled per image."""
        generator = getattr(self, "_aug_gen", None)
        tiles = jigsaw.cut_tiles(images, self.grid, self.tile_size, generator=generator)
        if self.tile_jitter:
            tiles = jigsaw.jitter_tiles(tiles, generator=generator)
        n, t = tiles.shape[:2]
        perms = torch.argsort(torch.rand(n, t, generator=generator), dim=1)
        return jigsaw.apply_permutation(tiles, perms)

    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)
        image, source = views[0], views[1] if len(views) > 1 else views[0]
        tiles = self.jigsaw_tiles(source)
        n, t = tiles.shape[:2]
        image_features, tile_features = self.encode_views([image, tiles.flatten(0, 1)])
        f = F.normalize(self.head(image_features), dim=1)
        g = self.jigsaw_head(self.tile_head(tile_features).reshape(n, -1))
        g = F.normalize(g, dim=1)
        index = batch.index
        positive = self.memory.items[index]
        negatives = self._negatives(self.memory, index, self.n_negatives)  # shared by both
        loss_f = self.criterion(f, positive, negatives)
        loss_g = self.jigsaw_criterion(g, positive, negatives)
        self.log(loss_image=float(loss_f.detach()), loss_jigsaw=float(loss_g.detach()))
        self._defer_bank_update(self.memory, index, f)
        return self.lam * loss_g + (1 - self.lam) * loss_f
