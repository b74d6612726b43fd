"""Data files bundled with super_selfish (found via ``importlib.resources``)."""

from __future__ import annotations

import io
from importlib import resources

import numpy as np

CIFAR10_SAMPLE = "cifar10_sample.npz"
_SPLITS = ("train", "test")
_CACHE: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}


def _decode(jpeg: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from PIL import Image

    images = np.empty((len(offsets) - 1, 32, 32, 3), dtype=np.uint8)
    for i in range(len(images)):
        blob = jpeg[offsets[i] : offsets[i + 1]].tobytes()
        with Image.open(io.BytesIO(blob)) as img:
            images[i] = np.asarray(img.convert("RGB"))
    return images


def load_cifar10_sample(split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load the bundled real CIFAR-10 sample (500 train / 100 test images per class).

    Args:
        split: ``"train"`` (5,000 images) or ``"test"`` (1,000 images).

    Returns:
        ``(images, labels, classes)``: uint8 array of shape ``(N, 32, 32, 3)``
        (RGB, HWC), int64 labels of shape ``(N,)`` and the 10 class names.
        Decoded arrays are cached per process; each call returns fresh copies,
        so callers may modify them.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got split={split!r}")
    if split not in _CACHE:
        ref = resources.files(__name__).joinpath(CIFAR10_SAMPLE)
        with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as data:
            images = _decode(data[f"{split}_jpeg"], data[f"{split}_offsets"])
            labels = data[f"{split}_labels"].astype(np.int64)
            classes = [str(c) for c in data["classes"]]
        _CACHE[split] = (images, labels, classes)
    images, labels, classes = _CACHE[split]
    return images.copy(), labels.copy(), list(classes)
