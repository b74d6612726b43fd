"""Evaluation protocols for frozen or fine-tuned backbones.

Every protocol puts a frozen backbone in eval mode, computes features under ``no_grad`` and
never trains on test data. Datasets are anything :func:`super_selfish.data.dataset` accepts;
images are fed at their stored size (resize with ``data.dataset(..., size=N)``).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data
from .errors import DataError, check


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset: Any, batch_size: int = 512,
                     device: Optional[torch.device | str] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of a whole dataset with the backbone in eval mode.

    The backbone's train/eval mode is restored afterwards, so BN statistics never change.
    """
    ds = data.materialize(data.dataset(dataset))
    device = device or next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    try:
        feats = [backbone(ds.images[i:i + batch_size].to(device)).float().cpu()
                 for i in range(0, len(ds), batch_size)]
    finally:
        backbone.train(was_training)
    return torch.cat(feats), ds.labels.clone()


def _labelled(labels: torch.Tensor, argument: str) -> None:
    if (labels < 0).any():
        raise DataError(f"{argument} has unlabeled images: evaluation needs a label for "
                        "every image.")


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor,
                test_features: torch.Tensor, k: int = 200, temperature: float = 0.1,
                n_classes: Optional[int] = None, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN on L2-normalised features (Wu et al., 2018): each of the ``k`` nearest
    training samples votes for its class with weight exp(cosine similarity / temperature)."""
    check(isinstance(k, int) and k > 0, "k", k, "a positive int")
    check(temperature > 0, "temperature", temperature, "a positive number")
    n_classes = n_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    train = F.normalize(train_features, dim=1)
    preds = []
    for start in range(0, len(test_features), chunk):
        sims = F.normalize(test_features[start:start + chunk], dim=1) @ train.t()
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(sims), n_classes)
        votes.scatter_add_(1, train_labels[top_idx], (top_sims / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(backbone: nn.Module, train_dataset: Any, test_dataset: Any, k: int = 200,
                 temperature: float = 0.1, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] of weighted kNN (k, temperature) on frozen features:
    the training set is the memory, the test set is classified."""
    train_x, train_y = extract_features(backbone, train_dataset, batch_size)
    test_x, test_y = extract_features(backbone, test_dataset, batch_size)
    _labelled(train_y, "train_dataset")
    _labelled(test_y, "test_dataset")
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    pred = knn_predict(train_x, train_y, test_x, k, temperature, n_classes)
    return float((pred == test_y).float().mean())


def train_linear(features: torch.Tensor, labels: torch.Tensor, n_classes: int,
                 epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
                 batch_size: int = 256, seed: int = 0) -> nn.Linear:
    """Logistic regression on precomputed, standardised features (Adam, full passes)."""
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(features.shape[1], n_classes)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(features), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(head(features[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head


def linear_probe(backbone: nn.Module, train_dataset: Any, test_dataset: Any,
                 epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
                 batch_size: int = 512) -> float:
    """Top-1 test accuracy in [0, 1] of a linear classifier trained on frozen features.

    Features are computed once with the backbone in eval mode (no gradient reaches it, its BN
    statistics do not change) and standardised with the training set's mean and std only.
    """
    train_x, train_y = extract_features(backbone, train_dataset, batch_size)
    test_x, test_y = extract_features(backbone, test_dataset, batch_size)
    _labelled(train_y, "train_dataset")
    _labelled(test_y, "test_dataset")
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    head = train_linear((train_x - mean) / std, train_y, n_classes, epochs, lr, weight_decay)
    with torch.no_grad():
        pred = head((test_x - mean) / std).argmax(1)
    return float((pred == test_y).float().mean())
