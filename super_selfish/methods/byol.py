"""BYOL (Grill et al., 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised
Learning").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from ..data import Batch
from ..heads import MLPHead
from ..losses import NegativeCosineLoss
from . import _heads, _joint
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
    Each view goes through the backbone and the heads on its own, as in the paper's code, so
    BatchNorm normalises each view with its own batch statistics.

    ``get_backbone()`` returns the online backbone: the paper evaluates and releases the
    online encoder (the target network only supplies regression targets, and its weights
    lag behind); ``get_backbone("momentum")`` (or ``"target"``) returns the target network's
    (``momentum_backbone``, moved by :class:`~super_selfish.methods._momentum.MomentumSupervisor`).

    Heads as arguments: ``projector`` and ``predictor`` (None: the paper's, above) take modules
    of your own; the target network copies the projector, and the default predictor takes the
    projector's width; each is trained, saved and restored like the built-in one (rebuild with
    ``from_checkpoint(name, projector=...)``; table in ``docs/methods.md``).
    """

    default_augment = "byol"
    backbone_roles = {
        "online": "backbone",
        "momentum": "momentum_backbone",
        "target": "momentum_backbone",
    }
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        projection_dim: int = 256,
        hidden_dim: int = 4096,
        momentum: float = 0.996,
        momentum_schedule: str = "cosine",
        projector: Optional[nn.Module] = None,
        predictor: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        _joint.check_positive_int(projection_dim, "projection_dim")
        _joint.check_positive_int(hidden_dim, "hidden_dim")
        super().__init__(
            dataset, backbone, momentum=momentum, momentum_schedule=momentum_schedule, **kwargs
        )
        self.projector = _heads.resolve(
            self,
            "projector",
            projector,
            lambda: MLPHead([self.backbone.feature_dim, hidden_dim, projection_dim]),
        )
        if projector is not None:  # the predictor maps projections to projections
            projection_dim = _heads.output_dim(self.projector, self.backbone.feature_dim)
        self.predictor = _heads.resolve(
            self,
            "predictor",
            predictor,
            lambda: MLPHead([projection_dim, hidden_dim, projection_dim]),
            in_dim=projection_dim,
        )
        self.add_momentum_copies("backbone", "projector")
        self.criterion = NegativeCosineLoss(mode="squared")

    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)[:2]
        # One view at a time through every network (BatchNorm statistics per view).
        p1, p2 = [self.predictor(self.projector(self.backbone(v))) for v in views]
        with torch.no_grad():
            z1, z2 = [self.momentum_projector(self.momentum_backbone(v)) for v in views]
        return self.criterion(p1, z2) + self.criterion(p2, z1)
