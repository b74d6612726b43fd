"""VICReg (Bardes, Ponce & LeCun, 2022, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from ..data import Batch
from ..heads import MLPHead
from ..losses import VICRegLoss
from ..supervisor import Supervisor
from . import _heads, _joint
from .registry import register


@register("vicreg")
class VICRegSupervisor(Supervisor):
    """Invariance between views, plus a variance hinge and a covariance penalty per branch
    (Bardes, Ponce & LeCun, 2022, ICLR).

    Defaults follow the paper: coefficients ``invariance`` 25, ``variance`` 25,
    ``covariance`` 1, ``gamma`` 1, ``eps`` 1e-4 (see :class:`~super_selfish.losses.VICRegLoss`);
    ``barlow`` (BYOL-style) augmentations; expander of 3 linear layers with BatchNorm + ReLU
    after the first two. The paper's expander is 8192 wide; the default here is 2048 for
    CPU/small-GPU runs (pass ``hidden_dim=8192, projection_dim=8192`` for the paper's).
    The three terms are logged as ``invariance``, ``variance`` and ``covariance``.
    Each view goes through the backbone and the heads on its own, as in the paper's code, so
    BatchNorm normalises each view with its own batch statistics.
    The recipe (``recipes.RECIPES["vicreg"]``) is the paper's LARS, rate and weight decay,
    with one difference: LARS adapts the rate of biases and normalisation weights too (the
    paper leaves them out), as lightly's VICReg does; the comparison is in ``docs/parity.md``.

    Heads as arguments: the expander: ``projector`` (None: the paper's, above) takes a module of
    your own mapping backbone features to the embeddings the loss scores; it is trained, saved
    and restored like the built-in one (rebuild with ``from_checkpoint(name, projector=...)``;
    table in ``docs/methods.md``).
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
        invariance: float = 25.0,
        variance: float = 25.0,
        covariance: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        projector: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        _joint.check_positive_int(projection_dim, "projection_dim")
        _joint.check_positive_int(hidden_dim, "hidden_dim")
        criterion = VICRegLoss(invariance, variance, covariance, gamma, eps)
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
        loss = self.criterion(z1, z2)
        self.log(**self.criterion.terms)
        return loss
