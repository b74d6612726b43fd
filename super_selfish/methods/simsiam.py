"""SimSiam (Chen & He, 2021, "Exploring Simple Siamese Representation Learning")."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Batch
from ..heads import MLPHead
from ..losses import NegativeCosineLoss
from ..supervisor import Supervisor
from . import _heads, _joint
from .registry import register


@register("simsiam")
class SimSiamSupervisor(Supervisor):
    """Predict one view's projection from the other's, with a stop-gradient and no negatives
    (Chen & He, 2021, CVPR).

    Defaults follow the paper (ImageNet setting): ``simsiam`` augmentations; projector of
    ``projector_layers`` 3 linear layers feature -> ``hidden_dim`` 2048 -> 2048 ->
    ``projection_dim`` 2048, BatchNorm on every layer, the last one without affine
    parameters; bottleneck predictor 2048 -> ``predictor_hidden_dim`` 512 -> 2048; loss
    ``D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`` with ``D`` the negative cosine. The paper's
    CIFAR setting uses ``projector_layers=2``; for small backbones the widths may be scaled
    down (e.g. ``hidden_dim=projection_dim=512, predictor_hidden_dim=128``), keeping the
    4:1 predictor bottleneck.

    Every step logs ``output_std``: the per-dimension standard deviation of the
    L2-normalised projections, averaged over dimensions. It stays near
    ``1 / sqrt(projection_dim)`` while training is healthy and falls to 0 on collapse.
    Each view goes through the backbone and the heads on its own, as in the paper's code, so
    BatchNorm normalises each view with its own batch statistics.

    Heads as arguments: ``projector`` and ``predictor`` (None: the paper's, above) take modules
    of your own; the default predictor takes the projector's width; each is trained, saved and
    restored like the built-in one (rebuild with ``from_checkpoint(name, projector=...)``; table
    in ``docs/methods.md``).
    """

    default_augment = "simsiam"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        projection_dim: int = 2048,
        hidden_dim: int = 2048,
        predictor_hidden_dim: int = 512,
        projector_layers: int = 3,
        projector: Optional[nn.Module] = None,
        predictor: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        for name, value in (
            ("projection_dim", projection_dim),
            ("hidden_dim", hidden_dim),
            ("predictor_hidden_dim", predictor_hidden_dim),
            ("projector_layers", projector_layers),
        ):
            _joint.check_positive_int(value, name)
        super().__init__(dataset, backbone, **kwargs)
        dims = [self.backbone.feature_dim] + [hidden_dim] * (projector_layers - 1)
        self.projector = _heads.resolve(
            self, "projector", projector, lambda: MLPHead(dims + [projection_dim], last_norm=True)
        )
        if projector is not None:  # the predictor maps projections to projections
            projection_dim = _heads.output_dim(self.projector, self.backbone.feature_dim)
        self.predictor = _heads.resolve(
            self,
            "predictor",
            predictor,
            lambda: MLPHead([projection_dim, predictor_hidden_dim, projection_dim]),
            in_dim=projection_dim,
        )
        self.criterion = NegativeCosineLoss(mode="cosine", stop_gradient=True)

    def _forward(self, batch: Batch) -> torch.Tensor:
        views = self.augment_views(batch.images)[:2]
        # One view at a time through every network (BatchNorm statistics per view).
        z1, z2 = [self.projector(self.backbone(v)) for v in views]
        p1, p2 = self.predictor(z1), self.predictor(z2)
        self.log(output_std=F.normalize(z1.detach().float(), dim=1).std(dim=0).mean())
        return (self.criterion(p1, z2) + self.criterion(p2, z1)) / 2
