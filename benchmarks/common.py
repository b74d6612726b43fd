"""Helpers shared by the benchmarks: the real CIFAR-10 and Imagenette from ../shared, extracted
once.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import torch

from super_selfish import data

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = Path(os.environ.get("SUPER_SELFISH_CACHE", Path.home() / ".cache" / "super_selfish"))


def extracted(archive: str) -> Path:
    """Extract ``../shared/data/<archive>`` once into the cache and return its folder."""
    target = CACHE / archive.split(".")[0]
    if not (target / ".done").exists():
        source = SHARED / archive
        if not source.exists():
            raise SystemExit(f"{source} not found: the benchmarks need ../shared/data.")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source) as tar:
            tar.extractall(target, filter="data")
        (target / ".done").touch()
    return target


def cifar10(split: str, n: int, seed: int = 0) -> data.TensorImageDataset:
    """``n`` random real CIFAR-10 images of ``split`` (class-mixed), loaded into memory."""
    cache = CACHE / f"cifar10_{split}_{n}_{seed}.pt"
    if cache.exists():
        images, labels = torch.load(cache, weights_only=True)
        return data.TensorImageDataset(images, labels)
    ds = data.dataset(str(extracted("cifar10-jpg.tar.gz") / split))
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    full = data.materialize(data.ConvertedDataset(torch.utils.data.Subset(ds, order.tolist())))
    torch.save((full.images, full.labels), cache)
    return full


def imagenette(split: str, n: int, size: int, seed: int = 0) -> data.TensorImageDataset:
    """``n`` random Imagenette images of ``split`` (``train`` or ``val``, class-mixed), resized
    to ``size`` px and loaded into memory (cached).
    """
    cache = CACHE / f"imagenette_{split}_{n}_{size}_{seed}.pt"
    if cache.exists():
        images, labels = torch.load(cache, weights_only=True)
        return data.TensorImageDataset(images, labels)
    ds = data.dataset(str(extracted("imagenette-128-jpg.tar.gz") / split), size=size)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    full = data.materialize(data.ConvertedDataset(torch.utils.data.Subset(ds, order.tolist())))
    torch.save((full.images, full.labels), cache)
    return full
