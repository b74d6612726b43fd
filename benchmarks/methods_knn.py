"""Every registered method, same network, data and number of steps: kNN vs. random init.

Each method trains ``convnet-small`` (MAE: ``vit-tiny``, it needs a ViT) from the same seed on
the same images for the same number of optimizer steps on CPU with its own default learning rate
and optimizer (``default_lr``, ``default_optimizer``; ``--lr`` sets one for all), then its
backbone is scored by weighted kNN (k=200, T=0.1); the random-init column is the same network
before training.

    python benchmarks/methods_knn.py [--steps 300] [--methods simclr byol ...]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from super_selfish import data, evaluate, methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=None, help="default: all registered")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per method")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None,
                        help="the same for every method (default: each method's default_lr)")
    parser.add_argument("--real", action="store_true",
                        help="10,000 real CIFAR-10 images from ../shared instead of the sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.real:
        from common import cifar10

        train, test = cifar10("train", 10_000), cifar10("test", 2_000)
    else:
        train = data.materialize(data.dataset("cifar10-sample", "train"))
        test = data.dataset("cifar10-sample", "test")
    names = args.methods or methods.available()
    epochs = math.ceil(args.steps * args.batch_size / len(train))
    print(f"{len(train)} train / {len(test)} test images, batch {args.batch_size}, "
          f"{epochs} epochs (~{args.steps} steps), convnet-small, {torch.get_num_threads()} "
          "threads\n", flush=True)
    rows = []
    for name in names:
        backbone = "vit-tiny" if name == "mae" else "convnet-small"  # MAE needs a ViT
        sup = methods.get(name)(train, backbone=backbone, seed=args.seed)
        random_init = evaluate.knn_accuracy(sup.get_backbone(), train, test)
        started = time.perf_counter()
        try:
            history = sup.supervise(lr=args.lr, epochs=epochs, batch_size=args.batch_size,
                                    name=f"store/bench_{name}", progress=False, save=False,
                                    lr_scheduler="cosine")
        except Exception as exc:  # report and go on: one broken method must not hide the rest
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        minutes = (time.perf_counter() - started) / 60
        acc = evaluate.knn_accuracy(sup.get_backbone(), train, test)
        speed = sum(r["images_per_s"] for r in history) / len(history)
        rows.append((name, backbone, sup.base_lr, acc, random_init, speed, minutes))
        print(f"{name}: lr {sup.base_lr:g}, kNN {acc:.4f} (random init {random_init:.4f}), "
              f"{speed:.0f} img/s, {minutes:.1f} min", flush=True)
    print("\n| method | backbone | lr | kNN acc | random-init acc | gain | images/s | minutes |\n"
          "|---|---|---|---|---|---|---|---|")
    for name, backbone, lr, acc, rnd, speed, minutes in rows:
        print(f"| {name} | {backbone} | {lr:g} | {acc:.3f} | {rnd:.3f} | {acc - rnd:+.3f} "
              f"| {speed:.0f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
