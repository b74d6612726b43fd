"""Helpers shared by the tests: tiny supervisors that need no augmentation pipeline (fast,
exact), subsets of the bundled CIFAR-10 sample and state snapshots."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from super_selfish import Supervisor, data


def sample_subset(n: int, split: str = "train", seed: int = 0) -> data.TensorImageDataset:
    """``n`` images of the bundled CIFAR-10 sample, drawn by a seeded permutation."""
    ds = data.materialize(data.dataset("cifar10-sample", split))
    return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n])


def write_images(folder, images, ext=".png"):
    """Write uint8 ``(N, C, H, W)`` images as ``0.png``, ``1.png``, ... into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}{ext}")


def snapshot(module: nn.Module) -> dict:
    """A detached copy of ``module``'s state dict."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class ToyRotation(Supervisor):
    """Predict which of 4 rotations was applied (no augmentation pipeline: fast, exact)."""

    default_augment = None
    method = "toy-rotation"

    def __init__(self, dataset=None, backbone="convnet-small", **kwargs):
        super().__init__(dataset, backbone, **kwargs)
        self.head = nn.Linear(self.backbone.feature_dim, 4)

    def _forward(self, batch):
        turns = batch.index % 4
        images = torch.stack(
            [torch.rot90(x, int(k), dims=(1, 2)) for x, k in zip(batch.images, turns)]
        )
        return F.cross_entropy(self.head(self.backbone(images)), turns)
