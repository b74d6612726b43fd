"""Datasets from the ecosystem: Hugging Face ``datasets`` and torchvision datasets.

:func:`super_selfish.data.dataset` sends sources here. Neither library is imported unless the
source comes from it: a Hugging Face dataset is recognised by the module of its type, a
torchvision dataset by ``torchvision.datasets`` already being imported (the user made one).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np
import torch

from .data import NO_LABEL, ImageDataset, to_uint8_image
from .errors import DataError
from .extras import require

#: column names tried, in order, when a Hugging Face dataset has no Image / ClassLabel feature
IMAGE_COLUMN_NAMES = ("image", "img", "pixel_values", "images")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "class", "target")


def is_huggingface(source: Any) -> bool:
    """True for objects of the Hugging Face ``datasets`` library (without importing it).

    Args:
        source: any object.

    Returns:
        Whether its type is defined in the ``datasets`` package.
    """
    return type(source).__module__.split(".")[0] == "datasets"


def _is_array_feature(feature: Any, hf: Any) -> bool:
    """Array2D/Array3D features, or lists nested two or three deep (arrays stored as is)."""
    if isinstance(feature, (hf.Array2D, hf.Array3D)):
        return True
    depth = 0
    while hasattr(feature, "feature"):  # List / Sequence
        feature, depth = feature.feature, depth + 1
    return depth in (2, 3) and isinstance(feature, hf.Value)


def find_image_column(features: Any, hf: Any) -> str:
    """The column that holds the images: the first ``Image`` feature, else the first array
    feature, else a column with a usual name (:data:`IMAGE_COLUMN_NAMES`).

    Args:
        features: the dataset's ``features`` mapping.
        hf: the imported ``datasets`` module.

    Returns:
        The column name.

    Raises:
        DataError: no column qualifies; the message lists the columns.
    """
    for kind in (lambda f: isinstance(f, hf.Image), lambda f: _is_array_feature(f, hf)):
        for name, feature in features.items():
            if kind(feature):
                return name
    for name in IMAGE_COLUMN_NAMES:
        if name in features:
            return name
    raise DataError(
        f"Hugging Face dataset has no image column among {list(features)}: pass "
        "image_column='<name>' (a column of datasets.Image(), arrays or PIL "
        "images)."
    )


def find_label_column(features: Any, hf: Any, image_column: str) -> Optional[str]:
    """The label column: the first ``ClassLabel`` feature, else an integer column with a usual
    name (:data:`LABEL_COLUMN_NAMES`), else None (unlabelled).

    Args:
        features: the dataset's ``features`` mapping.
        hf: the imported ``datasets`` module.
        image_column: the image column, never taken as the label.

    Returns:
        The column name, or None.
    """
    for name, feature in features.items():
        if isinstance(feature, hf.ClassLabel):
            return name
    for name in LABEL_COLUMN_NAMES:
        feature = features.get(name)
        if name != image_column and isinstance(feature, hf.Value) and "int" in feature.dtype:
            return name
    return None


class HuggingFaceDataset(ImageDataset):
    """A Hugging Face ``datasets.Dataset`` as uint8 images and integer labels.

    Args:
        source: a ``datasets.Dataset``, or a ``DatasetDict`` from which ``split`` is taken.
        split: the split of a ``DatasetDict``.
        image_column: default: found by type (:func:`find_image_column`).
        label_column: default: found by type (:func:`find_label_column`); unlabelled without.
            Integer or string labels (strings are numbered in sorted order).
        size: side every image is resized to; None keeps each image's size.
        channels: channels to deliver (see :func:`super_selfish.data.to_uint8_image`).
        resize: ``"squash"`` or ``"crop"``.

    Rows are read (and images decoded) one at a time in the loader's worker processes; only
    the two columns are read.

    Raises:
        MissingExtraError: the ``datasets`` package is not installed.
        DataError: an unknown split or column, a streaming or unsupported object, an empty
            dataset, or labels that are neither integers nor strings.
    """

    def __init__(
        self,
        source: Any,
        split: str = "train",
        *,
        image_column: Optional[str] = None,
        label_column: Optional[str] = None,
        size: Optional[int] = None,
        channels: int = 3,
        resize: str = "squash",
    ):
        hf = require("datasets", "hf", "A Hugging Face dataset")
        if isinstance(source, hf.DatasetDict):
            if split not in source:
                raise DataError(
                    f"Invalid split={split!r} for this Hugging Face DatasetDict: "
                    f"expected one of {list(source)}."
                )
            source = source[split]
        if isinstance(source, hf.IterableDataset):
            raise DataError(
                "Hugging Face IterableDataset (streaming=True) is not supported: "
                "load it without streaming, or write it to WebDataset .tar shards, "
                "which super_selfish streams."
            )
        if not isinstance(source, hf.Dataset):
            raise DataError(
                f"Hugging Face object of type {type(source).__name__} is not "
                "supported: pass a datasets.Dataset or DatasetDict."
            )
        if len(source) == 0:
            raise DataError("dataset is empty: pass a dataset with at least one image.")
        features = source.features
        for argument, column in (("image_column", image_column), ("label_column", label_column)):
            if column is not None and column not in features:
                raise DataError(
                    f"Invalid {argument}={column!r}: expected one of the dataset's "
                    f"columns {list(features)}."
                )
        self.image_column = image_column or find_image_column(features, hf)
        self.label_column = (
            label_column
            if label_column is not None
            else find_label_column(features, hf, self.image_column)
        )
        columns = [self.image_column] + ([self.label_column] if self.label_column else [])
        source = source.select_columns(columns)
        if not isinstance(features[self.image_column], hf.Image):
            source = source.with_format("numpy")  # arrays as arrays, not nested lists
        self.table = source  # .source names where an ImageDataset comes from
        self.size, self.channels, self.resize = size, channels, resize
        self.classes: list[str] = []
        self._label_ids: Optional[dict] = None
        if self.label_column is not None:
            feature = features[self.label_column]
            if isinstance(feature, hf.ClassLabel):
                self.classes = list(feature.names)
            elif isinstance(feature, hf.Value) and feature.dtype == "string":
                self.classes = sorted(source.unique(self.label_column))
                self._label_ids = {name: i for i, name in enumerate(self.classes)}
            elif not (isinstance(feature, hf.Value) and "int" in feature.dtype):
                raise DataError(
                    f"label_column={self.label_column!r} holds {feature}: expected "
                    "integer or string labels (or a ClassLabel)."
                )

    @property
    def has_labels(self) -> bool:
        """Whether a label column was given or found."""
        return self.label_column is not None

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.table[int(index)]
        image = row[self.image_column]
        if isinstance(image, list):
            image = np.asarray(image)
        label = NO_LABEL
        if self.label_column is not None:
            value = row[self.label_column]
            label = self._label_ids[value] if self._label_ids is not None else int(value)
        return to_uint8_image(image, self.size, self.channels, self.resize), label


def torchvision_arrays(source: Any) -> Optional[tuple[Any, Any, list[str]]]:
    """(images, labels or None, classes) of a torchvision dataset that keeps every image in
    memory (CIFAR, MNIST, SVHN, STL-10, ...) and has no transform, else None.

    Such datasets hold their images in ``data``; reading it at once is exact and spares a
    round trip through PIL per image. Datasets with a transform go item by item instead.

    Args:
        source: any object; only a ``torchvision.datasets.VisionDataset`` can qualify.

    Returns:
        ``(images, labels or None, class names)`` or None.
    """
    tvd = sys.modules.get("torchvision.datasets")
    if tvd is None or not isinstance(source, tvd.VisionDataset):
        return None
    if getattr(source, "transforms", None) is not None:
        return None
    images = getattr(source, "data", None)
    if not isinstance(images, (np.ndarray, torch.Tensor)) or len(images) != len(source):
        return None
    labels = next(
        (
            getattr(source, name)
            for name in ("targets", "labels")
            if getattr(source, name, None) is not None
        ),
        None,
    )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(source),) or not np.issubdtype(labels.dtype, np.integer):
            labels = None
    return images, labels, list(getattr(source, "classes", []) or [])
