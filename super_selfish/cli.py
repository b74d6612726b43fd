"""Command line: ``super-selfish train|eval|preview|compare|plot ...``.

``train`` trains a method and reports weighted-kNN accuracy of the backbone before and after;
``eval`` scores a saved run; ``preview`` writes an augmentation grid; ``compare`` trains several
methods under one budget and prints a table; ``plot`` draws a run's curves and embeddings.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Iterator, List, Optional

import torch

from . import augment, backbones, console, data, distributed, evaluate, methods, store
from .errors import SuperSelfishError
from .supervisor import Supervisor


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="cifar10-sample",
                        help="name (cifar10-sample, cifar10, cifar100, stl10) or image folder")
    parser.add_argument("--test-dataset", default=None,
                        help="labelled data for kNN; default: the test split of --dataset")
    parser.add_argument("--size", type=int, default=None, help="resize images to SIZE px")
    parser.add_argument("--root", default="datasets", help="where torchvision datasets live")


def _datasets(args: argparse.Namespace):
    train = data.dataset(args.dataset, "train", size=args.size, root=args.root)
    test_source = args.test_dataset or args.dataset
    test = data.dataset(test_source, "test", size=args.size, root=args.root) \
        if test_source in data.NAMES or args.test_dataset else None
    return train, test


@contextmanager
def _warnings_to_console() -> Iterator[None]:
    """Library warnings (e.g. a kNN k too large for the data) as console warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", evaluate.KNNWarning)
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        console.warn(message)


def _knn(backbone: torch.nn.Module, train: data.ImageDataset,
         test: Optional[data.ImageDataset], k: int) -> Optional[float]:
    if test is None or not train.has_labels or not test.has_labels:
        return None
    if not distributed.is_main_process():  # under torchrun: score once, on rank 0
        return None
    with _warnings_to_console():
        return evaluate.knn_accuracy(backbone, train, test, k=k)


def cmd_train(args: argparse.Namespace) -> int:
    train, test = _datasets(args)
    cls = methods.get(args.method)
    sup = cls(train, backbone=args.backbone, seed=args.seed)
    if args.device:
        sup.to(args.device)
    console.info(f"{cls.__name__} on {args.dataset} ({len(train)} images, "
                 f"{sup.image_size} px), backbone {args.backbone} "
                 f"({sup.backbone.feature_dim}-d features)")
    before = _knn(sup.get_backbone(), train, test, args.k)
    if before is not None:
        console.info(f"kNN accuracy before training: {before:.4f}")
    started = time.perf_counter()
    history = sup.supervise(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                            name=args.name, pretrained=args.resume,
                            lr_scheduler=args.schedule, weight_decay=args.weight_decay,
                            num_workers=args.num_workers, seed=args.seed,
                            precision=args.precision)
    minutes = (time.perf_counter() - started) / 60
    after = _knn(sup.get_backbone(), train, test, args.k)
    speed = sum(r["images_per_s"] for r in history) / max(1, len(history))
    summary = (f"{args.method}: {len(history)} epochs in {minutes:.1f} min, "
               f"{speed:.0f} images/s, final loss {history[-1]['loss']:.4f}"
               if history else f"{args.method}: nothing to train")
    if after is not None:
        summary += f"; kNN accuracy {before:.4f} -> {after:.4f}"
    console.success(summary + f"; checkpoint {store.checkpoint_path(args.name)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    sup = Supervisor.from_checkpoint(args.name)
    run = evaluate.run_data(getattr(sup, "data_record", None), dataset=args.dataset,
                            test_dataset=args.test_dataset, size=args.size, root=args.root)
    console.info(f"{args.name}: {sup.method} epoch {sup.epoch}; {run.describe()}")
    protocols: dict = {"knn": {"k": args.k}}
    if args.linear_epochs:
        protocols["linear"] = {"epochs": args.linear_epochs}
    with _warnings_to_console():
        results = evaluate.run_protocols(sup.get_backbone(), run.train, run.test, protocols)
    for result in results.values():
        console.info(f"{result.description}: top-1 accuracy {result.accuracy:.4f}")
    knn = results["knn_accuracy"]
    line = (f"{args.name}: {sup.method} epoch {sup.epoch}, kNN accuracy {knn.accuracy:.4f} "
            f"(k={knn.k})")
    if "linear_accuracy" in results:
        line += f", linear probe {results['linear_accuracy'].accuracy:.4f}"
    console.success(line + f" on {run.source} split {run.test_split!r}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    ds = data.materialize(data.dataset(args.dataset, "train", size=args.size, root=args.root))
    size = args.out_size or ds.image_shape[-1]
    # a seeded random pick: named datasets are stored sorted by class
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(args.seed))
    grid = augment.preview(args.preset, ds.images[pick[:args.n_images]], n_views=args.n_views,
                           size=size, generator=torch.Generator().manual_seed(args.seed))
    from PIL.PngImagePlugin import PngInfo

    text = PngInfo()
    for key in ("title", "columns"):
        text.add_text(key, grid.info[key])
    grid.save(args.out, pnginfo=text if str(args.out).lower().endswith(".png") else None)
    console.success(f"preview written to {args.out}: {grid.info['title']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    train, test = _datasets(args)
    described = None
    if args.max_images and args.max_images < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
        described = f"{args.dataset} (seeded random subset of {len(train):,})"
        train = data.materialize(train).subset(order[:args.max_images].sort().values)
    evals = {} if args.eval == ["none"] else {
        name: ({"k": args.k} if name == "knn" else {}) for name in args.eval}
    if evals and test is None:
        console.warn("no labelled test data for evaluation: pass --test-dataset "
                     "(or --eval none)")
        return 2
    with _warnings_to_console():
        table = compare(args.methods, train, backbone=args.backbone, epochs=args.epochs,
                        seconds=args.seconds, eval=evals, test_dataset=test, seed=args.seed,
                        batch_size=args.batch_size, lr=args.lr, device=args.device,
                        name=args.out, progress=not args.quiet, baseline=not args.no_baseline)
    if described is not None:  # the title and files say which images were used
        table.meta["dataset"] = described
        if args.out:
            table.to_json(f"{args.out}/comparison.json")
    print(table.to_markdown())
    if args.out:
        try:
            table.plot(path=f"{args.out}/comparison.png")
        except ImportError as exc:
            console.warn(f"no comparison plot: {exc}")
        console.success(f"comparison written to {args.out}/comparison.{{json,csv,png}}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_run

    ds = None
    if args.dataset is not None:
        split = "test" if args.dataset in data.NAMES else "train"
        ds = data.dataset(args.dataset, split, size=args.size, root=args.root)
    written = plot_run(args.name, ds, args.out_dir, embedding=args.embedding, n=args.n,
                       seed=args.seed)
    if not written:
        console.warn(f"nothing to plot for {args.name!r}")
        return 2
    console.success("wrote " + ", ".join(str(p) for p in written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="super-selfish", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a method, print kNN accuracy before and after")
    train.add_argument("method", help=f"one of: {', '.join(methods.available())}")
    _add_data_args(train)
    train.add_argument("--backbone", default="convnet-small",
                       help=f"one of: {', '.join(backbones.available())}")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--lr", type=float, default=None,
                       help="default: the method's default_lr (see its docstring)")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    train.add_argument("--num-workers", type=int, default=0)
    train.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    train.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--name", default="store/base", help="checkpoint name (store/NAME)")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint --name")
    train.add_argument("--k", type=int, default=200, help="neighbours for the kNN score")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="kNN (and linear probe) accuracy of a saved run, on the "
                        "data it was trained on")
    ev.add_argument("--name", required=True)
    ev.add_argument("--dataset", default=None,
                    help="default: the run's own training data (named in its checkpoint); its "
                         "training split is the kNN memory, its test/val split is scored")
    ev.add_argument("--test-dataset", default=None,
                    help="labelled held-out images; default: the test/val split of the data")
    ev.add_argument("--size", type=int, default=None,
                    help="resize images to SIZE px (default: the size the run was trained at)")
    ev.add_argument("--root", default="datasets", help="where torchvision datasets live")
    ev.add_argument("--k", type=int, default=200, help="neighbours for the kNN score")
    ev.add_argument("--linear-epochs", type=int, default=0,
                    help="also train a linear probe for this many epochs")
    ev.set_defaults(func=cmd_eval)

    pv = sub.add_parser("preview", help="write a grid of augmented views")
    pv.add_argument("preset", help="augmentation preset name")
    _add_data_args(pv)
    pv.add_argument("--out", default="preview.png")
    pv.add_argument("--out-size", type=int, default=None, help="view size (default: image size)")
    pv.add_argument("--n-images", type=int, default=8)
    pv.add_argument("--n-views", type=int, default=4)
    pv.add_argument("--seed", type=int, default=0,
                    help="which images are shown and how they are augmented")
    pv.set_defaults(func=cmd_preview)

    cp = sub.add_parser("compare", help="train several methods under one budget, print a table")
    cp.add_argument("methods", nargs="+",
                    help=f"one or more of: {', '.join(methods.available())}")
    _add_data_args(cp)
    cp.add_argument("--backbone", default="convnet-small",
                    help=f"one of: {', '.join(backbones.available())}")
    cp.add_argument("--epochs", type=int, default=None, help="epoch budget (default 10)")
    cp.add_argument("--seconds", type=float, default=None,
                    help="wall-clock budget per method (stops at the end of the step)")
    cp.add_argument("--eval", nargs="+", default=["knn"],
                    help="protocols: knn linear mlp finetune finetune-1%% finetune-10%% "
                         "(or none)")
    cp.add_argument("--k", type=int, default=200, help="neighbours for the kNN score")
    cp.add_argument("--batch-size", type=int, default=256)
    cp.add_argument("--lr", type=float, default=None,
                    help="the same for every method (default: each method's default_lr)")
    cp.add_argument("--seed", type=int, default=0)
    cp.add_argument("--max-images", type=int, default=None,
                    help="train on a seeded random subset of this many images")
    cp.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1")
    cp.add_argument("--out", default=None,
                    help="folder for checkpoints and comparison.{json,csv,png}")
    cp.add_argument("--quiet", action="store_true", help="no progress bars")
    cp.add_argument("--no-baseline", action="store_true",
                    help="skip the untrained-network row (and the gain columns)")
    cp.set_defaults(func=cmd_compare)

    pl = sub.add_parser("plot", help="write curves (and embedding, augmentation) PNGs of a run")
    pl.add_argument("--name", required=True, help="run name (checkpoint store/NAME)")
    pl.add_argument("--dataset", default=None,
                    help="labelled images for the embedding and augmentation plots (names use "
                         "their test split); without it only the curves are drawn")
    pl.add_argument("--size", type=int, default=None, help="resize images to SIZE px")
    pl.add_argument("--root", default="datasets", help="where torchvision datasets live")
    pl.add_argument("--embedding", default="tsne", choices=["tsne", "pca"])
    pl.add_argument("--n", type=int, default=1000, help="images in the embedding plot")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--out-dir", default=None, help="default: the run folder")
    pl.set_defaults(func=cmd_plot)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SuperSelfishError as exc:
        console.warn(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
