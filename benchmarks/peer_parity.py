r"""The same self-supervised training through super_selfish and through lightly, side by side.

For every method both libraries implement (SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins,
VICReg, DINO, SwAV, NNCLR) each library trains the same backbone (``convnet-small``, one set of
initial weights per seed, a fresh copy for each run) on the same real CIFAR-10 training images
with the same batch size, epochs and seed, each at its own recommended recipe:

- super_selfish: its defaults, ``methods.get(name)(train, backbone=...).supervise(epochs,
  batch_size, seed)`` (the method's recipe, heads and batched on-device views);
- lightly: the recipe of lightly's own CIFAR-10 benchmark
  (``docs/source/getting_started/benchmarks/cifar10_benchmark.py``): its per-sample transforms
  (blur off at 32 px, colour strength 0.5) in a torch ``DataLoader`` with worker processes,
  its heads (input width = the backbone's feature size) and losses, SGD at 6e-2 x b/128
  (SimSiam unscaled; SwAV Adam 1e-3 x b/128), weight decay 5e-4, cosine decay stepped per
  epoch, constant momentum 0.99 for the EMA encoders. VICReg is not in that benchmark; it
  follows lightly's Imagenette benchmark (LARS 0.3 x b/256, weight decay 1e-4, cosine with a
  warm-up of a tenth of the run, here stepped per step so a short run is not all warm-up).

The backbone normalises its own input, so lightly's transforms run without ``Normalize``.
Both backbones are scored by this library's weighted kNN (k=200, T=0.1) with the training
images as memory and a fixed set of test images; lightly's side is scored on the encoder its
benchmark scores (the online/student encoder). Each run goes in its own process, so its peak
memory (resident set of the training process on CPU, allocated memory on CUDA) is its own.
The ceiling is this library's training step fed with views made in advance (augmentation
taken out): how much of the step the augmentation still costs.

    OMP_NUM_THREADS=1 python benchmarks/peer_parity.py --methods simclr byol --epochs 1 \\
        --images 10000 --seeds 0 --out parity

writes ``parity.json`` and ``parity.md`` (the table) as each run finishes.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from super_selfish import backbones, data, evaluate, methods  # noqa: E402

METHODS = ("simclr", "moco", "byol", "simsiam", "barlow", "vicreg", "dino", "swav", "nnclr")
BACKBONE = "convnet-small"


# ---------------------------------------------------------------------------- shared set-up
def load_images(
    n_train: int, n_test: int, sample: bool = False
) -> tuple[data.TensorImageDataset, data.TensorImageDataset]:
    """``n_train`` real CIFAR-10 training images and ``n_test`` test images, in memory.

    ``sample=True`` takes them from the bundled ``cifar10-sample`` (for tests) instead of the
    full CIFAR-10 in ``../shared/data``.
    """
    if sample:
        train = data.materialize(data.dataset("cifar10-sample", "train"))
        test = data.materialize(data.dataset("cifar10-sample", "test"))
        pick = [
            torch.randperm(len(d), generator=torch.Generator().manual_seed(0))[:n]
            for d, n in ((train, n_train), (test, n_test))
        ]  # class-mixed subsets
        return (
            data.TensorImageDataset(train.images[pick[0]], train.labels[pick[0]]),
            data.TensorImageDataset(test.images[pick[1]], test.labels[pick[1]]),
        )
    from common import cifar10  # noqa: PLC0415 - needs ../shared/data

    return cifar10("train", n_train), cifar10("test", n_test)


def fresh_backbone(seed: int) -> backbones.Backbone:
    """The initial backbone of a seed: the same weights every time it is called."""
    torch.manual_seed(seed)
    return backbones.build(BACKBONE)


def peak_memory_mib(device: str) -> float:
    """Peak memory of this process: allocated CUDA memory, or the CPU resident set."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if platform.system() != "Darwin" else kib / 2**20


# ---------------------------------------------------------------------------- super_selfish
def run_ours(
    method: str,
    train: Any,
    backbone: nn.Module,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str,
) -> dict[str, Any]:
    """Train with this library's defaults; returns the backbone its method evaluates."""
    sup = methods.get(method)(train, backbone=backbone, seed=seed)
    started = time.perf_counter()
    history = sup.supervise(
        epochs=epochs, batch_size=batch_size, seed=seed, device=device, progress=False, save=False
    )
    seconds = time.perf_counter() - started
    options = sup.run_options
    return {
        "backbone": sup.get_backbone(),
        "seconds": seconds,
        "images_per_s": sum(r["images_per_s"] for r in history) / len(history),
        "loss": history[-1]["loss"],
        "recipe": f"{options['optimizer']} lr {sup.base_lr:.3g} wd "
        f"{options['weight_decay']:g} warm-up {options['warmup_epochs']:g} ep, "
        f"{options['lr_scheduler']}",
    }


def run_ceiling(
    method: str,
    train: Any,
    backbone: nn.Module,
    batch_size: int,
    seed: int,
    device: str,
    steps: int = 20,
    premade: int = 4,
) -> float:
    """Images/s of this library's training step fed with views made in advance.

    The supervisor is built on the full training set (queue sizes and the like as in the real
    run), then trains ``steps`` steps on a subset while ``augment_views`` hands out ``premade``
    batches of views computed before the clock starts.
    """
    sup = methods.get(method)(train, backbone=backbone, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    views = []
    for i in range(premade):
        images = train.images[i * batch_size : (i + 1) * batch_size]
        made = sup.views(images, generator=generator)
        views.append([v.to(device) for v in made])
    cycle = itertools.cycle(views)
    sup.augment_views = lambda images: next(cycle)  # type: ignore[method-assign]
    n = min(len(train), steps * batch_size)
    sup.dataset = data.TensorImageDataset(train.images[:n], train.labels[:n])
    history = sup.supervise(
        epochs=1, batch_size=batch_size, seed=seed, device=device, progress=False, save=False
    )
    return history[-1]["images_per_s"]


# ---------------------------------------------------------------------------- lightly
class _PILViews(torch.utils.data.Dataset):
    """uint8 CHW tensors -> PIL -> a lightly multi-view transform (per sample, in workers)."""

    def __init__(self, images: torch.Tensor, transform: Any):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        from torchvision.transforms.functional import to_pil_image  # noqa: PLC0415

        return self.transform(to_pil_image(self.images[i]))


class _LightlyModel(nn.Module):
    """One method as lightly's CIFAR-10 benchmark builds it, around a given backbone."""

    def __init__(self, method: str, backbone: nn.Module):
        super().__init__()
        from lightly.loss import (
            BarlowTwinsLoss,
            DINOLoss,
            NegativeCosineSimilarity,  # noqa
            NTXentLoss,
            SwaVLoss,
            VICRegLoss,
        )
        from lightly.models.modules import heads  # noqa: PLC0415
        from lightly.models.modules.memory_bank import MemoryBankModule  # noqa: F401
        from lightly.models.modules.nn_memory_bank import NNMemoryBankModule  # noqa

        self.method, self.backbone = method, backbone
        dim = backbone.feature_dim
        self.momentum_parts: list[tuple[nn.Module, nn.Module]] = []
        if method == "simclr":
            self.projection_head = heads.SimCLRProjectionHead(dim, 512, 128)
            self.criterion = NTXentLoss()
        elif method == "moco":
            self.projection_head = heads.MoCoProjectionHead(dim, 512, 128)
            self.criterion = NTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))
        elif method == "byol":
            self.projection_head = heads.BYOLProjectionHead(dim, 1024, 256)
            self.prediction_head = heads.BYOLPredictionHead(256, 1024, 256)
            self.criterion = NegativeCosineSimilarity()
        elif method == "simsiam":
            self.projection_head = heads.ProjectionHead(
                [
                    (dim, 2048, nn.BatchNorm1d(2048), nn.ReLU(inplace=True)),
                    (2048, 2048, nn.BatchNorm1d(2048), None),
                ]
            )
            self.prediction_head = heads.SimSiamPredictionHead(2048, 512, 2048)
            self.criterion = NegativeCosineSimilarity()
        elif method == "barlow":
            self.projection_head = heads.ProjectionHead(
                [(dim, 2048, nn.BatchNorm1d(2048), nn.ReLU(inplace=True)), (2048, 2048, None, None)]
            )
            self.criterion = BarlowTwinsLoss()
        elif method == "vicreg":
            self.projection_head = heads.BarlowTwinsProjectionHead(dim, 2048, 2048)
            self.criterion = VICRegLoss()
        elif method == "dino":
            self.projection_head = self._dino_head(heads, dim)
            self.criterion = DINOLoss(output_dim=2048)
        elif method == "swav":
            self.projection_head = heads.SwaVProjectionHead(dim, 512, 128)
            self.prototypes = heads.SwaVPrototypes(128, 512)
            self.criterion = SwaVLoss()
        elif method == "nnclr":
            self.projection_head = heads.ProjectionHead(
                [
                    (dim, 2048, nn.BatchNorm1d(2048), nn.ReLU(inplace=True)),
                    (2048, 256, nn.BatchNorm1d(256), None),
                ]
            )
            self.prediction_head = heads.NNCLRPredictionHead(256, 4096, 256)
            self.criterion = NTXentLoss()
            self.memory_bank = NNMemoryBankModule(size=(4096, 256))
        else:
            raise ValueError(f"method {method!r}: lightly counterpart not defined here")
        if method in ("moco", "byol", "dino"):
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.head_momentum = (
                self._dino_head(heads, dim)
                if method == "dino"
                else copy.deepcopy(self.projection_head)
            )  # as lightly builds them
            for part in (self.backbone_momentum, self.head_momentum):
                part.requires_grad_(False)
            self.momentum_parts = [
                (self.backbone, self.backbone_momentum),
                (self.projection_head, self.head_momentum),
            ]

    @staticmethod
    def _dino_head(heads: Any, dim: int) -> nn.Module:
        head = heads.DINOProjectionHead(dim, 2048, 256, 2048, batch_norm=True)
        head.layers = heads.ProjectionHead(
            [  # two layers on CIFAR-10, as lightly does
                (dim, 2048, nn.BatchNorm1d(2048), nn.GELU()),
                (2048, 256, None, None),
            ]
        ).layers
        return head

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def loss(self, views: Sequence[torch.Tensor], epoch: int) -> torch.Tensor:
        from lightly.models import utils  # noqa: PLC0415

        for online, target in self.momentum_parts:  # before the step, constant 0.99
            utils.update_momentum(online, target, m=0.99)
        m = self.method
        if m in ("simclr", "barlow", "vicreg"):
            z0, z1 = (self.projection_head(self.backbone(x)) for x in views[:2])
            return self.criterion(z0, z1)
        if m == "moco":

            def pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                b, shuffle = utils.batch_shuffle(b)
                q = self.projection_head(self.backbone(a))
                k = self.head_momentum(self.backbone_momentum(b))
                return q, utils.batch_unshuffle(k, shuffle)

            x0, x1 = views[:2]
            return 0.5 * (self.criterion(*pair(x0, x1)) + self.criterion(*pair(x1, x0)))
        if m == "byol":
            x0, x1 = views[:2]
            p0, p1 = (
                self.prediction_head(self.projection_head(self.backbone(x))) for x in (x0, x1)
            )
            with torch.no_grad():
                t0, t1 = (self.head_momentum(self.backbone_momentum(x)) for x in (x0, x1))
            return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        if m == "simsiam":
            z0, z1 = (self.projection_head(self.backbone(x)) for x in views[:2])
            p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
            return 0.5 * (self.criterion(z0.detach(), p1) + self.criterion(z1.detach(), p0))
        if m == "nnclr":
            z0, z1 = (self.projection_head(self.backbone(x)) for x in views[:2])
            p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
            z0 = self.memory_bank(z0.detach(), update=False)
            z1 = self.memory_bank(z1.detach(), update=True)
            return 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))
        if m == "dino":
            with torch.no_grad():
                teacher = [self.head_momentum(self.backbone_momentum(x)) for x in views[:2]]
            student = [self.projection_head(self.backbone(x)) for x in views]
            return self.criterion(teacher, student, epoch=epoch)
        # swav
        self.prototypes.normalize()
        out = [
            self.prototypes(nn.functional.normalize(self.projection_head(self.backbone(x)), dim=1))
            for x in views
        ]
        return self.criterion(out[:2], out[2:])


def _lightly_transform(method: str) -> Any:
    """The per-sample transform lightly's CIFAR-10 benchmark uses for ``method``."""
    from lightly import transforms as T  # noqa: PLC0415

    if method in ("byol", "barlow"):
        return T.BYOLTransform(
            view_1_transform=T.BYOLView1Transform(input_size=32, gaussian_blur=0.0, normalize=None),
            view_2_transform=T.BYOLView2Transform(input_size=32, gaussian_blur=0.0, normalize=None),
        )
    if method == "simsiam":
        return T.SimSiamTransform(input_size=32, gaussian_blur=0.0, normalize=None)
    if method == "swav":
        return T.SwaVTransform(
            crop_sizes=[32],
            crop_counts=[2],
            crop_min_scales=[0.14],
            crop_max_scales=[1.0],
            cj_strength=0.5,
            gaussian_blur=0,
            normalize=None,
        )
    if method == "dino":
        return T.DINOTransform(
            global_crop_size=32,
            n_local_views=0,
            cj_strength=0.5,
            gaussian_blur=(0, 0, 0),
            normalize=None,
        )
    if method == "vicreg":
        return T.VICRegTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0, normalize=None)
    return T.SimCLRTransform(
        input_size=32, cj_strength=0.5, gaussian_blur=0.0, normalize=None
    )  # simclr, moco, nnclr


def lightly_recipe(method: str, batch_size: int) -> str:
    """The optimizer line of lightly's recipe for ``method`` (as the table shows it)."""
    if method == "vicreg":
        return f"lars lr {0.3 * batch_size / 256:.3g} wd 1e-4 warm-up 0.1 run, cosine/step"
    if method == "swav":
        return f"adam lr {1e-3 * batch_size / 128:.3g} wd 1e-6, cosine/epoch"
    lr = 6e-2 if method == "simsiam" else 6e-2 * batch_size / 128
    return f"sgd lr {lr:.3g} wd 5e-4, cosine/epoch"


def run_lightly(
    method: str,
    train: Any,
    backbone: nn.Module,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str,
    workers: int,
) -> dict[str, Any]:
    """Train as lightly's CIFAR-10 benchmark does, in a plain PyTorch loop."""
    from lightly.utils.lars import LARS  # noqa: PLC0415
    from lightly.utils.scheduler import CosineWarmupScheduler  # noqa: PLC0415

    torch.manual_seed(seed)
    model = _LightlyModel(method, backbone).to(device)
    loader = torch.utils.data.DataLoader(
        _PILViews(train.images, _lightly_transform(method)),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    steps = epochs * len(loader)
    per_step = None
    if method == "vicreg":
        optimizer = LARS(
            model.trainable(), lr=0.3 * batch_size / 256, weight_decay=1e-4, momentum=0.9
        )
        per_step = CosineWarmupScheduler(optimizer, max(1, steps // 10), steps)
        per_epoch = None
    elif method == "swav":
        optimizer = torch.optim.Adam(
            model.trainable(), lr=1e-3 * batch_size / 128, weight_decay=1e-6
        )
        per_epoch = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    else:
        lr = 6e-2 if method == "simsiam" else 6e-2 * batch_size / 128
        optimizer = torch.optim.SGD(model.trainable(), lr=lr, momentum=0.9, weight_decay=5e-4)
        per_epoch = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    model.train()
    images, loss, started = 0, float("nan"), time.perf_counter()
    for epoch in range(epochs):
        for views in loader:
            views = [v.to(device, non_blocking=True) for v in views]
            out = model.loss(views, epoch)
            optimizer.zero_grad(set_to_none=True)
            out.backward()
            optimizer.step()
            if per_step is not None:
                per_step.step()
            images += len(views[0])
            loss = float(out.detach())
        if per_epoch is not None:
            per_epoch.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "backbone": model.backbone,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "loss": loss,
        "recipe": lightly_recipe(method, batch_size),
    }


# ---------------------------------------------------------------------------- one run
def run_job(method: str, library: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One (method, library, seed) run in this process: train, score, measure."""
    train, test = load_images(args.images, args.test_images, args.sample)
    backbone = copy.deepcopy(fresh_backbone(seed))
    if device_of(args).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    row: dict[str, Any] = {
        "method": method,
        "library": library,
        "seed": seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "images": len(train),
        "test_images": len(test),
    }
    if library == "ceiling":
        row["images_per_s"] = run_ceiling(
            method,
            train,
            backbone,
            args.batch_size,
            seed,
            device_of(args),
            steps=args.ceiling_steps,
        )
        return row
    if library == "random":
        row["knn"] = evaluate.knn_accuracy(backbone, train, test)
        return row
    if library == "super_selfish":
        result = run_ours(
            method, train, backbone, args.epochs, args.batch_size, seed, device_of(args)
        )
    else:
        result = run_lightly(
            method,
            train,
            backbone,
            args.epochs,
            args.batch_size,
            seed,
            device_of(args),
            args.workers,
        )
    row.update({k: v for k, v in result.items() if k != "backbone"})
    row["minutes"] = row.pop("seconds") / 60
    row["peak_mib"] = peak_memory_mib(device_of(args))
    row["knn"] = evaluate.knn_accuracy(result["backbone"], train, test)
    return row


def device_of(args: argparse.Namespace) -> str:
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def run_isolated(method: str, library: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`run_job` in a child process (its own peak memory); returns its row."""
    command = [
        sys.executable,
        __file__,
        "--job",
        method,
        library,
        str(seed),
        "--epochs",
        str(args.epochs),
        "--images",
        str(args.images),
        "--test-images",
        str(args.test_images),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--ceiling-steps",
        str(args.ceiling_steps),
    ]
    command += (["--device", args.device] if args.device else []) + (
        ["--sample"] if args.sample else []
    )
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {
            "method": method,
            "library": library,
            "seed": seed,
            "error": " | ".join(tail) or f"exit {done.returncode}",
        }
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------- the table
def _mean(rows: list[dict[str, Any]], key: str) -> Optional[float]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]], methods_order: Sequence[str]) -> str:
    """Markdown table: per method, lightly's row and ours, means over seeds."""
    lines = [
        "| method | library | recipe | kNN acc | random-init kNN | images/s | peak MiB "
        "| minutes | ours / peer images/s | ours / ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in methods_order:
        mine = [r for r in rows if r["method"] == method and "error" not in r]
        rnd = _mean([r for r in mine if r["library"] == "random"], "knn")
        ceiling = _mean([r for r in mine if r["library"] == "ceiling"], "images_per_s")
        peer_speed = _mean([r for r in mine if r["library"] == "lightly"], "images_per_s")
        for library in ("lightly", "super_selfish"):
            runs = [r for r in mine if r["library"] == library]
            if not runs:
                continue
            knn = [r["knn"] for r in runs]
            knn_text = " / ".join(f"{k:.4f}" for k in knn)
            speed = _mean(runs, "images_per_s")
            ratio = (
                f"{speed / peer_speed:.2f}x"
                if library == "super_selfish" and speed and peer_speed
                else ""
            )
            of_ceiling = (
                f"{speed / ceiling:.0%} of {ceiling:.0f}"
                if library == "super_selfish" and speed and ceiling
                else ""
            )
            lines.append(
                f"| {method} | {library} | {runs[0].get('recipe', '')} | {knn_text} | "
                f"{_fmt(rnd, '.4f')} | {_fmt(speed, '.0f')} | "
                f"{_fmt(_mean(runs, 'peak_mib'), '.0f')} | "
                f"{_fmt(_mean(runs, 'minutes'), '.1f')} | {ratio} | {of_ceiling} |"
            )
    errors = [r for r in rows if "error" in r]
    for r in errors:
        lines.append(f"\n{r['method']} {r['library']} seed {r['seed']}: FAILED {r['error']}")
    return "\n".join(lines)


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--libraries",
        nargs="*",
        default=["lightly", "super_selfish", "ceiling"],
        choices=["lightly", "super_selfish", "ceiling"],
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--images", type=int, default=10_000, help="training images (kNN memory)")
    parser.add_argument("--test-images", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--workers", type=int, default=2, help="lightly's DataLoader workers")
    parser.add_argument("--ceiling-steps", type=int, default=20)
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="take the images from the bundled cifar10-sample (quick checks)",
    )
    parser.add_argument("--out", default="parity", help="writes OUT.json and OUT.md")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every job in this process (peak memory is then cumulative)",
    )
    parser.add_argument(
        "--job", nargs=3, metavar=("METHOD", "LIBRARY", "SEED"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def machine_state() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{platform.node()}, {os.cpu_count()} CPUs, load average {load[0]:.1f}, "
        f"{torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    args = parse(argv)
    if args.job:
        method, library, seed = args.job
        print(json.dumps(run_job(method, library, int(seed), args)), flush=True)
        return []
    run = (
        (lambda m, lib, s: run_job(m, lib, s, args))
        if args.in_process
        else (lambda m, lib, s: run_isolated(m, lib, s, args))
    )
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    header = (
        f"{args.images} CIFAR-10 training images (kNN memory), {args.test_images} test "
        f"images, {BACKBONE}, batch {args.batch_size}, {args.epochs} epoch(s), seeds "
        f"{args.seeds}, lightly DataLoader workers {args.workers}; {machine_state()}"
    )
    print(header, flush=True)
    for seed in args.seeds:
        rnd = run("simclr", "random", seed)  # the initial backbone is the same for all methods
        for method in args.methods:
            rows.append({**rnd, "method": method})
            for library in args.libraries:
                started = time.perf_counter()
                rows.append(run(method, library, seed))
                r = rows[-1]
                print(
                    f"{method} {library} seed {seed}: "
                    + (
                        f"FAILED {r['error']}"
                        if "error" in r
                        else f"kNN {r.get('knn', float('nan')):.4f}, "
                        f"{r.get('images_per_s', float('nan')):.0f} img/s"
                    )
                    + f" ({(time.perf_counter() - started) / 60:.1f} min, load "
                    f"{os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                out.with_suffix(".json").write_text(
                    json.dumps({"setup": header, "rows": rows}, indent=1)
                )
                out.with_suffix(".md").write_text(
                    header + "\n\n" + table(rows, args.methods) + "\n"
                )
    print("\n" + table(rows, args.methods), flush=True)
    return rows


if __name__ == "__main__":
    main()
