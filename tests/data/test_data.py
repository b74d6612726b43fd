"""Datasets: the bundled CIFAR-10 sample and the conversion of arrays and tensors."""
from __future__ import annotations

import torch

from super_selfish import data


def test_sample_dataset_is_real_and_labelled():
    train, test = data.dataset("cifar10-sample", "train"), data.dataset("cifar10-sample", "test")
    assert (len(train), len(test)) == (5000, 1000)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [500] * 10
    assert train.classes[0] == "airplane" and train.images.float().std() > 40


def test_dataset_inputs_are_converted():
    arr = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8).numpy()
    ds = data.dataset(arr)
    assert ds.images.shape == (5, 3, 16, 16) and not ds.has_labels
    gray_float = torch.rand(4, 1, 10, 10)
    ds = data.dataset((gray_float, torch.arange(4)), size=12)
    assert ds.images.shape == (4, 3, 12, 12) and ds.has_labels
    assert torch.equal(ds.images[:, 0], ds.images[:, 1])
