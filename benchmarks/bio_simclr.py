"""The foveation study's question on real images: can cortical magnification replace SimCLR's
random resized crop, and do saliency-guided fixations help?

SimCLR on Imagenette (from ``../shared/data``) with the same backbone, budget, batch and seeds
for each pipeline, all the study's own presets (``super_selfish.augment``, see docs/augment.md):

* ``study_baseline``: random resized crop, flip, colour (0.8), grayscale, Gaussian blur;
* ``study_magnif``: cortical magnification in place of the crop (fov 30, K 20, cover 0.05-0.35),
  no blur;
* ``study_magnif_saliency``: the same with fixations drawn from saliency;
* ``foveation (plain crop)``: ``study_baseline`` with foveated blur in place of the blur
  (``study_foveation`` with ``crop_fixation=None``);
* ``study_saliency_crop``: crops centred on saliency fixations (the study's cropper), blur.

Each pipeline is trained once per seed by :func:`super_selfish.compare.compare`, which reports
kNN and linear-probe accuracy as mean and standard deviation over the seeds, the difference of
means to the baseline with a 95% bootstrap interval, and images/s. Images are resized to
``--size`` first (the study magnified and cropped 96-px STL-10 images to 96 px).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bio_simclr.py  # the README's run, 2 seeds

``--seeds 0 --out runs/seed0`` and ``--seeds 1 --out runs/seed1`` run the seeds as separate
processes; ``--merge runs/seed0 runs/seed1`` then builds the table over both seeds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from super_selfish import augment
from super_selfish.compare import ComparisonTable, compare, summarize_seeds

PIPELINES = [
    "study_baseline",
    "study_magnif",
    "study_magnif_saliency",
    "foveation (plain crop)",
    "study_saliency_crop",
]


def pipelines(names: list[str], size: int) -> dict[str, object]:
    """Label -> augmentation spec for compare(augment=...)."""
    out = {}
    for name in names:
        if name == "foveation (plain crop)":
            out[name] = augment.build("study_foveation", size, crop_fixation=None)
        else:
            out[name] = name
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1000, help="Imagenette training images")
    parser.add_argument("--test", type=int, default=500, help="Imagenette val images")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbone", default="convnet-small")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pipelines", nargs="+", default=PIPELINES)
    parser.add_argument("--out", default=None, help="write comparison.{json,csv} here")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="folders of earlier runs (one seed each): print their joint table",
    )
    args = parser.parse_args()
    if args.merge:
        tables, seeds = [], []
        for folder in args.merge:
            saved = ComparisonTable.from_json(Path(folder) / "comparison.json")
            tables.append(
                ComparisonTable(
                    saved.runs, protocols=saved.protocols, notes=saved.notes, meta=saved.meta
                )
            )
            seeds += sorted({r["seed"] for r in saved.runs})
        report(summarize_seeds(tables, seeds))
        return

    from common import imagenette

    train = imagenette("train", args.train, args.size)
    test = imagenette("val", args.test, args.size)
    print(
        f"SimCLR, {args.backbone}, {len(train)} Imagenette train / {len(test)} val images at "
        f"{args.size} px, {args.epochs} epochs, batch {args.batch_size}, seeds {args.seeds}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    started = time.perf_counter()
    table = compare(
        "simclr",
        train,
        backbone=args.backbone,
        budget=args.epochs,
        eval={"knn": {"k": 20}, "linear": {}},
        test_dataset=test,
        batch_size=args.batch_size,
        image_size=args.size,
        augment=pipelines(args.pipelines, args.size),
        seeds=args.seeds,
        keep_backbones=False,
    )
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{minutes:.1f} min, load average {os.getloadavg()[0]:.1f} at the end\n")
    report(table)
    if args.out:
        table.to_json(Path(args.out) / "comparison.json")
        table.to_csv(Path(args.out) / "comparison.csv")


def report(table: ComparisonTable) -> None:
    """Print the accuracies, their spreads and differences to the baseline as markdown."""
    columns = [
        "method",
        "knn_accuracy",
        "knn_accuracy_sd",
        "knn_accuracy_diff",
        "knn_accuracy_diff_low",
        "knn_accuracy_diff_high",
        "linear_accuracy",
        "linear_accuracy_sd",
        "linear_accuracy_diff",
        "linear_accuracy_diff_low",
        "linear_accuracy_diff_high",
        "images_per_s",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        cells = [table._cell(c, row.get(c, ""), 3) for c in columns]
        print("| " + " | ".join(cells) + " |")
    print()
    print("\n".join(f"- {note}" for note in table.notes))


if __name__ == "__main__":
    main()
