"""MoCo v2's automatic queue: a tenth of the dataset (now) vs the whole dataset (before).

Same real CIFAR-10 images, ``convnet-small``, batch, epochs and seed for both; each run uses the
method's recipe; the score is weighted kNN (k=200) of the trained backbone on held-out images.

    python benchmarks/moco_queue.py [--images 3000] [--epochs 4] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import cifar10

from super_selfish import evaluate
from super_selfish.methods import MomentumContrastSupervisor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    train = cifar10("train", 10_000).subset(torch.arange(args.images))
    test = cifar10("test", 2_000)
    whole = len(train) // args.batch_size * args.batch_size  # the former automatic size
    print(
        f"{len(train)} train / {len(test)} test images, batch {args.batch_size}, "
        f"{args.epochs} epochs, convnet-small, {torch.get_num_threads()} threads",
        flush=True,
    )
    for seed in args.seeds:
        for label, size in (("whole dataset", whole), ("tenth (default)", None)):
            sup = MomentumContrastSupervisor(train, seed=seed, queue_size=size)
            started = time.perf_counter()
            sup.supervise(
                epochs=args.epochs,
                batch_size=args.batch_size,
                progress=False,
                save=False,
                device="cpu",
            )
            knn = evaluate.knn_accuracy(sup.get_backbone(), train, test)
            print(
                f"seed {seed}  queue {label:16s} {sup.queue.size:6d} keys  kNN {knn:.4f}  "
                f"{(time.perf_counter() - started) / 60:.1f} min",
                flush=True,
            )


if __name__ == "__main__":
    main()
