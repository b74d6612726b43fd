"""Barlow Twins (Zbontar et al., 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from ..data import Batch
from ..heads import MLPHead
from ..losses import BarlowTwinsLoss
from ..supervisor import Supervisor
from . import _heads, _joint
from .registry import register


@register("barlow")
class BarlowTwinsSupervisor(Supervisor):
    """Make the cross-correlation of the two views' embeddings close to the identity
    (Zbontar et al., 2021, ICML).

    Defaults: ``barlow`` augmentations (the BYOL recipe, as in the paper); projector of 3
    linear layers feature -> ``hidden_dim`` -> ``hidden_dim`` -> ``projection_dim`` with
    BatchNorm + ReLU after the first two; each embedding dimension is standardised over the
    batch (over all processes in distributed runs) before the cross-correlation; off-diagonal
    weight ``lambd`` 5e-3 (paper). The paper uses 8192-wide projector layers; the default here
    is 2048 so that CPU and small-GPU runs stay practical (pass ``hidden_dim=8192,
    projection_dim=8192`` for the paper's setting).
    Each view goes through the backbone and the heads on its own, as in the paper's code, so
    BatchNorm normalises each view with its own batch statistics.

    Heads as arguments: the projector: ``projector`` (None: the paper's, above) takes a module
    of your own mapping backbone features to the embeddings whose cross-correlation is scored;
    it is trained, saved and restored like the built-in one (rebuild with
    ``from_checkpoint(name, projector=...)``; table in ``docs/methods.md``).
    """

    default_augment = "barlow"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        projection_dim: int = 2048,
        hidden_dim: int = 2048,
        lambd: float = 5e-3,
        projector: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        _joint.check_positive_int(projection_dim, "projection_dim")
        _joint.check_positive_int(hidden_dim, "hidden_dim")
        criterion = BarlowTwinsLoss(lambd)
        super().__init__(dataset, backbone, **kwargs)
        self.projector = _heads.resolve(
            self,
            "projector",
            projector,
            lambda: MLPHead([self.backbone.feature_dim, hidden_dim, hidden_dim, projection_dim]),
            in_dim=self.backbone.feature_dim,
        )
        self.criterion = criterion

    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)[:2]
        # One view at a time through every network (BatchNorm statistics per view).
        z1, z2 = [self.projector(self.backbone(v)) for v in views]
        return self.criterion(z1, z2)
