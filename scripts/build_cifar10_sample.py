#!/usr/bin/env python
"""Build the bundled CIFAR-10 sample ``super_selfish/assets/cifar10_sample.npz``.

Reads the real CIFAR-10 from an ImageFolder-layout tarball
(``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``, 32x32 JPEGs) directly,
without extracting it to disk, and stores a class-balanced, deterministic
sample: 500 train images and 100 test images per class.

The original JPEG bytes are kept (about 1 KB each), concatenated into one
uint8 array per split plus an int64 offsets array (``offsets[i]:offsets[i+1]``
are the bytes of image ``i``), so the file loads with
``np.load(path, allow_pickle=False)``. Keys: ``train_jpeg``, ``train_offsets``,
``train_labels``, ``test_jpeg``, ``test_offsets``, ``test_labels``,
``classes``.

Usage (from the repository root)::

    python scripts/build_cifar10_sample.py \
        --source ../shared/data/cifar10-jpg.tar.gz \
        --out super_selfish/assets/cifar10_sample.npz
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
from collections import defaultdict

import numpy as np
from PIL import Image

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SOURCE = os.path.join(REPO_ROOT, "..", "shared", "data", "cifar10-jpg.tar.gz")
DEFAULT_OUT = os.path.join(REPO_ROOT, "super_selfish", "assets", "cifar10_sample.npz")
PER_CLASS = {"train": 500, "test": 100}
SEED = 0
MAX_BYTES = 10 * 1024 * 1024


def read_tar(source: str) -> dict[str, dict[str, dict[str, bytes]]]:
    """Return ``{split: {class: {member_name: jpeg_bytes}}}`` in one streaming pass."""
    data: dict[str, dict[str, dict[str, bytes]]] = {s: defaultdict(dict) for s in PER_CLASS}
    with tarfile.open(source, mode="r|gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.lstrip("./").split("/")
            if (
                len(parts) != 3
                or parts[0] not in PER_CLASS
                or not parts[2].lower().endswith(".jpg")
            ):
                continue
            split, cls, _ = parts
            fh = tar.extractfile(member)
            assert fh is not None
            data[split][cls][member.name] = fh.read()
    return data


def pack_split(
    per_class: dict[str, dict[str, bytes]], classes: list[str], n: int, rng: np.random.Generator
):
    blobs: list[bytes] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        names = sorted(per_class[cls])
        if len(names) < n:
            raise ValueError(f"class {cls!r} has only {len(names)} images, need {n}")
        chosen = np.sort(rng.choice(len(names), size=n, replace=False))
        for i in chosen:
            blob = per_class[cls][names[i]]
            with Image.open(io.BytesIO(blob)) as img:  # sanity check
                if img.size != (32, 32):
                    raise ValueError(f"{names[i]} is {img.size}, expected (32, 32)")
            blobs.append(blob)
            labels.append(label)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    jpeg = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    return jpeg, offsets, np.asarray(labels, dtype=np.int64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", default=DEFAULT_SOURCE, help="CIFAR-10 ImageFolder tarball (.tar.gz)"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="output .npz path")
    parser.add_argument(
        "--seed", type=int, default=SEED, help="sampling seed (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    data = read_tar(args.source)
    classes = sorted(data["train"])
    if sorted(data["test"]) != classes or len(classes) != 10:
        raise ValueError(
            f"unexpected class folders: train={sorted(data['train'])} test={sorted(data['test'])}"
        )

    rng = np.random.default_rng(args.seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in PER_CLASS.items():
        jpeg, offsets, labels = pack_split(data[split], classes, n, rng)
        arrays[f"{split}_jpeg"] = jpeg
        arrays[f"{split}_offsets"] = offsets
        arrays[f"{split}_labels"] = labels
    arrays["classes"] = np.asarray(classes, dtype=str)  # unicode dtype, not object

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # JPEG bytes are already compressed; plain savez keeps loading fast.
    with open(args.out, "wb") as fh:
        np.savez(fh, **arrays)
    size = os.path.getsize(args.out)
    print(
        f"wrote {args.out}: {size} bytes ({size / 2**20:.2f} MiB); "
        f"train={len(arrays['train_labels'])} test={len(arrays['test_labels'])} classes={classes}"
    )
    if size > MAX_BYTES:
        raise SystemExit(f"error: {args.out} is {size} bytes, over the {MAX_BYTES}-byte limit")


if __name__ == "__main__":
    main()
