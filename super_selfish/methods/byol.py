"""BYOL (Grill et al., 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning")."""
from __future__ import annotations

from typing import Any

import torch

from ..data import Batch
from ..heads import MLPHead
from ..losses import NegativeCosineLoss
from . import _joint
from ._momentum import MomentumSupervisor
from .registry import register


@register("byol")
class BYOLSupervisor(MomentumSupervisor):
    """An online network predicts the projection of the other view made by a target network
    (Grill et al., 2020, NeurIPS).

    Defaults follow the paper: asymmetric ``byol`` augmentations (blur always on view 1,
    rarely on view 2; solarisation only on view 2); projector feature -> ``hidden_dim`` 4096
    -> ``projection_dim`` 256 and predictor 256 -> 4096 -> 256 (BatchNorm + ReLU in the
    hidden layer); target network = EMA copy of backbone and projector with ``momentum``
    rising from 0.996 to 1 along a cosine over all training steps; symmetric loss
    ``(2 - 2 cos(p1, sg(z2'))) + (2 - 2 cos(p2, sg(z1')))``.
    ``default_lr`` is 3e-4 (better than 1e-3 in ``benchmarks/methods_knn.py``, see the README).

    ``get_backbone()`` returns the online backbone: the paper evaluates and releases the
    online encoder (the target network only supplies regression targets, and its weights
    lag behind); ``get_backbone("momentum")`` (or ``"target"``) returns the target network's
    (``momentum_backbone``; the EMA step is :class:`~super_selfish.methods._momentum.MomentumSupervisor`'s).
    """

    default_augment = "byol"
    backbone_roles = {"online": "backbone", "momentum": "momentum_backbone",
                      "target": "momentum_backbone"}
    default_lr = 3e-4

    def __init__(self, dataset: Any = None, backbone: Any = "convnet-small", *,
                 projection_dim: int = 256, hidden_dim: int = 4096, momentum: float = 0.996,
                 momentum_schedule: str = "cosine", **kwargs: Any):
        _joint.check_positive_int(projection_dim, "projection_dim")
        _joint.check_positive_int(hidden_dim, "hidden_dim")
        super().__init__(dataset, backbone, momentum=momentum,
                         momentum_schedule=momentum_schedule, **kwargs)
        self.projector = MLPHead([self.backbone.feature_dim, hidden_dim, projection_dim])
        self.predictor = MLPHead([projection_dim, hidden_dim, projection_dim])
        self.add_momentum_copies("backbone", "projector")
        self.criterion = NegativeCosineLoss(mode="squared")

    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)[:2]
        p1, p2 = self.predictor(self.projector(torch.cat(self.encode_views(views)))).chunk(2)
        with torch.no_grad():
            targets = torch.cat(self.encode_views(views, self.momentum_backbone))
            z1, z2 = self.momentum_projector(targets).chunk(2)
        return self.criterion(p1, z2) + self.criterion(p2, z1)
