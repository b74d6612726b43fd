"""How strongly saliency guides fixations: the share that lands on a small salient object.

Synthetic 96-px scenes: a textured background (smooth colour blotches plus fine grain) with one
small high-contrast square at a random place inside the fixation border. For each saliency
setting the script draws one fixation per scene with ``Magnification``'s sampler (border 16 px,
as the magnification presets) and reports the share of fixations within ``--radius`` px of the
object's centre, next to uniform fixations and the study's formula on the same maps.

    PYTHONPATH=. python benchmarks/saliency_concentration.py --scenes 2000
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from super_selfish import augment as A

SIZE = 96
OBJECT = 6  # side of the salient square, px
BORDER = 16.0


def scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` textured scenes with one salient square each, and the squares' centres (x, y) in px."""
    generator = torch.Generator().manual_seed(seed)
    blotches = F.interpolate(
        torch.rand(n, 3, 6, 6, generator=generator), size=(SIZE, SIZE), mode="bicubic"
    )
    grain = torch.rand(n, 1, SIZE, SIZE, generator=generator)
    images = (0.25 + 0.4 * blotches + 0.15 * grain).clamp(0, 1)
    low, high = int(BORDER) + OBJECT, SIZE - int(BORDER) - OBJECT
    corner = torch.randint(low, high, (n, 2), generator=generator)
    bright = torch.rand(n, generator=generator) < 0.5
    for i in range(n):
        x, y = corner[i].tolist()
        images[i, :, y : y + OBJECT, x : x + OBJECT] = 1.0 if bright[i] else 0.0
    return images, corner.float() + OBJECT / 2


def share_near(
    op: A.Magnification, images: torch.Tensor, centres: torch.Tensor, radius: float, seed: int
) -> float:
    fixations = op.sample_fixations(images, torch.Generator().manual_seed(seed))
    pixels = (fixations + 1) * SIZE / 2  # 0 is the image edge, as the centres
    return ((pixels - centres).norm(dim=1) <= radius).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=2000)
    parser.add_argument("--radius", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, centres = scenes(args.scenes, args.seed)
    allowed = (SIZE - 2 * BORDER) ** 2
    print(
        f"{args.scenes} scenes of {SIZE} px, a {OBJECT}-px square each; share of fixations "
        f"within {args.radius:g} px of it (border {BORDER:g} px; a uniform fixation has "
        f"about {math.pi * args.radius**2 / allowed:.0%} chance)"
    )
    settings = [
        ("uniform", dict(fixation="uniform")),
        (
            "study formula, T=1.5 (raw log-map)",
            dict(fixation="saliency", temperature=1.5, standardize=False),
        ),
    ] + [
        (
            f"standardised, T={t:g}" + (" (default)" if t == 1 else ""),
            dict(fixation="saliency", temperature=t),
        )
        for t in (0.25, 0.5, 1.0, 1.5, 3.0, 10.0, 1000.0)
    ]
    print("| fixations | share near the object |")
    print("|---|---|")
    for label, options in settings:
        op = A.Magnification(border=BORDER, **options)
        started = time.perf_counter()
        share = share_near(op, images, centres, args.radius, args.seed + 1)
        seconds = time.perf_counter() - started
        print(f"| {label} | {share:.1%} |  ({args.scenes / seconds:,.0f} maps/s)")


if __name__ == "__main__":
    main()
