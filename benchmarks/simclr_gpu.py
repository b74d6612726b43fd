"""SimCLR training throughput on GPU: fp32 vs bf16 autocast, channels-last and torch.compile.

Trains SimCLR (``cifar-resnet18``, batch 512 per GPU, 32 px CIFAR-10 images) a few epochs per
configuration and reports images/s of the steady-state epochs (the first epoch, which
includes compilation and cuDNN autotuning, is left out), peak GPU memory and the last loss.

    python benchmarks/simclr_gpu.py                      # one GPU
    torchrun --standalone --nproc_per_node=4 benchmarks/simclr_gpu.py   # 4 GPUs (DDP)

Under torchrun every configuration runs distributed (batch 512 per GPU, SyncBatchNorm,
gathered negatives); images/s are then for all GPUs together. Data: the bundled
``cifar10-sample`` (5,000 images) unless ``--real N`` takes N images of the real CIFAR-10
from ``../shared/data`` (see ``benchmarks/common.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from super_selfish import SimCLRSupervisor, data, distributed

CONFIGS = {  # name -> supervise() options
    "fp32": dict(precision="fp32"),
    "bf16": dict(precision="bf16"),
    "bf16 + channels-last": dict(precision="bf16", channels_last=True),
    "bf16 + channels-last + compile": dict(precision="bf16", channels_last=True, compile=True),
}


def train_images(real: int) -> data.ImageDataset:
    if real:
        from common import cifar10  # noqa: PLC0415 - only with --real

        return cifar10("train", real)
    return data.dataset("cifar10-sample")


def run(
    name: str, options: dict[str, Any], train: data.ImageDataset, args: argparse.Namespace
) -> dict[str, Any]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    sup = SimCLRSupervisor(train, backbone=args.backbone, seed=0)
    started = time.perf_counter()
    history = sup.supervise(
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        name=f"store/bench_simclr_gpu_{name.replace(' ', '')}",
        progress=False,
        save=False,
        **options,
    )
    torch.cuda.synchronize()
    steady = history[1:] or history
    return {
        "config": name,
        "images_per_s": sum(r["images_per_s"] for r in steady) / len(steady),
        "first_epoch_s": history[0]["seconds"],
        "loss": history[-1]["loss"],
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "total_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cifar-resnet18")
    parser.add_argument("--batch-size", type=int, default=512, help="per GPU")
    parser.add_argument("--epochs", type=int, default=4, help="the first one is warm-up")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--real",
        type=int,
        default=0,
        help="use N real CIFAR-10 training images instead of the sample",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=list(CONFIGS),
        help="run only these configurations",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit(
            "benchmarks/simclr_gpu.py needs a CUDA GPU (none found); "
            "see benchmarks/simclr_cpu.py for the CPU benchmark."
        )
    torch.backends.cudnn.benchmark = True
    train = train_images(args.real)
    rows: list[dict[str, Any]] = []
    for name, options in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        rows.append(run(name, options, train, args))
        if distributed.is_main_process():
            print(f"{name}: {rows[-1]['images_per_s']:.0f} img/s", flush=True)
    if distributed.is_main_process():
        gpus = distributed.world_size()
        print(
            f"\nSimCLR, {args.backbone}, batch {args.batch_size} per GPU x {gpus} GPU(s), "
            f"{len(train)} images at 32 px, {args.epochs} epochs (first one excluded), "
            f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n"
        )
        print(
            "| configuration | images/s | speed-up | first epoch (s) | peak memory (GiB) "
            "| last loss |\n|---|---|---|---|---|---|"
        )
        base = rows[0]["images_per_s"] if rows else 1.0
        for r in rows:
            print(
                f"| {r['config']} | {r['images_per_s']:.0f} | "
                f"{r['images_per_s'] / base:.2f}x | {r['first_epoch_s']:.1f} | "
                f"{r['peak_gib']:.2f} | {r['loss']:.4f} |"
            )
    distributed.cleanup()


if __name__ == "__main__":
    main()
