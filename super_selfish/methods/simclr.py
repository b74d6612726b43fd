"""SimCLR (Chen et al., 2020, "A Simple Framework for Contrastive Learning of Visual
Representations").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from .. import augment
from ..data import Batch
from ..heads import MLPHead
from ..losses import NTXentLoss
from ..supervisor import Supervisor
from . import _heads
from .registry import register


@register("simclr")
class SimCLRSupervisor(Supervisor):
    """Two augmented views per image, an MLP projector and the NT-Xent loss.

    Defaults follow the paper: ``simclr`` augmentations at the paper's setting for the
    resolution (up to 48 px, its CIFAR-10 setting: no blur and colour strength 0.5; larger
    images: blur with probability 0.5 and strength 1.0; ``color_strength`` overrides the
    strength), a 2-layer projector (feature -> ``hidden_dim`` 2048 -> ``projection_dim`` 128,
    BatchNorm), temperature 0.5 (the paper's CIFAR-10 setting; 0.1 for large batches on
    ImageNet).

    The projector is an argument: ``projector`` (None: the paper's, above) takes a module of
    your own mapping backbone features to the embeddings NT-Xent scores, e.g.
    ``SimCLRSupervisor(data, backbone=net, projector=my_head)``; it is trained, saved and
    restored like the built-in one (rebuild with ``from_checkpoint(name, projector=...)``; table
    in ``docs/methods.md``).
    """

    default_augment = "simclr"
    default_lr = 3e-4

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        temperature: float = 0.5,
        projection_dim: int = 128,
        hidden_dim: int = 2048,
        color_strength: Optional[float] = None,
        projector: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        self.color_strength = color_strength
        super().__init__(dataset, backbone, **kwargs)
        self.projector = _heads.resolve(
            self,
            "projector",
            projector,
            lambda: MLPHead([self.backbone.feature_dim, hidden_dim, projection_dim]),
            in_dim=self.backbone.feature_dim,
        )
        self.criterion = NTXentLoss(temperature)

    def _build_views(self, spec: Any) -> Any:
        """The ``simclr`` preset at ``color_strength`` when one is given."""
        if spec == "simclr" and self.color_strength is not None:
            return augment.build(spec, self.image_size, color_strength=self.color_strength)
        return super()._build_views(spec)

    def _forward(self, batch: Batch) -> torch.Tensor:
        view1, view2 = self.augment_views(batch.images)[:2]
        features = torch.cat(self.encode_views([view1, view2]))
        z1, z2 = self.projector(features).chunk(2)
        return self.criterion(z1, z2)
