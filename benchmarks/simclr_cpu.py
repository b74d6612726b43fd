"""SimCLR on CPU: super_selfish (batched on-device views) vs. the common per-sample pipeline.

Both rows train the same small conv net with the same projector, loss, optimizer, batch and
epochs on 10,000 real CIFAR-10 training images, then score weighted kNN (k=200, T=0.1) with
10,000 train / 2,000 test features. The "common way" is a torch DataLoader whose per-sample
torchvision transform makes the two views (PIL crops, jitter, blur in worker processes).

    python benchmarks/simclr_cpu.py [--epochs 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision.transforms as T
from common import cifar10
from torch.utils.data import DataLoader, Dataset

from super_selfish import SimCLRSupervisor, evaluate


class TwoViews(Dataset):
    """Per-sample PIL augmentation, the way most SimCLR code does it."""

    def __init__(self, images: torch.Tensor, size: int = 32):
        self.images = images
        self.transform = T.Compose(
            [
                T.RandomResizedCrop(size, scale=(0.08, 1.0)),
                T.RandomHorizontalFlip(),
                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5),
                T.ToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = T.functional.to_pil_image(self.images[i])
        return self.transform(img), self.transform(img)


def common_way(train, epochs: int, batch_size: int, workers: int, seed: int):
    torch.manual_seed(seed)
    sup = SimCLRSupervisor(train, seed=seed)  # same networks and loss, our loop not used
    params = [p for p in sup.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    loader = DataLoader(
        TwoViews(train.images),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    sup.train()
    images, started = 0, time.perf_counter()
    for _ in range(epochs):
        for v1, v2 in loader:
            z = sup.projector(torch.cat(sup.encode_views([v1, v2])))
            loss = sup.criterion(*z.chunk(2))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(v1)
    return sup, images / (time.perf_counter() - started)


def ours(train, epochs: int, batch_size: int, seed: int):
    sup = SimCLRSupervisor(train, seed=seed)
    started = time.perf_counter()
    sup.supervise(
        lr=1e-3,
        epochs=epochs,
        batch_size=batch_size,
        name="store/bench_simclr_cpu",
        progress=False,
        save=False,
    )
    seconds = time.perf_counter() - started
    return sup, epochs * (len(train) // batch_size) * batch_size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test = cifar10("train", 10_000), cifar10("test", 2_000)
    random_init = evaluate.knn_accuracy(
        SimCLRSupervisor(train, seed=args.seed).get_backbone(), train, test
    )
    rows = []
    for label, run in (
        (
            "super_selfish (batched views)",
            lambda: ours(train, args.epochs, args.batch_size, args.seed),
        ),
        (
            f"DataLoader + per-sample transforms ({args.workers} workers)",
            lambda: common_way(train, args.epochs, args.batch_size, args.workers, args.seed),
        ),
    ):
        sup, speed = run()
        rows.append((label, speed, evaluate.knn_accuracy(sup.get_backbone(), train, test)))
        print(f"{label}: {speed:.0f} img/s, kNN {rows[-1][2]:.4f}", flush=True)
    print(
        f"\nSimCLR, convnet-small, {len(train)} CIFAR-10 images, batch {args.batch_size}, "
        f"{args.epochs} epochs, {torch.get_num_threads()} threads; kNN k=200 on "
        f"{len(train)}/{len(test)}; random init kNN {random_init:.4f}\n"
    )
    print("| pipeline | images/s | kNN accuracy |\n|---|---|---|")
    for label, speed, acc in rows:
        print(f"| {label} | {speed:.0f} | {acc:.4f} |")
    print(f"\nspeed-up: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
