"""Datasets and loaders: everything becomes uint8 image batches (N, C, H, W) of one size.

Views are made later, on the training device, by :mod:`super_selfish.augment`; the loader only
decodes and stacks. :func:`dataset` accepts a torch ``Dataset`` (PIL, uint8 or float images,
with or without labels), a NumPy array or tensor (optionally ``(images, labels)``), a folder
(ImageFolder layout or flat), a Hugging Face ``datasets.Dataset`` and torchvision datasets
(:mod:`super_selfish.sources`), WebDataset shards, streamed (:mod:`super_selfish.shards`), or a
name: ``cifar10``, ``cifar100``, ``stl10`` (torchvision) and ``cifar10-sample`` (a real
CIFAR-10 sample bundled with the package, works offline). Images have 3 channels (RGB) unless
``channels`` asks for the backbone's ``in_channels`` (1, 4, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from . import console, validate
from .augment.core import LUMA
from .augment.core import resize as _resize
from .errors import DataError, check, unknown_name

RESIZE_MODES = ("squash", "crop")
DECODE_MODES = ("cpu", "device")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
NO_LABEL = -1
_TORCHVISION = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "stl10": "STL10"}
NAMES = ("cifar10-sample", *_TORCHVISION)


class Batch(NamedTuple):
    """What the training step receives: uint8 images, labels (-1 when unknown), dataset indices."""

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with its three tensors moved to ``device`` (non-blocking copies)."""
        return Batch(*(t.to(device, non_blocking=True) for t in self))


class ImageDataset(Dataset):
    """A dataset of uint8 (C, H, W) image tensors with integer labels (-1 when unlabeled).

    ``channels`` is C: 3 (RGB) unless the dataset was made for another ``in_channels``.
    ``source`` and ``split`` say where the images come from, so a checkpoint can name the
    data its run was trained on (see :func:`provenance`): a registered name such as
    ``"cifar10-sample"``, an absolute folder path or a shard pattern, and the split; both
    ``None`` for in-memory arrays, tensors, user Datasets and subsets.
    """

    classes: list[str] = []
    channels: int = 3
    source: Optional[str] = None
    split: Optional[str] = None

    @property
    def has_labels(self) -> bool:
        """Whether every image carries a class label (subclasses answer)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError


class TensorImageDataset(ImageDataset):
    """All images in memory as one uint8 tensor: batches are slices, no per-sample work.

    Args:
        images: uint8 images (N, C, H, W).
        labels: one integer label per image; None marks every image unlabelled (-1).
        classes: the class names, indexed by label.

    Raises:
        DataError: ``labels`` and ``images`` differ in length.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        classes: Sequence[str] = (),
    ):
        self.images = images
        self.labels = (
            torch.as_tensor(labels, dtype=torch.long)
            if labels is not None
            else torch.full((len(images),), NO_LABEL, dtype=torch.long)
        )
        if len(self.labels) != len(self.images):
            raise DataError(
                f"Got {len(self.images)} images but {len(self.labels)} labels: "
                "pass one label per image."
            )
        self.classes = list(classes)

    @property
    def has_labels(self) -> bool:
        """True when the dataset is non-empty and no label is -1."""
        return bool(len(self.labels)) and bool((self.labels != NO_LABEL).all())

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The (C, H, W) shape shared by all images."""
        return tuple(self.images.shape[1:])

    @property
    def channels(self) -> int:  # type: ignore[override]
        """Channels per image, read from the stored tensor."""
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: torch.Tensor) -> TensorImageDataset:
        """A new in-memory dataset holding the images and labels at ``indices``.

        Args:
            indices: integer (or boolean mask) index tensor into this dataset.

        Returns:
            A :class:`TensorImageDataset` with the same class names.
        """
        return TensorImageDataset(self.images[indices], self.labels[indices], self.classes)


class ConvertedDataset(ImageDataset):
    """Wraps any dataset and converts each item to a uint8 (``channels``, H, W) tensor and a
    label; ``size`` and ``resize`` as in :func:`to_uint8_image`.

    An item may be an image or an ``(image, label, ...)`` tuple; whether the dataset is
    labelled is decided from its first item.

    Args:
        source: the dataset to wrap (any object with ``__len__`` and ``__getitem__``).
        size: side to resize each image to; None keeps each image's size.
        channels: channels to deliver (see :func:`to_uint8_image`).
        resize: ``"squash"`` or ``"crop"``.

    Raises:
        DataError: ``source`` is empty.
    """

    def __init__(
        self, source: Dataset, size: Optional[int] = None, channels: int = 3, resize: str = "squash"
    ):
        self.wrapped = source  # not .source: that names where an ImageDataset comes from
        self.size, self.channels, self.resize = size, channels, resize
        self.classes = list(getattr(source, "classes", []) or [])
        if len(source) == 0:
            raise DataError("dataset is empty: pass a dataset with at least one image.")
        _, first_label = self._convert(source[0])
        self._labelled = first_label != NO_LABEL

    @property
    def has_labels(self) -> bool:
        """Whether the wrapped dataset's first item came with an integer label."""
        return self._labelled

    def __len__(self) -> int:
        return len(self.wrapped)

    def _convert(self, item: Any) -> tuple[torch.Tensor, int]:
        label = NO_LABEL
        if isinstance(item, (tuple, list)):
            if len(item) >= 2 and _is_label(item[1]):
                label = int(item[1])
            item = item[0]
        return to_uint8_image(item, self.size, self.channels, self.resize), label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._convert(self.wrapped[index])


class FolderDataset(ImageDataset):
    """Images from a folder: ImageFolder layout (one sub-folder per class) or a flat folder
    of images (unlabelled). Hidden entries (``.ipynb_checkpoints``, ``.DS_Store``) and
    ``__MACOSX`` are ignored.

    Every file is checked when the dataset is built, without decoding the pixels (see
    :func:`image_problem`): a file that cannot be read raises :class:`DataError` naming it,
    or, with ``skip_bad_images=True``, is left out with a warning. Each image is decoded when
    it is read, in the loader's worker processes; ``size``, ``channels`` and ``resize`` as in
    :func:`to_uint8_image`. With ``decode="device"`` the loader hands JPEG files over
    undecoded and they are decoded in batches on the training device
    (:mod:`super_selfish.decode`; other formats are still decoded in the workers).

    Args:
        root: the folder to read.
        size: side to resize each image to; None keeps each image's size.
        channels: channels to deliver (3 RGB, 1 grayscale, ...).
        resize: ``"squash"`` or ``"crop"``.
        decode: ``"cpu"`` or ``"device"``.
        skip_bad_images: leave unreadable files out (with a warning) instead of raising.

    Raises:
        DataError: the folder holds no image, or an unreadable one without
            ``skip_bad_images``, or no readable image at all.
        ConfigError: ``decode`` is not one of :data:`DECODE_MODES`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: Optional[int] = None,
        channels: int = 3,
        resize: str = "squash",
        decode: str = "cpu",
        *,
        skip_bad_images: bool = False,
    ):
        check(decode in DECODE_MODES, "decode", decode, f"one of {DECODE_MODES}")
        root = Path(root)
        subdirs = _visible_subfolders(root)
        self.root = root
        self.size, self.channels, self.resize, self.decode = size, channels, resize, decode
        if subdirs:
            self.classes = [d.name for d in subdirs]
            self.samples = [(f, c) for c, d in enumerate(subdirs) for f in _image_files(d)]
            loose = [
                f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            ]
            if loose:
                console.warn(
                    f"{len(loose)} image(s) directly in {str(root)!r} (e.g. "
                    f"{loose[0].name}) are in no class sub-folder and are left out; "
                    f"classes: {', '.join(self.classes[:8])}"
                    f"{', ...' if len(self.classes) > 8 else ''}."
                )
        else:
            self.classes = []
            self.samples = [(f, NO_LABEL) for f in _image_files(root)]
        if not self.samples:
            raise DataError(
                f"dataset folder {str(root)!r} contains no images with extensions "
                f"{', '.join(IMAGE_EXTENSIONS)}."
            )
        self._check_files(skip_bad_images)

    def _check_files(self, skip_bad_images: bool) -> None:
        bad = [
            (path, problem)
            for path, _ in self.samples
            if (problem := image_problem(path)) is not None
        ]
        if not bad:
            return
        listed = "; ".join(f"{str(p)!r} ({why})" for p, why in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        if not skip_bad_images:
            raise DataError(
                f"{len(bad)} of {len(self.samples)} images in {str(self.root)!r} "
                f"cannot be read: {listed}{more}. Remove or replace them, or "
                "pass skip_bad_images=True (data.dataset(path, "
                "skip_bad_images=True); CLI --skip-bad-images) to leave them out."
            )
        console.warn(
            f"left out {len(bad)} of {len(self.samples)} images in "
            f"{str(self.root)!r} that cannot be read (skip_bad_images=True): "
            f"{listed}{more}."
        )
        unreadable = {p for p, _ in bad}
        self.samples = [(p, c) for p, c in self.samples if p not in unreadable]
        if not self.samples:
            raise DataError(f"no image in {str(self.root)!r} can be read.")

    @property
    def has_labels(self) -> bool:
        """True for the ImageFolder layout (class sub-folders), False for a flat folder."""
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            with Image.open(path) as img:
                return to_uint8_image(img, self.size, self.channels, self.resize), label
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's decoding errors
            raise DataError(
                f"image {str(path)!r} cannot be decoded ({type(exc).__name__}: "
                f"{exc}): remove or replace the file."
            ) from exc

    def encoded(self, index: int) -> tuple[Any, int]:
        """The item for on-device decoding: a JPEG file's bytes, or the decoded image.

        Args:
            index: position of the sample in the dataset.

        Returns:
            ``(image, label)``: an :class:`~super_selfish.decode.EncodedImage` for a JPEG file
            delivered with 1 or 3 channels, else the decoded uint8 tensor as ``self[index]``.
        """
        path, label = self.samples[index]
        if path.suffix.lower() in (".jpg", ".jpeg") and self.channels in (1, 3):
            from .decode import EncodedImage

            data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
            return EncodedImage(data, self.size, self.channels, self.resize), label
        return self[index]


def image_problem(path: str | os.PathLike) -> Optional[str]:
    """Why an image file cannot be used, or None; cheap enough for every file of a folder.

    No pixels are decoded for a sound file. A JPEG must start with its start-of-image marker
    and end with its end-of-image marker (a truncated download does not); any other format
    must open as an image (PIL reads its header) and pass ``Image.verify()`` (for PNG: the
    CRC-32 of every chunk). A file failing the JPEG markers is then decoded in full, so a
    JPEG with extra bytes after its marker still passes. Damage inside image data that
    decodes without error is not detected; a file that fails to decode during training
    raises :class:`DataError` naming it.

    Args:
        path: the image file to check.

    Returns:
        None for a usable file, else a short reason (exception type and message).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(3)
            handle.seek(-2, os.SEEK_END)
            tail = handle.read(2)
    except OSError as exc:  # unreadable, or shorter than two bytes
        return f"{type(exc).__name__}: {exc}"
    if head == b"\xff\xd8\xff" and tail == b"\xff\xd9":
        return None
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.load()  # markers missing: decode to tell a truncated file from extra bytes
            else:
                img.verify()
    except Exception as exc:  # UnidentifiedImageError, OSError, SyntaxError, struct.error...
        return f"{type(exc).__name__}: {exc}"
    return None


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__MACOSX"


def _visible_subfolders(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not _hidden(d))


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, following links), hidden entries skipped."""
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not _hidden(Path(d))]
        found.extend(
            Path(current, f)
            for f in filenames
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(found)


#: Sub-folder names that make a folder a dataset root with splits, by split.
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


def _split_of(name: str) -> Optional[str]:
    return next((split for split, names in SPLIT_FOLDERS.items() if name.lower() in names), None)


def _folder_dataset(
    root: Path, split: str, size: Optional[int], skip_bad_images: bool, **options: Any
) -> FolderDataset:
    """A folder, or the ``split`` sub-folder of a dataset root holding train/val/test ones."""
    subdirs = _visible_subfolders(root)
    splits: dict = {}
    for d in subdirs:
        if _split_of(d.name) is not None:
            splits.setdefault(_split_of(d.name), d)
    if not splits:
        if split != "train":
            _note_once(
                f"nosplit:{root}:{split}",
                f"{str(root)!r} has no train/val/test sub-folders: split={split!r} "
                "has no meaning for it and all its images are used.",
            )
        return _remember(
            FolderDataset(root, size, skip_bad_images=skip_bad_images, **options),
            str(root.absolute()),
            None,
        )
    wanted = _split_of(split)
    check(
        wanted is not None,
        "split",
        split,
        f"one of {sorted(splits)} for the dataset root {str(root)!r}",
    )
    chosen = splits.get(wanted)
    note = ""
    if chosen is None and wanted == "test" and "val" in splits:
        chosen, note = splits["val"], " (it has no test/ folder: val/ serves as the test split)"
    if chosen is None:
        raise DataError(
            f"dataset root {str(root)!r} has the splits "
            f"{', '.join(d.name + '/' for d in splits.values())} but none for "
            f"split={split!r}: pass one of {sorted(splits)}."
        )
    others = [d.name for d in subdirs if _split_of(d.name) is None]
    ignored = f"; other sub-folders ignored: {', '.join(others)}" if others else ""
    _note_once(
        f"split:{root}:{split}",
        f"{str(root)!r} holds the splits {', '.join(d.name for d in splits.values())}:"
        f" using {chosen.name}/ for split={split!r}{note}{ignored}.",
    )
    return _remember(
        FolderDataset(chosen, size, skip_bad_images=skip_bad_images, **options),
        str(root.absolute()),
        _split_of(chosen.name),
    )


def _is_label(value: Any) -> bool:
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point()


_NOTED = console.NOTED  # conversions are noted once per process, not once per image
_note_once = console.note_once


def to_uint8_image(
    image: Any, size: Optional[int] = None, channels: int = 3, resize: str = "squash"
) -> torch.Tensor:
    """Convert one PIL image, array or tensor to a uint8 (``channels``, H, W) tensor.

    Args:
        image: a PIL image, or an array/tensor (H, W), (H, W, C) or (C, H, W).
        size: resize to ``size`` x ``size`` when given.
        channels: 3 (RGB), 1 (grayscale) or the image's own channel count (e.g. 4 for RGB +
            near-infrared). Grayscale becomes RGB by repetition, RGB becomes grayscale by its
            luma, an alpha channel is dropped, each with a one-time note.
        resize: ``"squash"`` scales both sides to ``size`` (the aspect ratio changes);
            ``"crop"`` keeps the aspect ratio: the centred square of the shorter side, scaled.

    Returns:
        A uint8 tensor (``channels``, H, W).
    """
    check(resize in RESIZE_MODES, "resize", resize, f"one of {RESIZE_MODES}")
    if isinstance(image, Image.Image):
        if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit integer or float
            image = np.array(image)  # same rules as arrays: 16-bit scaled, floats in [0, 1]
        elif channels in (1, 3):
            image = _pil_to_mode(image, "RGB" if channels == 3 else "L")
            if size is not None and image.size != (size, size):
                image = (
                    ImageOps.fit(image, (size, size), Image.BILINEAR)
                    if resize == "crop"
                    else image.resize((size, size), Image.BILINEAR)
                )
            array = np.array(image)
            array = array[:, :, None] if array.ndim == 2 else array
            return torch.from_numpy(array).permute(2, 0, 1).contiguous()
        else:
            image = np.array(image)
    tensor = images_to_uint8(
        _as_tensor(image)[None], "image", bits=_bits(image), channels=channels
    )[0]
    if size is not None and tuple(tensor.shape[1:]) != (size, size):
        tensor = resize_uint8(tensor[None], size, resize)[0]
    return tensor


def _pil_to_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in PIL mode ``RGB`` or ``L``, with the one-time notes of the conversion."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        _note_once(
            "alpha", f"images with an alpha channel are converted to {mode} (alpha dropped)."
        )
    if mode == "RGB" and image.mode in ("L", "1", "LA"):
        _note_once("gray", "grayscale images are converted to RGB (channel repeated).")
    if mode == "L" and image.mode not in ("L", "1", "LA"):
        _note_once("luma", "colour images are converted to grayscale (luma) for in_channels=1.")
    return image if image.mode == mode else image.convert(mode)


def _bits(array: Any) -> Optional[int]:
    """16 for unsigned 16-bit arrays/tensors (scaled by 65535 whatever their maximum)."""
    dtype = getattr(array, "dtype", None)
    wide = (isinstance(dtype, np.dtype) and dtype == np.uint16) or dtype is torch.uint16
    return 16 if wide else None


def _as_tensor(array: Any) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        if array.dtype in (torch.uint16, torch.uint32, torch.uint64):  # few ops support them
            return array.to(torch.int64)
        return array
    if isinstance(array, np.ndarray):
        if array.dtype == np.uint16:
            array = array.astype(np.int32)
        return torch.from_numpy(np.ascontiguousarray(array))
    raise DataError(
        f"Cannot use an image of type {type(array).__name__}: pass PIL images, "
        "NumPy arrays or torch tensors."
    )


def images_to_uint8(
    images: torch.Tensor, argument: str = "images", bits: Optional[int] = None, channels: int = 3
) -> torch.Tensor:
    """Bring a batch (N, H, W), (N, H, W, C) or (N, C, H, W) to uint8 (N, ``channels``, H, W).

    Images that already have ``channels`` channels keep them (any number: multispectral data
    trains with ``in_channels=C``). Otherwise an alpha channel is dropped, grayscale is
    repeated to RGB and RGB becomes its luma for ``channels=1``, each with a one-time note.
    16-bit images are scaled (``bits=16``, or any integer batch whose maximum exceeds 255);
    float images must lie in [0, 1].

    Args:
        images: the batch, uint8, 16-bit or other integer, or float.
        argument: the name error messages give the batch.
        bits: 16 to scale by 65535 even when the batch's maximum is at most 255.
        channels: channels to deliver.

    Returns:
        A contiguous uint8 tensor (N, ``channels``, H, W).

    Raises:
        DataError: a bad shape or channel count, non-finite or out-of-range floats, negative
            or boolean integers, or values above 65535; the message names ``argument``.
    """
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(
            f"{argument} has shape {tuple(images.shape)}: expected (N, C, H, W), "
            "(N, H, W, C) or (N, H, W)."
        )
    known = {1, 3, 4, channels}
    if images.shape[1] not in known and images.shape[-1] in known:
        images = images.permute(0, 3, 1, 2)
    have = images.shape[1]
    if have != channels and not (have in (1, 3, 4) and channels in (1, 3)):
        raise DataError(
            f"{argument} has {have} channels: expected {channels} (in_channels="
            f"{channels}), or 1 (grayscale), 3 (RGB) or 4 (RGBA) to convert; pass "
            f"in_channels={have} to train on all {have} channels."
        )
    if images.is_floating_point():
        if not torch.isfinite(images).all():
            raise DataError(
                f"{argument} contains NaN or infinite pixel values: clean or drop "
                "those images first."
            )
        low, high = float(images.min()), float(images.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise DataError(
                f"{argument} are floats in [{low:.3g}, {high:.3g}]: expected floats "
                "in [0, 1] (divide by 255) or uint8 images."
            )
        images = (images * 255).round().clamp_(0, 255).to(torch.uint8)
    elif images.dtype != torch.uint8:
        if images.dtype == torch.bool or images.min() < 0:
            raise DataError(
                f"{argument} has dtype {images.dtype} with negative or boolean "
                "values: expected uint8, 16-bit, or float images in [0, 1]."
            )
        high = int(images.max())
        if high > 65535:
            raise DataError(
                f"{argument} has dtype {images.dtype} with values up to {high}: "
                "expected uint8 (0-255) or 16-bit (0-65535) integers, or floats "
                "in [0, 1]."
            )
        top = 65535 if bits == 16 or high > 255 else 255
        if top == 65535:
            _note_once("16bit", "16-bit images are converted to 8 bits (value * 255 / 65535).")
        images = (images.double() * 255 / top).round().to(torch.uint8)
    return convert_channels(images, channels).contiguous()


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """A uint8 batch with 1, 3 or 4 channels as ``channels`` (1 or 3) channels, or unchanged
    when it has them already; one-time notes say what was converted.

    Args:
        images: uint8 batch (N, C, H, W).
        channels: the wanted channel count.

    Returns:
        The batch with alpha dropped, grayscale repeated or RGB reduced to luma as needed;
        other combinations are returned unchanged.
    """
    have = images.shape[1]
    if have == channels:
        return images
    if have == 4:
        _note_once(
            "alpha",
            f"images with an alpha channel are converted to "
            f"{'RGB' if channels == 3 else 'L'} (alpha dropped).",
        )
        images, have = images[:, :3], 3
    if have == 1 and channels == 3:
        _note_once("gray", "grayscale images are converted to RGB (channel repeated).")
        return images.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        _note_once("luma", "colour images are converted to grayscale (luma) for in_channels=1.")
        weights = torch.tensor(LUMA, device=images.device).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round_().clamp_(0, 255).byte()
    return images


def resize_uint8(images: torch.Tensor, size: int, resize: str = "squash") -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 batch to ``size`` x ``size``: both sides scaled
    (``"squash"``), or the centred square of the shorter side scaled (``"crop"``).

    Args:
        images: uint8 batch (..., H, W).
        size: the output side in pixels.
        resize: ``"squash"`` or ``"crop"``.

    Returns:
        The resized uint8 batch (..., ``size``, ``size``).
    """
    if resize == "crop":
        height, width = images.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        images = images[..., top : top + side, left : left + side]
    out = _resize(images.float(), (size, size))  # antialiased bilinear
    return out.round().clamp_(0, 255).to(torch.uint8)


def dataset(
    source: Any,
    split: str = "train",
    *,
    size: Optional[int] = None,
    root: str | os.PathLike = "datasets",
    download: bool = True,
    channels: Optional[int] = None,
    resize: str = "squash",
    decode: str = "cpu",
    image_column: Optional[str] = None,
    label_column: Optional[str] = None,
    shard_sizes: Optional[int | Sequence[int]] = None,
    skip_bad_images: bool = False,
) -> ImageDataset:
    """Resolve ``source`` to an :class:`ImageDataset` of uint8 images.

    Args:
        source: a name (``cifar10-sample``, ``cifar10``, ``cifar100``, ``stl10``), a folder
            (ImageFolder layout or flat), WebDataset shards (``"shards/train-{000..009}.tar"``,
            a list of ``.tar`` paths or URLs; streamed, see :class:`~super_selfish.shards.
            ShardDataset`), a Hugging Face ``datasets.Dataset`` or ``DatasetDict``, a torchvision
            dataset, any torch ``Dataset``, an array or tensor of images, or ``(images, labels)``.
        split: ``train``/``test`` for named datasets (``unlabeled`` too for STL-10), the split
            of a Hugging Face ``DatasetDict``, and the sub-folder of a folder that holds
            ``train/``, ``val/`` or ``test/`` ones (a dataset root with splits, never read as
            classes called "train" and "val"; ``test`` falls back to ``val/`` when there is no
            ``test/``, with a note).
        size: resize every image to ``size`` x ``size``.
        root: where torchvision datasets live or are downloaded to.
        download: let torchvision download a named dataset that is not under ``root``.
        channels: image channels to deliver, the backbone's ``in_channels`` (see
            :func:`images_to_uint8` for the conversions); default: an :class:`ImageDataset`'s
            own, 3 (RGB) for every other source.
        resize: ``"squash"`` (both sides scaled) or ``"crop"`` (aspect ratio kept: centred
            square of the shorter side), for folders, shards and per-item datasets.
        decode: ``"cpu"`` (loader workers decode) or ``"device"``: JPEG files of folders and
            shards are decoded in batches on the training device (:mod:`super_selfish.decode`).
        image_column: the image column of a Hugging Face dataset, or the image key
            (extension) of WebDataset samples; found automatically when not given (an ``Image``
            feature; ``jpg``/``png``/...).
        label_column: the label column or key, likewise (a ``ClassLabel`` feature; ``cls``).
        shard_sizes: samples per WebDataset shard (one int for all, or one per shard); only
            needed for shards that are not local files, which cannot be counted cheaply.
        skip_bad_images: folder images are checked when the dataset is built (see
            :class:`FolderDataset`); True leaves unreadable ones out.

    Returns:
        An :class:`ImageDataset`: ``source`` itself when it already is one with the wanted
        channels, an in-memory :class:`TensorImageDataset` for names, arrays and torchvision
        datasets, else one that decodes per item or streams shards.

    Raises:
        ConfigError: an invalid ``size``, ``channels``, ``resize``, ``decode`` or ``split``.
        UnknownNameError: a string that is neither a registered name nor a path.
        DataError: a missing folder, a plain file, an empty or unreadable dataset, an
            unsupported type, or a named dataset that cannot be loaded or downloaded.
    """
    if size is not None:
        validate.positive_int(size, "size", " (pixels)")
    validate.positive_int(
        channels, "channels", " (3 for RGB, 1 for grayscale)", none="the images' own"
    )
    check(resize in RESIZE_MODES, "resize", resize, f"one of {RESIZE_MODES}")
    check(decode in DECODE_MODES, "decode", decode, f"one of {DECODE_MODES}")
    from . import shards, sources

    if isinstance(source, ImageDataset):
        return source if channels in (None, source.channels) else _with_channels(source, channels)
    channels = 3 if channels is None else channels
    if isinstance(source, str) and source in NAMES:
        return _remember(_named(source, split, size, root, download, channels), source, split)
    if shards.is_shard_source(source):
        streamed = shards.ShardDataset(
            source,
            size=size,
            channels=channels,
            resize=resize,
            decode=decode,
            image_key=image_column,
            label_key=label_column,
            shard_sizes=shard_sizes,
        )
        return (
            _remember(streamed, os.fspath(source), None)
            if isinstance(source, (str, os.PathLike))
            else streamed
        )
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.path.expanduser(os.fspath(source)))
        if path.is_dir():
            return _folder_dataset(
                path, split, size, skip_bad_images, channels=channels, resize=resize, decode=decode
            )
        if path.exists():
            raise DataError(
                f"dataset path {str(source)!r} is a file: pass a folder of images or "
                "WebDataset .tar shards."
            )
        looks_like_path = (
            not isinstance(source, str)
            or os.sep in source
            or "/" in source
            or source.startswith((".", "~"))
        )
        if looks_like_path:
            raise DataError(
                f"no such folder: {str(source)!r} (absolute path "
                f"{str(path.absolute())!r}) does not exist."
            )
        error = unknown_name("dataset", source, NAMES)
        raise type(error)(
            f"{error} It is no folder either: no such folder {str(path.absolute())!r}."
        )
    if isinstance(source, tuple) and len(source) == 2:
        return _from_arrays(source[0], source[1], size, channels)
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return _from_arrays(source, None, size, channels)
    if sources.is_huggingface(source):
        return sources.HuggingFaceDataset(
            source,
            split,
            image_column=image_column,
            label_column=label_column,
            size=size,
            channels=channels,
            resize=resize,
        )
    in_memory = sources.torchvision_arrays(source)
    if in_memory is not None:
        ds = _from_arrays(in_memory[0], in_memory[1], size, channels)
        ds.classes = in_memory[2]
        return ds
    if isinstance(source, Dataset):
        return ConvertedDataset(source, size, channels, resize)
    raise DataError(
        f"dataset of type {type(source).__name__} is not supported: pass a torch "
        "Dataset, a Hugging Face datasets.Dataset, an array or tensor of images, "
        "(images, labels), a folder path, WebDataset .tar shards or one of "
        f"{', '.join(NAMES)}."
    )


def _with_channels(ds: ImageDataset, channels: int) -> ImageDataset:
    """``ds`` delivering ``channels`` channels (in memory at once, else item by item)."""
    if isinstance(ds, TensorImageDataset):
        out: ImageDataset = TensorImageDataset(
            images_to_uint8(ds.images, "dataset", channels=channels), ds.labels, ds.classes
        )
    else:
        out = ConvertedDataset(ds, channels=channels)
    out.source, out.split = ds.source, ds.split  # the same images, other channels
    return out


_Dataset = TypeVar("_Dataset", bound=ImageDataset)


def _remember(ds: _Dataset, source: str, split: Optional[str]) -> _Dataset:
    """Stamp where a dataset comes from (see :func:`provenance`)."""
    ds.source, ds.split = source, split
    return ds


def provenance(ds: ImageDataset) -> dict:
    """What a checkpoint records about its training data.

    Args:
        ds: the training dataset.

    Returns:
        ``{"source": name, absolute folder, shard pattern or None, "split": ..., "image_size":
        side of the (square) stored images or None}``; the size is read from the first image
        when the dataset does not state it.
    """
    size = getattr(ds, "size", None)
    if size is None and len(ds) > 0:
        try:
            height, width = ds[0][0].shape[-2:]
            size = int(height) if height == width else None
        except Exception:  # noqa: BLE001 - an unreadable first image: size unknown
            size = None
    return {"source": ds.source, "split": ds.split, "image_size": size}


def _from_arrays(
    images: Any, labels: Any, size: Optional[int], channels: int = 3
) -> TensorImageDataset:
    tensor = _as_tensor(images)
    if len(tensor) == 0:
        raise DataError("dataset is empty: pass at least one image.")
    tensor = images_to_uint8(tensor, "dataset", bits=_bits(images), channels=channels)
    if size is not None and tuple(tensor.shape[2:]) != (size, size):
        tensor = resize_uint8(tensor, size)
    return TensorImageDataset(tensor, None if labels is None else _as_tensor(labels).long())


def _named(
    name: str,
    split: str,
    size: Optional[int],
    root: str | os.PathLike,
    download: bool,
    channels: int = 3,
) -> ImageDataset:
    splits = ("train", "test", "unlabeled") if name == "stl10" else ("train", "test")
    check(split in splits, "split", split, f"one of {splits} for {name!r}")
    if name == "cifar10-sample":
        from .assets import load_cifar10_sample

        images, labels, classes = load_cifar10_sample(split)
        ds = _from_arrays(images, labels, size, channels)
        ds.classes = list(classes)
        return ds
    import torchvision.datasets as tvd

    from .sources import torchvision_arrays

    cls = getattr(tvd, _TORCHVISION[name])
    kwargs = {"split": split} if name == "stl10" else {"train": split == "train"}
    try:
        raw = cls(root=str(root), download=download, **kwargs)
    except Exception as exc:  # offline, or files missing with download=False
        raise DataError(
            f"Could not load {name!r} ({type(exc).__name__}: {exc}). Without network access, "
            f"put torchvision's {_TORCHVISION[name]} files under {os.path.abspath(root)} "
            "(pass root=... to choose another folder), or use 'cifar10-sample', which ships "
            "with the package."
        ) from exc
    images, labels, classes = torchvision_arrays(raw)  # type: ignore[misc]
    ds = _from_arrays(images, None if split == "unlabeled" else labels, size, channels)
    ds.classes = classes
    return ds


def materialize(ds: ImageDataset) -> TensorImageDataset:
    """Load a whole dataset into memory (eval features, small training sets).

    Args:
        ds: any :class:`ImageDataset`; its images must share one size.

    Returns:
        ``ds`` itself when it is already in memory, else a :class:`TensorImageDataset` with
        its images, labels, class names, source and split.

    Raises:
        DataError: the images differ in size (pass ``size=`` to :func:`dataset`).
    """
    if isinstance(ds, TensorImageDataset):
        return ds
    images, labels = [], []
    for batch in DataLoader(ds, batch_size=256, collate_fn=_collate_pairs):
        images.append(batch[0])
        labels.append(batch[1])
    out = TensorImageDataset(torch.cat(images), torch.cat(labels), ds.classes)
    out.source, out.split = ds.source, ds.split  # the same images, now in memory
    return out


def _collate_pairs(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    shapes = {tuple(img.shape) for img, _ in items}
    if len(shapes) > 1:
        raise DataError(
            f"dataset has images of different sizes {sorted(shapes)[:4]}: pass "
            "size=... (e.g. size=32) so every image is resized to one size."
        )
    return (
        torch.stack([img for img, _ in items]),
        torch.tensor([label for _, label in items], dtype=torch.long),
    )


def _collate_indexed(items: list[tuple[int, tuple[Any, int]]]) -> Any:
    from .decode import EncodedBatch, EncodedImage

    index = torch.tensor([i for i, _ in items], dtype=torch.long)
    if any(isinstance(image, EncodedImage) for _, (image, _) in items):
        labels = torch.tensor([label for _, (_, label) in items], dtype=torch.long)
        return EncodedBatch([image for _, (image, _) in items], labels, index)
    images, labels = _collate_pairs([item for _, item in items])
    return Batch(images, labels, index)


class _Indexed(Dataset):
    """(index, item) pairs; ``encoded`` items when JPEGs are decoded on the device."""

    def __init__(self, ds: ImageDataset):
        self.ds = ds
        self.encoded = getattr(ds, "decode", "cpu") == "device" and hasattr(ds, "encoded")

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int):
        return index, (self.ds.encoded(index) if self.encoded else self.ds[index])


class _EpochBatches:
    """The batch sampler of a persistent DataLoader: the current epoch's batches of indices."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def default_num_workers() -> int:
    """Loader processes when ``num_workers`` is not given: half of this process's CPUs (the
    other half runs the training step), at least 1 and at most 8.

    The CPUs are those this process may run on, shared among ``LOCAL_WORLD_SIZE`` processes.

    Returns:
        The number of DataLoader workers.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    per_process = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, per_process // 2))


class BatchLoader:
    """Iterates :class:`Batch` es of uint8 images; in-memory datasets are sliced directly.

    The order comes from ``generator`` (or a distributed ``sampler``), so seeded runs repeat.
    Datasets read from files (folders, shards, Hugging Face, any per-item dataset) decode in
    ``num_workers`` worker processes (default :func:`default_num_workers`; 0 decodes in this
    process) that stay alive across epochs; ``pin_memory`` (for CUDA training) pins the
    batches so that the copy to the device overlaps the step. Streamed datasets
    (:class:`~super_selfish.shards.ShardDataset`) split their shards between processes and
    workers themselves, so ``sampler`` is not used for them. :meth:`close` ends the workers.

    Args:
        ds: the dataset to read.
        batch_size: images per batch.
        shuffle: draw a new random order every epoch (ignored when ``sampler`` is given).
        drop_last: leave out the last, incomplete batch.
        num_workers: loader processes; None picks 0 for in-memory datasets, else
            :func:`default_num_workers`.
        generator: the random generator of the order (and of the shard order when streaming).
        sampler: a (distributed) sampler giving the indices of this process.
        pin_memory: pin batches in page-locked memory.

    Raises:
        ConfigError: ``batch_size`` or ``num_workers`` is invalid.
        DataError: the dataset is empty, or smaller than one batch with ``drop_last``.
    """

    def __init__(
        self,
        ds: ImageDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        num_workers: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        sampler: Any = None,
        pin_memory: bool = False,
    ):
        validate.positive_int(batch_size, "batch_size")
        validate.non_negative_int(num_workers, "num_workers", none="automatic")
        self.streaming = bool(getattr(ds, "streaming", False))
        n = self._images_per_epoch(ds, sampler)
        if n == 0:
            raise DataError("dataset is empty: pass a dataset with at least one image.")
        if drop_last and batch_size > n:
            raise DataError(
                f"batch_size={batch_size} is larger than the dataset ({n} images) "
                f"and incomplete batches are dropped: use batch_size <= {n}."
            )
        dropped = n % batch_size if drop_last else 0
        if dropped > 0.1 * n:
            batches = -(-n // batch_size)
            console.warn(
                f"batch_size={batch_size} leaves {dropped} of {n} images "
                f"({dropped / n:.0%}) out of every epoch (incomplete batches are "
                f"dropped): batch_size={n // batches} would use "
                f"{n // batches * batches} of them in {batches} batch(es)."
            )
        if num_workers is None:
            num_workers = 0 if isinstance(ds, TensorImageDataset) else default_num_workers()
        self.ds, self.batch_size, self.shuffle = ds, batch_size, shuffle
        self.drop_last, self.num_workers, self.pin_memory = drop_last, num_workers, pin_memory
        self.generator, self.sampler = generator, None if self.streaming else sampler
        self._loader: Optional[DataLoader] = None
        self._epoch = _EpochBatches()

    def _images_per_epoch(self, ds: ImageDataset, sampler: Any) -> int:
        if self.streaming:
            from .distributed import world_size

            return len(ds) // world_size()
        return len(ds) if sampler is None else len(sampler)

    def __len__(self) -> int:
        n = self._images_per_epoch(self.ds, self.sampler)
        if self.streaming or self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        if self.sampler is not None:
            return torch.tensor(list(iter(self.sampler)), dtype=torch.long)
        if self.shuffle:
            return torch.randperm(len(self.ds), generator=self.generator)
        return torch.arange(len(self.ds))

    def _data_loader(self) -> DataLoader:
        """The DataLoader, made once: its workers persist from one epoch to the next."""
        if self._loader is None:
            workers = self.num_workers
            common = dict(
                num_workers=workers,
                pin_memory=self.pin_memory,
                persistent_workers=workers > 0,
                worker_init_fn=_ignore_interrupt if workers else None,
            )
            if self.streaming:
                self._loader = DataLoader(
                    self.ds.stream(self.batch_size, self.shuffle),
                    batch_size=self.batch_size,
                    collate_fn=_collate_indexed,
                    **common,
                )
            else:
                self._loader = DataLoader(
                    _Indexed(self.ds),
                    batch_sampler=self._epoch,
                    collate_fn=_collate_indexed,
                    **common,
                )
        return self._loader

    def __iter__(self) -> Iterator[Batch]:
        if self.streaming:
            loader = self._data_loader()
            seed = int(torch.randint(2**62, (1,), generator=self.generator)) if self.shuffle else 0
            loader.dataset.start_epoch(seed)
            yield from loader
            return
        order = self._order()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if isinstance(self.ds, TensorImageDataset):
            for idx in batches:
                yield Batch(self.ds.images[idx], self.ds.labels[idx], idx)
            return
        self._epoch.batches = [b.tolist() for b in batches]
        yield from self._data_loader()

    def close(self) -> None:
        """Stop the worker processes (they are restarted if the loader is iterated again)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


def _ignore_interrupt(_worker_id: int) -> None:
    """Workers ignore Ctrl-C (sent to the whole process group): the main process stops
    cleanly after its step and shuts them down, instead of failing on a dead worker.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def split(
    ds: ImageDataset, fraction: float, seed: int = 0
) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Deterministic random split into (first, rest) with ``fraction`` of the images first.

    Args:
        ds: the dataset to split (loaded into memory).
        fraction: share of the images in the first part, strictly between 0 and 1.
        seed: seed of the random order.

    Returns:
        ``(first, rest)`` in-memory datasets; ``first`` holds at least one image.
    """
    check(0 < fraction < 1, "fraction", fraction, "a number strictly between 0 and 1")
    ds = materialize(ds)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    cut = max(1, int(round(fraction * len(ds))))
    return ds.subset(order[:cut]), ds.subset(order[cut:])
