"""Tiny supervisors shared by tests that need a fast, exact method (no augmentation pipeline)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from super_selfish import Supervisor


class ToyRotation(Supervisor):
    """Predict which of 4 rotations was applied (no augmentation pipeline: fast, exact)."""

    default_augment = None
    method = "toy-rotation"

    def __init__(self, dataset=None, backbone="convnet-small", **kwargs):
        super().__init__(dataset, backbone, **kwargs)
        self.head = nn.Linear(self.backbone.feature_dim, 4)

    def _forward(self, batch):
        turns = batch.index % 4
        images = torch.stack([torch.rot90(x, int(k), dims=(1, 2))
                              for x, k in zip(batch.images, turns)])
        return F.cross_entropy(self.head(self.backbone(images)), turns)
