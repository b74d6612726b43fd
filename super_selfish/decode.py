"""JPEG decoding on the training device, for loaders that cannot keep up on the CPU.

Decoding a JPEG costs far more CPU time than reading it, and a GPU trains faster than a few
CPU cores decode: the per-sample CPU work is the bottleneck that users of other SSL libraries
reach for NVIDIA DALI to remove. With ``data.dataset(folder, decode="device")`` the loader's
workers only read the files; the main process hands each batch of encoded JPEGs to
``torchvision.io.decode_jpeg(..., device=...)`` (nvJPEG on CUDA, batched) and resizes the
decoded images on the device. Files of other formats are decoded by the workers as usual.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch

from .data import Batch, DataError, resize_uint8


class EncodedImage(NamedTuple):
    """One undecoded JPEG file and what the decoded image must become."""

    data: torch.Tensor  # uint8 (num_bytes,): the file's bytes
    size: Optional[int]
    channels: int
    resize: str


class EncodedBatch(NamedTuple):
    """A batch whose images are decoded when it is moved to the device (``to``)."""

    images: list[Any]  # EncodedImage or already decoded uint8 (C, H, W) tensors
    labels: torch.Tensor
    index: torch.Tensor  # type: ignore[assignment]  # the dataset indices, as in Batch

    def to(self, device: torch.device | str) -> Batch:
        """Decode (on ``device``), resize, stack: the :class:`~super_selfish.data.Batch`.

        Args:
            device: the training device.

        Returns:
            The batch of uint8 images, labels and indices on ``device``.
        """
        return Batch(
            decode_images(self.images, torch.device(device)),
            self.labels.to(device, non_blocking=True),
            self.index.to(device, non_blocking=True),
        )


def decode_images(items: list[Any], device: torch.device) -> torch.Tensor:
    """Decode the :class:`EncodedImage` s of ``items`` on ``device`` in one batched call,
    resize each as it asks, and stack them with the already decoded ones: (N, C, H, W) uint8.

    Args:
        items: ``EncodedImage`` s and uint8 (C, H, W) tensors, in batch order.
        device: where to decode.

    Returns:
        The stacked uint8 batch on ``device``.

    Raises:
        DataError: the images end up with different sizes.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [i for i, item in enumerate(items) if isinstance(item, EncodedImage)]
    out: list[Optional[torch.Tensor]] = [
        None if i in encoded else item.to(device) for i, item in enumerate(items)
    ]
    if encoded:
        first = items[encoded[0]]
        mode = ImageReadMode.GRAY if first.channels == 1 else ImageReadMode.RGB
        decoded = decode_jpeg([items[i].data for i in encoded], mode=mode, device=device)
        groups: dict = {}  # images of one shape are resized together
        for i, image in zip(encoded, decoded):
            key = (tuple(image.shape), items[i].size, items[i].resize)
            groups.setdefault(key, []).append((i, image))
        for (shape, size, resize), members in groups.items():
            images = torch.stack([image for _, image in members])
            if size is not None and shape[-2:] != (size, size):
                images = resize_uint8(images, size, resize)
            for (i, _), image in zip(members, images):
                out[i] = image
    shapes = {tuple(image.shape) for image in out}  # type: ignore[union-attr]
    if len(shapes) > 1:
        raise DataError(
            f"dataset has images of different sizes {sorted(shapes)[:4]}: pass "
            "size=... (e.g. size=64) so every image is resized to one size."
        )
    return torch.stack(out)  # type: ignore[arg-type]
