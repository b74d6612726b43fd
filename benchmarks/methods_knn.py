"""Every registered method, same network, data and number of steps: kNN vs. random init.

Each method trains ``convnet-small`` (MAE: ``vit-tiny``, it needs a ViT) from the same seed on
the same images for the same number of optimizer steps on CPU with its own recipe
(``super_selfish.recipes.RECIPES``: optimizer, rate scaled to the batch, weight decay, warm-up,
schedule; ``--lr``/``--optimizer`` override them for every method, ``--schedule cosine`` with
``--optimizer adam`` reproduces the earlier Adam runs), then its backbone is scored by weighted
kNN (k=200, T=0.1); the random-init column is the same network before training.

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
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="the same for every method (default: each method's recipe)",
    )
    parser.add_argument(
        "--optimizer",
        default=None,
        choices=["adam", "adamw", "sgd", "lars"],
        help="the same for every method (default: each method's recipe)",
    )
    parser.add_argument(
        "--schedule",
        default=None,
        choices=["cosine", "constant"],
        help="the same for every method (default: each method's recipe)",
    )
    parser.add_argument(
        "--legacy-adam",
        action="store_true",
        help="each method's earlier default: Adam at its default_lr, cosine, "
        "no weight decay or warm-up",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="10,000 real CIFAR-10 images from ../shared instead of the sample",
    )
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
    print(
        f"{len(train)} train / {len(test)} test images, batch {args.batch_size}, "
        f"{epochs} epochs (~{args.steps} steps), convnet-small, {torch.get_num_threads()} "
        "threads\n",
        flush=True,
    )
    rows = []
    for name in names:
        backbone = "vit-tiny" if name == "mae" else "convnet-small"  # MAE needs a ViT
        sup = methods.get(name)(train, backbone=backbone, seed=args.seed)
        random_init = evaluate.knn_accuracy(sup.get_backbone(), train, test)
        started = time.perf_counter()
        try:
            legacy = (
                dict(
                    lr=sup.default_lr,
                    optimizer=type(sup).default_optimizer,
                    weight_decay=0.0,
                    warmup_epochs=0.0,
                    lr_scheduler="cosine",
                )
                if args.legacy_adam
                else {}
            )
            chosen = {
                k: v
                for k, v in (
                    ("lr", args.lr),
                    ("optimizer", args.optimizer),
                    ("lr_scheduler", args.schedule),
                )
                if v is not None
            }
            history = sup.supervise(
                epochs=epochs,
                batch_size=args.batch_size,
                name=f"store/bench_{name}",
                progress=False,
                save=False,
                **{**legacy, **chosen},
            )
        except Exception as exc:  # report and go on: one broken method must not hide the rest
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        minutes = (time.perf_counter() - started) / 60
        acc = evaluate.knn_accuracy(sup.get_backbone(), train, test)
        speed = sum(r["images_per_s"] for r in history) / len(history)
        rows.append(
            (
                name,
                backbone,
                sup.run_options["optimizer"],
                sup.base_lr,
                acc,
                random_init,
                speed,
                minutes,
            )
        )
        print(
            f"{name}: {sup.run_options['optimizer']} lr {sup.base_lr:g} wd "
            f"{sup.run_options['weight_decay']:g} warm-up {sup.run_options['warmup_epochs']:g}"
            f" {sup.run_options['lr_scheduler']}, kNN {acc:.4f} (random init {random_init:.4f}), "
            f"{speed:.0f} img/s, {minutes:.1f} min",
            flush=True,
        )
    print(
        "\n| method | backbone | optimizer | lr | kNN acc | random-init acc | gain | images/s "
        "| minutes |\n|---|---|---|---|---|---|---|---|---|"
    )
    for name, backbone, opt, lr, acc, rnd, speed, minutes in rows:
        print(
            f"| {name} | {backbone} | {opt} | {lr:g} | {acc:.3f} | {rnd:.3f} | {acc - rnd:+.3f} "
            f"| {speed:.0f} | {minutes:.1f} |"
        )


if __name__ == "__main__":
    main()
