"""Minutes to each kNN accuracy level: full CIFAR-10, cifar-resnet18, within a wall-clock budget.

SimCLR (and ``--methods byol moco``) train on each method's own recipe (``supervise()``
defaults, scaled to the run) with the fastest settings the library has on the device: on
CUDA bf16 autocast, channels-last and ``torch.compile``, views made batch-wise on the GPU;
on CPU fp32 without compilation. Weighted kNN (k=200, T=0.1; memory: the training images,
queries: the test images) is scored before training and every ``--eval-every`` epochs; the
script prints the minutes (wall clock since the method's run started, evaluations and
compilation included) at which each accuracy level in ``--levels`` was first reached, and a
final table.

``--minutes`` is the budget per method. Unless ``--epochs`` is given, a short calibration
run (``--calibration-steps`` steps with the same settings, compilation included) measures the
step time, and the schedule gets as many epochs as fit in what is left of the budget after
the evaluations; the run is also cut when the budget is spent (the final kNN follows).
The anchor to beat on one GPU: lightly's CIFAR-10 benchmark reports SimCLR kNN 0.848 after
200 epochs (batch 512) in 87 minutes on an RTX A6000.

    python benchmarks/time_to_accuracy.py --minutes 12               # SimCLR, 50,000 images
    python benchmarks/time_to_accuracy.py --minutes 12 --methods simclr byol moco
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from super_selfish import data, evaluate, methods  # noqa: E402
from super_selfish.training import Callback  # noqa: E402

LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


class _BudgetSpent(Exception):
    """Raised from a callback to end a run whose wall-clock budget is spent."""


class _Clock(Callback):
    """kNN every ``every`` epochs, and the budget check after every step."""

    def __init__(self, run: Run, every: int, deadline: float):
        self.run, self.every, self.deadline = run, every, deadline

    def on_step_end(self, sup: Any, step: int, metrics: dict[str, float]) -> None:
        if time.perf_counter() > self.deadline:
            raise _BudgetSpent

    def on_epoch_end(self, sup: Any, record: dict[str, Any]) -> None:
        self.run.epochs_done = record["epoch"]
        self.run.train_seconds += record["seconds"]
        if record["epoch"] % self.every == 0:
            self.run.evaluate(sup, record["epoch"])


class Run:
    """One method's timed run: its kNN curve and the minutes to each level."""

    def __init__(self, method: str, train: Any, test: Any, args: argparse.Namespace):
        self.method, self.train, self.test, self.args = method, train, test, args
        self.curve: list[dict[str, float]] = []
        self.epochs_done, self.train_seconds, self.started = 0, 0.0, time.perf_counter()
        self.eval_seconds: list[float] = []

    def minutes(self) -> float:
        return (time.perf_counter() - self.started) / 60

    def evaluate(self, sup: Any, epoch: int) -> float:
        started = time.perf_counter()
        accuracy = evaluate.knn_accuracy(sup.get_backbone(), self.train, self.test)
        self.eval_seconds.append(time.perf_counter() - started)
        self.curve.append({"epoch": epoch, "minutes": self.minutes(), "knn": accuracy})
        print(
            f"{self.method} epoch {epoch}: kNN {accuracy:.4f} at {self.minutes():.2f} min",
            flush=True,
        )
        return accuracy

    def to_level(self) -> dict[float, Optional[float]]:
        """Minutes at which each level was first reached (None: not reached)."""
        return {
            level: next((p["minutes"] for p in self.curve if p["knn"] >= level), None)
            for level in self.args.levels
        }


def fastest(device: str) -> dict[str, Any]:
    """The fastest supervise() settings this library has on ``device``."""
    if device.startswith("cuda"):
        return dict(precision="bf16", channels_last=True, compile=True)
    return {}


def calibrate(method: str, train: Any, args: argparse.Namespace, device: str) -> float:
    """Seconds per training step, measured after the first steps (compilation excluded)."""
    n = min(len(train), args.calibration_steps * args.batch_size)
    subset = data.TensorImageDataset(train.images[:n], train.labels[:n])
    sup = methods.get(method)(subset, backbone=args.backbone, seed=args.seed)
    stamps: list[float] = []

    class Stamp(Callback):
        def on_step_end(self, _sup: Any, step: int, metrics: dict[str, float]) -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    sup.supervise(
        epochs=1,
        batch_size=args.batch_size,
        seed=args.seed,
        device=device,
        progress=False,
        save=False,
        callbacks=[Stamp()],
        **fastest(device),
    )
    steady = stamps[len(stamps) // 2 :] if len(stamps) >= 4 else stamps
    if len(steady) < 2:
        return float("inf")
    return (steady[-1] - steady[0]) / (len(steady) - 1)


def run_method(
    method: str, train: Any, test: Any, args: argparse.Namespace, device: str
) -> dict[str, Any]:
    """Calibrate (unless ``--epochs``), train within the budget, score kNN along the way."""
    run = Run(method, train, test, args)
    deadline = run.started + args.minutes * 60
    sup = methods.get(method)(train, backbone=args.backbone, seed=args.seed)
    sup.to(device)
    random_init = run.evaluate(sup, 0)
    steps_per_epoch = len(train) // args.batch_size
    epochs = args.epochs
    if epochs is None:
        step_s = calibrate(method, train, args, device)
        epoch_s = step_s * steps_per_epoch
        eval_s = run.eval_seconds[0]
        left = (deadline - time.perf_counter()) * 0.95 - eval_s  # the final kNN included
        epochs = max(1, math.floor(left / (epoch_s + eval_s / args.eval_every)))
        print(
            f"{method}: {step_s * 1000:.1f} ms per step, {epoch_s:.1f} s per epoch, kNN "
            f"{eval_s:.1f} s: {epochs} epochs fit in the budget",
            flush=True,
        )
    stopped = "schedule done"
    try:
        sup.supervise(
            epochs=epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            device=device,
            progress=False,
            save=False,
            callbacks=[_Clock(run, args.eval_every, deadline)],
            **fastest(device),
        )
    except _BudgetSpent:
        stopped = "budget spent"
    if not run.curve or run.curve[-1]["epoch"] != run.epochs_done or stopped != "schedule done":
        run.evaluate(sup, run.epochs_done)
    return {
        "method": method,
        "recipe": f"{sup.run_options['optimizer']} lr "
        f"{sup.base_lr:.3g} wd {sup.run_options['weight_decay']:g}",
        "epochs_planned": epochs,
        "epochs_done": run.epochs_done,
        "stopped": stopped,
        "random_init_knn": random_init,
        "final_knn": run.curve[-1]["knn"],
        "best_knn": max(p["knn"] for p in run.curve),
        "minutes": run.minutes(),
        "train_minutes": run.train_seconds / 60,
        "images_per_s": run.epochs_done
        * steps_per_epoch
        * args.batch_size
        / max(run.train_seconds, 1e-9),
        "to_level": {str(k): v for k, v in run.to_level().items()},
        "curve": run.curve,
    }


def table(rows: list[dict[str, Any]], levels: Sequence[float]) -> str:
    """The final markdown table: one row per method."""
    head = " | ".join(f"min to {level:g}" for level in levels)
    lines = [
        f"| method | recipe | epochs (planned) | final kNN | best kNN | random init | "
        f"images/s | train min | total min | {head} |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * len(levels),
    ]
    for r in rows:
        reached = " | ".join(
            "-" if r["to_level"][str(level)] is None else f"{r['to_level'][str(level)]:.1f}"
            for level in levels
        )
        lines.append(
            f"| {r['method']} | {r['recipe']} | {r['epochs_done']} "
            f"({r['epochs_planned']}) | {r['final_knn']:.4f} | {r['best_knn']:.4f} | "
            f"{r['random_init_knn']:.4f} | {r['images_per_s']:.0f} | "
            f"{r['train_minutes']:.1f} | {r['minutes']:.1f} | {reached} |"
        )
    return "\n".join(lines)


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", nargs="*", default=["simclr"], choices=["simclr", "byol", "moco"]
    )
    parser.add_argument("--minutes", type=float, default=12.0, help="budget per method")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="schedule length (default: as many as fit in the budget)",
    )
    parser.add_argument("--eval-every", type=int, default=5, help="kNN every N epochs")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--backbone", default="cifar-resnet18")
    parser.add_argument("--images", type=int, default=50_000, help="training images")
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--levels", type=float, nargs="*", default=list(LEVELS))
    parser.add_argument("--calibration-steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument(
        "--sample", action="store_true", help="images from the bundled cifar10-sample (CPU checks)"
    )
    parser.add_argument("--out", default=None, help="also write OUT.json and OUT.md")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    args = parse(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    if args.sample:
        from peer_parity import load_images  # noqa: PLC0415

        train, test = load_images(args.images, args.test_images, sample=True)
    else:
        from common import cifar10  # noqa: PLC0415 - needs ../shared/data

        train, test = cifar10("train", args.images), cifar10("test", args.test_images)
    where = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    header = (
        f"{len(train)} CIFAR-10 training images, {len(test)} test images, "
        f"{args.backbone}, batch {args.batch_size}, {where}, settings "
        f"{fastest(device) or 'fp32'}, budget {args.minutes:g} min per method, torch "
        f"{torch.__version__}"
    )
    print(header, flush=True)
    rows = [run_method(method, train, test, args, device) for method in args.methods]
    text = table(rows, args.levels)
    print("\n" + text, flush=True)
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps({"setup": header, "rows": rows}, indent=1))
        out.with_suffix(".md").write_text(header + "\n\n" + text + "\n")
    return rows


if __name__ == "__main__":
    main()
