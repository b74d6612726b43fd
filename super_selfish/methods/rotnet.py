"""RotNet (Gidaris, Singh & Komodakis, 2018, "Unsupervised Representation Learning by
Predicting Image Rotations").
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import Batch
from ..heads import MLPHead
from ..supervisor import Supervisor
from . import _heads
from .registry import register

N_ROTATIONS = 4


def rotate_batch(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image: ``(4N, C, H, W)`` and labels ``(4N,)``.

    Label ``k`` means the image was turned by ``k * 90`` degrees counter-clockwise
    (``torch.rot90(image, k, dims=(-2, -1))``); ``torch.rot90(rotated, -k, dims=(-2, -1))``
    undoes it. Rotation ``k`` of image ``i`` is row ``k * N + i``. Images must be square.
    """
    rotated = torch.cat([torch.rot90(images, k, dims=(-2, -1)) for k in range(N_ROTATIONS)])
    labels = torch.arange(N_ROTATIONS, device=images.device).repeat_interleave(len(images))
    return rotated, labels


def _classifier_dims(feature_dim: int, hidden_dim: Optional[int], n_classes: int) -> list:
    return [feature_dim, hidden_dim, n_classes] if hidden_dim else [feature_dim, n_classes]


@register("rotnet")
class RotateNetSupervisor(Supervisor):
    """Predict which of 0, 90, 180 or 270 degrees an image was rotated by.

    Every image of the batch is shown in all four rotations (4N backbone inputs, as in the
    paper, whose batches hold the four rotated copies of each image) and a classifier on the
    pooled features is trained with cross entropy over the 4 classes. The views come from the
    light ``rotation`` preset (resize only: the method rotates the batch itself; pass
    ``augment="none"`` or a list of ops such as ``["hflip"]`` for others, never rotations).

    Args:
        hidden_dim: width of the classifier's hidden layer (BatchNorm + ReLU);
            ``None``/``0`` for a linear classifier. Default 1024.

    Heads as arguments: the classifier: ``predictor`` (None: the paper's, above) takes a module
    of your own mapping backbone features to 4 logits, e.g. ``RotateNetSupervisor(data,
    backbone=net, predictor=my_head)`` as in the original Super-Selfish; it is trained, saved
    and restored like the built-in one (rebuild with ``from_checkpoint(name, predictor=...)``;
    table in ``docs/methods.md``).
    """

    default_augment = "rotation"

    def __init__(
        self,
        dataset: Any = None,
        backbone: Any = "convnet-small",
        *,
        hidden_dim: Optional[int] = 1024,
        predictor: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        super().__init__(dataset, backbone, **kwargs)
        self.classifier = _heads.resolve(
            self,
            "predictor",
            predictor,
            lambda: MLPHead(_classifier_dims(self.backbone.feature_dim, hidden_dim, N_ROTATIONS)),
        )
        if predictor is not None:
            _heads.check_width(
                "predictor",
                self.classifier,
                self.backbone.feature_dim,
                N_ROTATIONS,
                "one logit per rotation",
            )

    def _forward(self, batch: Batch) -> torch.Tensor:
        images = self.augment_views(batch.images)[0]
        rotated, labels = rotate_batch(images)
        logits = self.classifier(self.backbone(rotated))
        self.log(accuracy=(logits.detach().argmax(1) == labels).float().mean())
        return F.cross_entropy(logits, labels)
