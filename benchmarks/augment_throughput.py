#!/usr/bin/env python
"""Throughput of the batched augmentations against per-sample pipelines on the same cores.

For each size, prints images per second (every image gives two views) for:

* ``simclr``, ``simclr_magnif`` and ``simclr_foveation`` built by ``super_selfish.augment``,
  called once per batch, next to a per-sample pipeline doing the same work one image at a time:
  torchvision's PIL transforms, followed for magnification and foveation by the straightforward
  per-image implementation of the original study (``super_selfish.augment.reference``);
* the magnification and foveation ops alone, batched, next to that per-image implementation
  (grid rebuilt per call; one full-resolution Gaussian blur per foveation ring).

Inputs are random uint8 images, or real images from the Imagenette tarball when it is present,
resized to the target size. Times are the best of ``--repeats`` runs after a warm-up, taken on
the process's CPU clock by default: with one thread that equals wall time on an idle machine,
and it does not count the time other jobs on shared cores take (``--clock wall`` to compare).

    PYTHONPATH=. python benchmarks/augment_throughput.py --threads 1   # from the repository root
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tarfile
import time
from collections.abc import Callable

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from super_selfish import augment
from super_selfish.augment import reference

IMAGENETTE = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "imagenette-128-jpg.tar.gz"
)


def load_images(n: int, size: int, tarball: str) -> torch.Tensor:
    """``n`` uint8 (3, size, size) images: Imagenette JPEGs if available, else random pixels."""
    if not os.path.exists(tarball):
        return torch.randint(
            0,
            256,
            (n, 3, size, size),
            dtype=torch.uint8,
            generator=torch.Generator().manual_seed(0),
        )
    images = []
    with tarfile.open(tarball) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".jpg"):
                image = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
                images.append(TF.pil_to_tensor(image.resize((size, size), Image.BILINEAR)))
                if len(images) == n:
                    break
    return torch.stack(images)


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def best_time(run: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    run()  # warm-up: caches, allocator, lazy imports
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return min(times)


def pil_simclr(size: int, blur: bool) -> T.Compose:
    """Torchvision's per-sample SimCLR pipeline (PIL in, PIL out)."""
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
    ops = [
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if blur:
        ops.append(T.RandomApply([T.GaussianBlur(kernel, (0.1, 2.0))], p=0.5))
    return T.Compose(ops)


def pil_colour() -> T.Compose:
    return T.Compose(
        [
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
    )


def random_fixation(size: int, border: float) -> tuple[int, int]:
    """A uniform integer pixel fixation, ``border`` pixels at 96 px from the edges (the study's)."""
    margin = round(border * size / 96)
    return random.randrange(margin, size - margin), random.randrange(margin, size - margin)


def magnify_per_image(image: torch.Tensor, size: int) -> torch.Tensor:
    scale = size / 96  # the preset's fov 30, K 20 are pixels at 96 px
    cover = random.uniform(0.05, 0.35)
    return reference.magnify_one(
        image, random_fixation(image.shape[-1], 16), cover, 30 * scale, 20 * scale
    )


def foveate_per_image(image: torch.Tensor) -> torch.Tensor:
    return reference.foveate_one(
        image, random_fixation(image.shape[-1], 12), random.uniform(0.01, 0.5), 0.06, 0.2
    )


def per_sample_pipelines(size: int) -> dict[str, Callable[[Image.Image], torch.Tensor]]:
    simclr, colour, crop = pil_simclr(size, blur=True), pil_colour(), pil_simclr(size, blur=False)
    return {
        "simclr": lambda image: TF.to_tensor(simclr(image)),
        "simclr_magnif": lambda image: magnify_per_image(TF.to_tensor(colour(image)), size),
        "simclr_foveation": lambda image: foveate_per_image(TF.to_tensor(crop(image))),
    }


def measure(
    size: int,
    batch: int,
    per_sample_count: int,
    repeats: int,
    tarball: str,
    clock: Callable[[], float],
) -> list[tuple[str, float, float]]:
    images = load_images(batch, size, tarball)
    pil_images = [TF.to_pil_image(image) for image in images[:per_sample_count]]
    floats = images.float() / 255
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, per_sample in per_sample_pipelines(size).items():
        views = augment.build(name, size)
        batched = best_time(lambda views=views: views(images, generator), repeats, clock)
        looped = best_time(
            lambda per_sample=per_sample: [
                per_sample(image) for image in pil_images for _ in range(2)
            ],
            repeats,
            clock,
        )
        rows.append((f"{name} (2 views)", batch / batched, per_sample_count / looped))
    magnification = augment.Magnification(fov=30.0, K=20.0, cover_ratio=(0.05, 0.35))
    foveation = augment.Foveation()
    few = floats[:per_sample_count]
    for label, op, one in (
        ("magnification op", magnification, lambda image: magnify_per_image(image, size)),
        ("foveation op", foveation, foveate_per_image),
    ):
        batched = best_time(lambda op=op: op(floats, generator, size), repeats, clock)
        looped = best_time(lambda one=one: [one(image) for image in few], repeats, clock)
        rows.append((label, batch / batched, per_sample_count / looped))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument(
        "--batch", type=int, default=256, help="batch size of the batched pipelines"
    )
    parser.add_argument(
        "--per-sample", type=int, default=64, help="images timed in the per-sample loops"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--data", default=IMAGENETTE, help="Imagenette tarball (random images if missing)"
    )
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="cpu", help="cpu (process time) or wall"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    source = "Imagenette" if os.path.exists(args.data) else "random uint8"
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
        f"{source} images, "
        f"{args.clock} clock, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print()
    print("| pipeline | size | batched img/s | per-sample img/s | speed-up |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        rows = measure(
            size, args.batch, args.per_sample, args.repeats, args.data, CLOCKS[args.clock]
        )
        for label, batched, looped in rows:
            print(
                f"| {label} | {size} | {batched:,.0f} | {looped:,.0f} | {batched / looped:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
