"""NNCLR (Dwibedi et al., 2021, "With a Little Help from My Friends: Nearest-Neighbor
Contrastive Learning of Visual Representations").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Batch
from ..heads import MLPHead
from ..losses import InfoNCELoss
from ..supervisor import Supervisor
from . import _heads, _joint
from .registry import register

SUPPORT_CAP = 98304


@register("nnclr")
class NNCLRSupervisor(Supervisor):
    """Contrast each embedding's nearest neighbour in a support set with the other view
    (Dwibedi et al., 2021, ICCV).

    Defaults follow the paper: ``byol`` augmentations; projector feature -> ``hidden_dim``
    2048 -> 2048 -> ``projection_dim`` 256 with BatchNorm on every layer (the last without
    affine parameters); predictor 256 -> ``predictor_hidden_dim`` 4096 -> 256; temperature
    0.1; support set = FIFO queue of the L2-normalised view-1 projections of past batches
    (paper: 98304). The loss is symmetric: ``InfoNCE(NN(z1), p2) / 2 + InfoNCE(NN(z2), p1) / 2``
    where ``NN(z)`` (no gradient) is the support-set row most similar to ``z`` and the
    candidates of each nearest neighbour are the other view's predictions in the batch (of
    all processes). Until the support set holds its first batch, ``NN(z) = z``.

    Support-set size when ``support_set_size`` is not given: ``min(98304, len(dataset))``,
    trimmed at ``supervise`` time to the largest multiple of the global batch. An explicit
    size must hold at least one global batch.
    Each view goes through the backbone and the heads on its own, as in the paper's code, so
    BatchNorm normalises each view with its own batch statistics.

    Heads as arguments: ``projector`` and ``predictor`` (None: the paper's, above) take modules
    of your own; the support set and the default predictor take the projector's width; each is
    trained, saved and restored like the built-in one (rebuild with ``from_checkpoint(name,
    projector=...)``; table in ``docs/methods.md``).
    """

    default_augment = "byol"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        temperature: float = 0.1,
        projection_dim: int = 256,
        hidden_dim: int = 2048,
        predictor_hidden_dim: int = 4096,
        support_set_size: Optional[int] = None,
        projector: Optional[nn.Module] = None,
        predictor: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        _joint.check_temperature(temperature)
        for name, value in (
            ("projection_dim", projection_dim),
            ("hidden_dim", hidden_dim),
            ("predictor_hidden_dim", predictor_hidden_dim),
        ):
            _joint.check_positive_int(value, name)
        if support_set_size is not None:
            _joint.check_positive_int(support_set_size, "support_set_size")
        super().__init__(dataset, backbone, **kwargs)
        self.projector = _heads.resolve(
            self,
            "projector",
            projector,
            lambda: MLPHead(
                [self.backbone.feature_dim, hidden_dim, hidden_dim, projection_dim], last_norm=True
            ),
        )
        if projector is not None:  # the predictor and the support set take its width
            projection_dim = _heads.output_dim(self.projector, self.backbone.feature_dim)
        self.predictor = _heads.resolve(
            self,
            "predictor",
            predictor,
            lambda: MLPHead([projection_dim, predictor_hidden_dim, projection_dim]),
            in_dim=projection_dim,
        )
        self.support_set = _joint.make_queue(
            _joint.initial_queue_size(
                support_set_size, SUPPORT_CAP, self.dataset, "support_set_size"
            ),
            projection_dim,
            auto=support_set_size is None,
        )
        self.criterion = InfoNCELoss(temperature)
        self._pending: Optional[torch.Tensor] = None
        self._record_hparams(support_set_size=self.support_set.size)

    def _on_fit_start(self, batch_size: int, **run: Any) -> None:
        self._record_hparams(
            support_set_size=_joint.fit_queue(
                self.support_set, batch_size, "support_set_size", multiple=False
            )
        )

    @torch.no_grad()
    def nearest_neighbour(self, z: torch.Tensor) -> torch.Tensor:
        """The support-set row with the highest cosine similarity to each row of ``z``."""
        z = F.normalize(z.detach().float(), dim=1)
        support = self.support_set.valid()
        if len(support) == 0:
            return z
        return support[(z @ support.t()).argmax(dim=1)]

    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)[:2]
        # One view at a time through every network (BatchNorm statistics per view).
        z1, z2 = [self.projector(self.backbone(v)) for v in views]
        p1, p2 = self.predictor(z1), self.predictor(z2)
        nn1, nn2 = self.nearest_neighbour(z1), self.nearest_neighbour(z2)
        self._pending = F.normalize(z1.detach().float(), dim=1)
        return (self.criterion(nn1, p2) + self.criterion(nn2, p1)) / 2

    def _update(self, loss: torch.Tensor) -> None:
        super()._update(loss)
        if self._pending is not None:
            self.support_set.push(self._pending)
            self._pending = None
