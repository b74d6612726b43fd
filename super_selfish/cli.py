"""Command line: ``super-selfish train|eval|embed|preview|compare|plot ...``.

``train`` trains a method and reports weighted-kNN accuracy of the backbone before and after;
``eval`` scores a saved run; ``embed`` writes a run's features of a dataset to a ``.npy``
file; ``preview`` writes an augmentation grid; ``compare`` trains several methods under one
budget and prints a table; ``plot`` draws a run's curves and embeddings.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import torch

from . import (
    __version__,
    augment,
    backbones,
    console,
    data,
    distributed,
    evaluate,
    methods,
    optim,
    store,
)
from .checkpoint import init_arguments
from .errors import ConfigError, SuperSelfishError, unknown_name
from .supervisor import Callback, Supervisor, validate_device


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="cifar10-sample",
        help="name (cifar10-sample, cifar10, cifar100, stl10) or image folder",
    )
    parser.add_argument(
        "--test-dataset",
        default=None,
        help="labelled data for kNN; default: the test split of --dataset",
    )
    parser.add_argument("--size", type=int, default=None, help="resize images to SIZE px")
    parser.add_argument("--root", default="datasets", help="where torchvision datasets live")


def _datasets(args: argparse.Namespace):
    skip = getattr(args, "skip_bad_images", False)
    train = data.dataset(
        args.dataset, "train", size=args.size, root=args.root, skip_bad_images=skip
    )
    test_source = args.test_dataset or args.dataset
    test = (
        data.dataset(test_source, "test", size=args.size, root=args.root, skip_bad_images=skip)
        if test_source in data.NAMES or args.test_dataset
        else None
    )
    return train, test


@contextmanager
def _warnings_to_console() -> Iterator[None]:
    """Library warnings (e.g. a kNN k too large for the data) as console warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", evaluate.KNNWarning)
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        console.warn(message)


def _knn(
    backbone: torch.nn.Module, train: data.ImageDataset, test: Optional[data.ImageDataset], k: int
) -> Optional[float]:
    if test is None or not train.has_labels or not test.has_labels:
        return None
    if not distributed.is_main_process():  # under torchrun: score once, on rank 0
        return None
    with _warnings_to_console():
        return evaluate.knn_accuracy(backbone, train, test, k=k)


#: ``--optimizer`` choices (``super_selfish.optim.OPTIMIZERS``): passed by name, so SGD and
#: LARS get the method recipe's momentum and Adam(W) its betas.
OPTIMIZERS = optim.OPTIMIZERS
#: ``train`` flags whose default is the method's own recipe: passed to supervise() only when
#: given (flag dest -> supervise() argument).
RECIPE_FLAGS = {
    "lr": "lr",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "warmup_epochs": "warmup_epochs",
    "schedule": "lr_scheduler",
}
#: Constructor arguments that have their own flag, so ``--set`` does not take them.
_OWN_FLAGS = {
    "dataset": "--dataset",
    "backbone": "--backbone",
    "augment": "--augment",
    "image_size": "--image-size",
    "norm": "--norm",
    "seed": "--seed",
}


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: int, float, bool (true/false), None (none/null) or the string.

    Args:
        text: the text after ``KEY=``.

    Returns:
        The value.
    """
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def method_options(cls: type, items: Any) -> dict[str, Any]:
    """``--set KEY=VALUE`` items (or a config mapping) checked against ``cls.__init__``.

    Keys must be constructor arguments of the method (the closest is suggested otherwise);
    values are parsed (:func:`parse_value`) and must fit the type of the argument's default
    (an int is accepted for a float). Ranges are checked by the method's constructor.

    Args:
        cls: the method's class.
        items: ``KEY=VALUE`` strings, or a mapping from a config file.

    Returns:
        The constructor options.

    Raises:
        ConfigError: an item is not ``KEY=VALUE``, names no argument of ``cls`` or has a
            value of the wrong type.
    """
    pairs: list[tuple[str, Any]] = []
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        for item in items or ():
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"Invalid --set {item!r}: expected KEY=VALUE, e.g. "
                    "--set temperature=0.2 queue_size=4096."
                )
            pairs.append((key.strip(), parse_value(text)))
    accepted = init_arguments(cls)
    options: dict[str, Any] = {}
    for key, value in pairs:
        if key in _OWN_FLAGS:
            raise ConfigError(f"Invalid --set {key}=...: use the flag {_OWN_FLAGS[key]}.")
        if key not in accepted:
            raise unknown_name(
                f"{getattr(cls, 'method', cls.__name__)} option",
                key,
                [k for k in accepted if k not in _OWN_FLAGS and k != "in_channels"],
            )
        options[key] = _fit_type(key, value, accepted[key])
    return options


def _fit_type(key: str, value: Any, parameter: Any) -> Any:
    """``value`` checked against the parameter's default type, else its annotation
    (``Optional[float]`` accepts None and numbers); an int becomes a float where one is
    expected. Parameters without either accept any value.
    """
    default, annotation = parameter.default, parameter.annotation
    words = set(
        re.findall(
            r"[A-Za-z_]+",
            annotation if isinstance(annotation, str) else getattr(annotation, "__name__", ""),
        )
    )
    if default is not parameter.empty and default is not None:
        words = {type(default).__name__} | (words & {"None", "Optional"})
    if not words & {"bool", "int", "float"} or words & {"Any", "str"}:
        return value
    if value is None and words & {"None", "Optional"}:
        return value
    if "bool" in words and isinstance(value, bool):
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and "float" in words:
        return float(value)
    if number and "int" in words and float(value).is_integer():
        return int(value)
    expected = " or ".join(sorted(w for w in words if w in ("bool", "int", "float", "None")))
    raise ConfigError(
        f"Invalid --set {key}={value!r}: expected {expected}"
        f"{f' (default {default!r})' if default is not parameter.empty else ''}."
    )


def _flag_key(dest: str) -> str:
    return dest.replace("_", "-")


class _RunConfigWriter(Callback):
    """Writes ``<run folder>/config.yaml`` when training starts: every ``train`` setting
    (the same keys as the flags; ``super-selfish train --config`` reads it back) and, under
    ``resolved``, what the run resolved them to (ignored when read).
    """

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.path: Path | None = None

    def on_train_start(self, sup: Any) -> None:
        if not distributed.is_main_process():
            return
        import yaml

        resolved = {
            "name": sup.run_name,
            "library_version": __version__,
            **_plain(getattr(sup, "run_options", {})),
            "hparams": _plain({"method": sup.method, **sup.hparams}),
        }
        self.path = store.run_dir(sup.run_name) / "config.yaml"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# super-selfish train settings (super-selfish {__version__}); repeat with:\n"
            f"#   super-selfish train --config {self.path}\n"
            "# 'resolved' records what the run used; it is ignored when read.\n"
        )
        self.path.write_text(
            header + yaml.safe_dump({**self.settings, "resolved": resolved}, sort_keys=False)
        )


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Only YAML-safe values (numbers, strings, bools, None, lists); others as strings."""

    def convert(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items()}
        return str(v)

    return {str(k): convert(v) for k, v in values.items()}


def _monitors(
    args: argparse.Namespace, train: data.ImageDataset, test: data.ImageDataset | None
) -> list[Callback]:
    from . import monitors

    wanted: list[Callback] = []
    if (args.knn_every or args.linear_every) and not train.has_labels:
        raise ConfigError(
            "Invalid --knn-every/--linear-every: expected a labelled "
            "--dataset (class sub-folders, or a named dataset)."
        )
    if args.knn_every:
        wanted.append(monitors.KNNMonitor(train, test, every=args.knn_every, k=args.k))
    if args.linear_every:
        wanted.append(monitors.LinearProbeMonitor(train, test, every=args.linear_every))
    if args.health:
        wanted.append(monitors.HealthMonitor())
    if args.tensorboard:
        wanted.append(monitors.TensorBoardLogger())
    return wanted


def _train_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Every ``train`` flag's value as a config mapping (flag spelling, ``set`` a mapping)."""
    settings: dict[str, Any] = {}
    for action in parser._actions:
        if action.dest in ("help", "config") or action.dest == argparse.SUPPRESS:
            continue
        value = getattr(args, action.dest, None)
        if action.dest == "set":
            value = dict(args.method_options)
        settings[_flag_key(action.dest)] = value
    return settings


def cmd_train(args: argparse.Namespace) -> int:
    """``super-selfish train``: train a method, print kNN accuracy before and after.

    Writes the checkpoint, the history and ``config.yaml`` (the settings used) in the run
    folder.

    Args:
        args: the parsed command line of this sub-command.

    Returns:
        The exit status: 0 on success.
    """
    if args.method is None:
        raise ConfigError(
            "Invalid METHOD: expected a method name (or a --config file "
            f"naming one); one of {', '.join(methods.available())}."
        )
    if args.resume and not args.name:
        raise ConfigError(
            "Invalid --resume without --name: expected the run to continue, "
            "e.g. --name store/simclr-20261202-141503 (a run started without "
            "--name gets a new name, printed when it starts)."
        )
    cls = methods.get(args.method)
    args.method_options = method_options(cls, args.set)
    if args.augment is not None and args.augment not in augment.available():
        raise unknown_name("augmentation preset", args.augment, augment.available())
    train, test = _datasets(args)
    if args.batch_size > len(train):  # before the kNN score and the model are computed
        raise ConfigError(
            f"Invalid --batch-size {args.batch_size}: expected at most the "
            f"{len(train)} training images (incomplete batches are dropped)."
        )
    callbacks = [
        _RunConfigWriter(_train_settings(args, args.parser)),
        *_monitors(args, train, test),
    ]
    built = {
        k: v
        for k, v in (("augment", args.augment), ("image_size", args.image_size))
        if v is not None
    }
    sup = cls(
        train,
        backbone=args.backbone,
        seed=args.seed,
        norm=args.norm,
        **built,
        **args.method_options,
    )
    if args.device:
        sup.to(args.device)
    console.info(
        f"{cls.__name__} on {args.dataset} ({len(train)} images, "
        f"{sup.image_size} px), backbone {args.backbone} "
        f"({sup.backbone.feature_dim}-d features)"
    )
    before = _knn(sup.get_backbone(), train, test, args.k)
    if before is not None:
        console.info(f"kNN accuracy before training: {before:.4f}")
    recipe = {
        api: getattr(args, dest)
        for dest, api in RECIPE_FLAGS.items()
        if getattr(args, dest) is not None
    }
    started = time.perf_counter()
    history = sup.supervise(
        epochs=args.epochs,
        batch_size=args.batch_size,
        name=args.name,
        pretrained=args.resume,
        num_workers=args.num_workers,
        seed=args.seed,
        precision=args.precision,
        keep_last=args.keep_last,
        keep_best=args.keep_best,
        overwrite=args.overwrite,
        grad_clip=args.grad_clip,
        callbacks=callbacks,
        ema=args.ema,
        **recipe,
    )
    minutes = (time.perf_counter() - started) / 60
    after = _knn(sup.get_backbone(), train, test, args.k)
    speed = sum(r["images_per_s"] for r in history) / max(1, len(history))
    summary = (
        f"{args.method}: {len(history)} epochs in {minutes:.1f} min, "
        f"{speed:.0f} images/s, final loss {history[-1]['loss']:.4f}"
        if history
        else f"{args.method}: nothing to train"
    )
    if after is not None:
        summary += f"; kNN accuracy {before:.4f} -> {after:.4f}"
    console.success(
        summary + f"; checkpoint {store.checkpoint_path(sup.run_name)}, "
        f"settings {store.run_dir(sup.run_name) / 'config.yaml'}"
    )
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """``super-selfish embed``: write a run's features of a dataset to a ``.npy`` file (and the
    labels, when the dataset has them, to ``<out>.labels.npy``).

    Args:
        args: the parsed command line of this sub-command.

    Returns:
        The exit status: 0 on success.
    """
    import numpy as np

    out = Path(args.out)
    if out.suffix != ".npy":
        raise ConfigError(f"Invalid --out {args.out!r}: expected a path ending in .npy.")
    sup = Supervisor.from_checkpoint(args.name)
    recorded = (getattr(sup, "checkpoint", None) or {}).get("data") or {}
    source = args.dataset or recorded.get("source")
    if source is None:
        raise ConfigError(
            f"Invalid --dataset: {args.name!r} does not record its dataset; "
            "expected --dataset NAME or FOLDER."
        )
    split = args.split or recorded.get("split") or "train"
    size = args.size or sup.image_size
    ds = data.dataset(
        source, split, size=size, root=args.root, skip_bad_images=args.skip_bad_images
    )
    if args.device:
        sup.to(args.device)
    features, labels = evaluate.extract_features(sup.get_backbone(), ds, args.batch_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, features.numpy())
    written = f"{out} ({features.shape[0]} x {features.shape[1]} float32)"
    if ds.has_labels:
        label_path = out.with_name(out.stem + ".labels.npy")
        np.save(label_path, labels.numpy())
        written += f" and labels {label_path}"
    console.success(
        f"{args.name} ({sup.method}, epoch {sup.epoch}) features of {source} "
        f"(split {split}, {size} px): {written}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``super-selfish eval``: kNN (and linear probe) accuracy of a saved run, on the data it
    recorded or the one given.

    Args:
        args: the parsed command line of this sub-command.

    Returns:
        The exit status: 0 on success.
    """
    sup = Supervisor.from_checkpoint(args.name)
    run = evaluate.run_data(
        getattr(sup, "data_record", None),
        dataset=args.dataset,
        test_dataset=args.test_dataset,
        size=args.size,
        root=args.root,
    )
    console.info(f"{args.name}: {sup.method} epoch {sup.epoch}; {run.describe()}")
    protocols: dict = {"knn": {"k": args.k}}
    if args.linear_epochs:
        protocols["linear"] = {"epochs": args.linear_epochs}
    with _warnings_to_console():
        results = evaluate.run_protocols(sup.get_backbone(), run.train, run.test, protocols)
    for result in results.values():
        console.info(f"{result.description}: top-1 accuracy {result.accuracy:.4f}")
    knn = results["knn_accuracy"]
    line = (
        f"{args.name}: {sup.method} epoch {sup.epoch}, kNN accuracy {knn.accuracy:.4f} (k={knn.k})"
    )
    if "linear_accuracy" in results:
        line += f", linear probe {results['linear_accuracy'].accuracy:.4f}"
    console.success(line + f" on {run.source} split {run.test_split!r}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """``super-selfish preview``: write a grid of augmented views of a few seeded images.

    Args:
        args: the parsed command line of this sub-command.

    Returns:
        The exit status: 0 on success.
    """
    ds = data.materialize(data.dataset(args.dataset, "train", size=args.size, root=args.root))
    size = args.out_size or ds.image_shape[-1]
    # a seeded random pick: named datasets are stored sorted by class
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(args.seed))
    grid = augment.preview(
        args.preset,
        ds.images[pick[: args.n_images]],
        n_views=args.n_views,
        size=size,
        generator=torch.Generator().manual_seed(args.seed),
    )
    from PIL.PngImagePlugin import PngInfo

    text = PngInfo()
    for key in ("title", "columns"):
        text.add_text(key, grid.info[key])
    grid.save(args.out, pnginfo=text if str(args.out).lower().endswith(".png") else None)
    console.success(f"preview written to {args.out}: {grid.info['title']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``super-selfish compare``: train several methods under one budget and print the table
    (with ``--out``, also its JSON, CSV and plot).

    Args:
        args: the parsed command line of this sub-command.

    Returns:
        The exit status: 0 on success; 2 when evaluation has no labelled test data.
    """
    from .compare import compare

    train, test = _datasets(args)
    described = None
    if args.max_images and args.max_images < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
        described = f"{args.dataset} (seeded random subset of {len(train):,})"
        train = data.materialize(train).subset(order[: args.max_images].sort().values)
    evals = (
        {}
        if args.eval == ["none"]
        else {name: ({"k": args.k} if name == "knn" else {}) for name in args.eval}
    )
    if evals and test is None:
        console.error("no labelled test data for evaluation: pass --test-dataset (or --eval none)")
        return 2
    augment = None
    if args.augment:  # a preset name, or op names joined by commas ("magnification,hflip")
        augment = [spec.split(",") if "," in spec else spec for spec in args.augment]
        if len(args.methods) != 1:
            console.error("--augment compares pipelines for one method: name exactly one")
            return 2
    with _warnings_to_console():
        table = compare(
            args.methods,
            train,
            backbone=args.backbone,
            epochs=args.epochs,
            seconds=args.seconds,
            eval=evals,
            test_dataset=test,
            seed=args.seed,
            batch_size=args.batch_size,
            lr=args.lr,
            device=args.device,
            name=args.out,
            progress=not args.quiet,
            baseline=not args.no_baseline,
            augment=augment,
            seeds=args.seeds,
        )
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
    """``super-selfish plot``: write a run's curves (and embedding, augmentation) PNGs.

    Args:
        args: the parsed command line of this sub-command.

    Returns:
        The exit status: 0 on success; 2 when there is nothing to plot.
    """
    from .plots import plot_run

    ds = None
    if args.dataset is not None:
        split = "test" if args.dataset in data.NAMES else "train"
        ds = data.dataset(args.dataset, split, size=args.size, root=args.root)
    written = plot_run(
        args.name, ds, args.out_dir, embedding=args.embedding, n=args.n, seed=args.seed
    )
    if not written:
        console.warn(f"nothing to plot for {args.name!r}")
        return 2
    console.success("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``super-selfish list``: print the registered names of one kind with their one-line
    descriptions.

    Args:
        args: the parsed command line of this sub-command.

    Returns:
        The exit status: 0 on success.
    """
    from .methods import registry as method_registry

    described = {"methods": method_registry.describe, "backbones": backbones.describe}
    entries = described[args.kind]()
    width = max(map(len, entries), default=0)
    for name, description in entries.items():
        print(f"{name:<{width}}  {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``super-selfish`` argument parser and its sub-commands.

    Returns:
        The parser; ``parser.commands`` maps each sub-command to its sub-parser.
    """
    parser = argparse.ArgumentParser(prog="super-selfish", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a method, print kNN accuracy before and after")
    train.add_argument(
        "method",
        nargs="?",
        default=None,
        help=f"one of: {', '.join(methods.available())} (or from --config)",
    )
    train.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="YAML file of settings, the same keys as these flags (e.g. "
        "batch-size: 64, set: {temperature: 0.2}); flags given on the "
        "command line win. Every run writes one: <run>/config.yaml",
    )
    _add_data_args(train)
    train.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out folder images that cannot be read (default: stop "
        "with an error naming them)",
    )
    train.add_argument(
        "--backbone", default="convnet-small", help=f"one of: {', '.join(backbones.available())}"
    )
    train.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="side of the training views (default: the images' size)",
    )
    train.add_argument(
        "--norm",
        default="batch",
        choices=list(backbones.NORMS),
        help="normalisation layers of the backbone",
    )
    train.add_argument(
        "--augment",
        default=None,
        metavar="PRESET",
        help="augmentation preset (default: the method's own; see "
        "super_selfish.augment.available())",
    )
    train.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="method options, e.g. --set temperature=0.2 queue_size=4096 "
        "(checked against the method's arguments; default: none)",
    )
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument(
        "--lr",
        type=float,
        default=None,
        help="default: the method's recipe, scaled to --batch-size (see "
        "'Training recipes' in the README)",
    )
    train.add_argument(
        "--optimizer",
        default=None,
        choices=sorted(OPTIMIZERS),
        help="default: the method's recipe (sgd and lars with its momentum, "
        "adam and adamw with its betas)",
    )
    train.add_argument(
        "--weight-decay", type=float, default=None, help="default: the method's recipe"
    )
    train.add_argument(
        "--schedule",
        default=None,
        choices=["constant", "cosine"],
        help="learning-rate schedule (default: the method's recipe)",
    )
    train.add_argument(
        "--warmup-epochs",
        type=float,
        default=None,
        help="linear warm-up length (default: the method's recipe)",
    )
    train.add_argument(
        "--ema",
        type=float,
        default=None,
        metavar="DECAY",
        help="also keep a Polyak average of the backbone, e.g. 0.999 "
        "(get_backbone('ema'); default: none)",
    )
    train.add_argument(
        "--grad-clip", type=float, default=None, help="max gradient norm (default: no clipping)"
    )
    train.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="data-loading processes (default: none for in-memory data, else "
        "half of the CPUs, at most 8)",
    )
    train.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="training precision"
    )
    train.add_argument(
        "--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cuda when available)"
    )
    train.add_argument("--seed", type=int, default=0, help="makes the run repeatable")
    train.add_argument(
        "--name",
        default=None,
        help="run name: checkpoint NAME.pt, files in NAME/ (default: a new "
        "store/METHOD-YYYYmmdd-HHMMSS per run)",
    )
    train.add_argument("--resume", action="store_true", help="continue the run --name")
    train.add_argument(
        "--overwrite", action="store_true", help="replace another method's checkpoint at --name"
    )
    train.add_argument(
        "--keep-last",
        type=int,
        default=0,
        help="also keep the last N epochs' checkpoints in NAME/checkpoints/",
    )
    train.add_argument(
        "--keep-best",
        action="store_true",
        help="also keep the lowest-loss epoch's checkpoint (NAME/checkpoints/best.pt)",
    )
    train.add_argument("--k", type=int, default=200, help="neighbours for the kNN score")
    train.add_argument(
        "--knn-every",
        type=int,
        default=0,
        metavar="N",
        help="kNN accuracy every N epochs into the history (0: off)",
    )
    train.add_argument(
        "--linear-every",
        type=int,
        default=0,
        metavar="N",
        help="linear-probe accuracy every N epochs into the history (0: off)",
    )
    train.add_argument(
        "--health",
        action="store_true",
        help="embedding spread and effective rank every epoch, collapse warnings",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="TensorBoard logs in NAME/tensorboard (needs tensorboard)",
    )
    train.set_defaults(func=cmd_train)

    em = sub.add_parser("embed", help="write a run's features of a dataset to a .npy file")
    em.add_argument("--name", required=True, help="run name (checkpoint NAME.pt)")
    em.add_argument(
        "--dataset", default=None, help="name or image folder (default: the data the run recorded)"
    )
    em.add_argument(
        "--split", default=None, help="train, val or test (default: the run's split, else train)"
    )
    em.add_argument(
        "--size",
        type=int,
        default=None,
        help="resize images to SIZE px (default: the run's image size)",
    )
    em.add_argument("--root", default="datasets", help="where torchvision datasets live")
    em.add_argument(
        "--skip-bad-images", action="store_true", help="leave out folder images that cannot be read"
    )
    em.add_argument(
        "--out",
        required=True,
        help="features file (.npy, N x D float32); labels, when the data has "
        "them, go to OUT.labels.npy beside it",
    )
    em.add_argument("--batch-size", type=int, default=512, help="images per forward pass")
    em.add_argument("--device", default=None, help="e.g. cpu, cuda (default: the CPU)")
    em.set_defaults(func=cmd_embed)

    ev = sub.add_parser(
        "eval", help="kNN (and linear probe) accuracy of a saved run, on the data it was trained on"
    )
    ev.add_argument("--name", required=True)
    ev.add_argument(
        "--dataset",
        default=None,
        help="default: the run's own training data (named in its checkpoint); its "
        "training split is the kNN memory, its test/val split is scored",
    )
    ev.add_argument(
        "--test-dataset",
        default=None,
        help="labelled held-out images; default: the test/val split of the data",
    )
    ev.add_argument(
        "--size",
        type=int,
        default=None,
        help="resize images to SIZE px (default: the size the run was trained at)",
    )
    ev.add_argument("--root", default="datasets", help="where torchvision datasets live")
    ev.add_argument("--k", type=int, default=200, help="neighbours for the kNN score")
    ev.add_argument(
        "--linear-epochs",
        type=int,
        default=0,
        help="also train a linear probe for this many epochs",
    )
    ev.set_defaults(func=cmd_eval)

    pv = sub.add_parser("preview", help="write a grid of augmented views")
    pv.add_argument("preset", help="augmentation preset name")
    _add_data_args(pv)
    pv.add_argument("--out", default="preview.png")
    pv.add_argument("--out-size", type=int, default=None, help="view size (default: image size)")
    pv.add_argument("--n-images", type=int, default=8)
    pv.add_argument("--n-views", type=int, default=4)
    pv.add_argument(
        "--seed", type=int, default=0, help="which images are shown and how they are augmented"
    )
    pv.set_defaults(func=cmd_preview)

    cp = sub.add_parser("compare", help="train several methods under one budget, print a table")
    cp.add_argument("methods", nargs="+", help=f"one or more of: {', '.join(methods.available())}")
    _add_data_args(cp)
    cp.add_argument(
        "--backbone", default="convnet-small", help=f"one of: {', '.join(backbones.available())}"
    )
    cp.add_argument("--epochs", type=int, default=None, help="epoch budget (default 10)")
    cp.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="wall-clock budget per method (stops at the end of the step)",
    )
    cp.add_argument(
        "--eval",
        nargs="+",
        default=["knn"],
        help="protocols: knn linear mlp finetune finetune-1%% finetune-10%% (or none)",
    )
    cp.add_argument("--k", type=int, default=200, help="neighbours for the kNN score")
    cp.add_argument("--batch-size", type=int, default=256)
    cp.add_argument(
        "--lr",
        type=float,
        default=None,
        help="the same for every method (default: each method's recipe, scaled to --batch-size)",
    )
    cp.add_argument("--seed", type=int, default=0)
    cp.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="run each method or pipeline once per seed; report mean, sd and a "
        "bootstrap CI of the difference to the first (replaces --seed)",
    )
    cp.add_argument(
        "--augment",
        nargs="+",
        default=None,
        help="compare augmentation pipelines for one method: preset names "
        "(super_selfish.augment.available()) or comma-joined op names; the "
        "first is the baseline",
    )
    cp.add_argument(
        "--max-images",
        type=int,
        default=None,
        help="train on a seeded random subset of this many images",
    )
    cp.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1")
    cp.add_argument(
        "--out", default=None, help="folder for checkpoints and comparison.{json,csv,png}"
    )
    cp.add_argument("--quiet", action="store_true", help="no progress bars")
    cp.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the untrained-network row (and the gain columns)",
    )
    cp.set_defaults(func=cmd_compare)

    pl = sub.add_parser("plot", help="write curves (and embedding, augmentation) PNGs of a run")
    pl.add_argument("--name", required=True, help="run name (checkpoint store/NAME)")
    pl.add_argument(
        "--dataset",
        default=None,
        help="labelled images for the embedding and augmentation plots (names use "
        "their test split); without it only the curves are drawn",
    )
    pl.add_argument("--size", type=int, default=None, help="resize images to SIZE px")
    pl.add_argument("--root", default="datasets", help="where torchvision datasets live")
    pl.add_argument("--embedding", default="tsne", choices=["tsne", "pca"])
    pl.add_argument("--n", type=int, default=1000, help="images in the embedding plot")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--out-dir", default=None, help="default: the run folder")
    pl.set_defaults(func=cmd_plot)

    ls = sub.add_parser("list", help="list the registered methods or backbones, one line each")
    ls.add_argument("kind", nargs="?", default="methods", choices=["methods", "backbones"])
    ls.set_defaults(func=cmd_list)
    _finish(parser)
    return parser


class _HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default (unless its help already says what the default is)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or action.default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        shown = "none" if action.default is None else "%(default)s"
        return f"{text} (default: {shown})".strip()


def _finish(parser: argparse.ArgumentParser) -> None:
    """Post-pass over every sub-command (whoever added it): defaults in ``--help``, the
    ``--version`` flag, and ``parser.commands`` (name -> sub-parser) for error messages.
    """
    parser.add_argument(
        "--version",
        action="version",
        version=f"super-selfish {__version__} (torch {torch.__version__})",
    )
    parser.formatter_class = _HelpFormatter
    commands = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands.update(action.choices)
    for sub in commands.values():
        sub.formatter_class = _HelpFormatter
        for action in sub._actions:
            if action.option_strings and not action.help and action.help != argparse.SUPPRESS:
                action.help = (
                    "(default: none)" if action.default is None else "(default: %(default)s)"
                )
    parser.commands = commands  # type: ignore[attr-defined]


def _positive(kind: Any) -> tuple[Callable[[Any], bool], str]:
    return (
        lambda v: isinstance(v, kind) and not isinstance(v, bool) and v > 0,
        f"a positive {'int' if kind is int else 'number'}",
    )


def _non_negative(kind: Any) -> tuple[Callable[[Any], bool], str]:
    return (
        lambda v: isinstance(v, kind) and not isinstance(v, bool) and v >= 0,
        f"a non-negative {'int' if kind is int else 'number'}",
    )


_NUMBER = (int, float)
#: Range checks of every command's numeric flags (by destination), before any work starts.
_FLAG_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": _non_negative(int),
    "batch_size": (lambda v: isinstance(v, int) and v >= 2, "an int of at least 2"),
    "k": _positive(int),
    "num_workers": _non_negative(int),
    "keep_last": _non_negative(int),
    "seed": _non_negative(int),
    "linear_epochs": _non_negative(int),
    "n_images": _positive(int),
    "n_views": _positive(int),
    "n": _positive(int),
    "max_images": _positive(int),
    "size": _positive(int),
    "out_size": _positive(int),
    "image_size": (lambda v: isinstance(v, int) and v >= 8, "an int of at least 8"),
    "knn_every": _non_negative(int),
    "linear_every": _non_negative(int),
    "lr": _positive(_NUMBER),
    "weight_decay": _non_negative(_NUMBER),
    "warmup_epochs": _non_negative(_NUMBER),
    "seconds": _positive(_NUMBER),
    "grad_clip": _positive(_NUMBER),
}


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad values (also those from a --config file) with the flag's name, exit 2."""
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        value = getattr(args, action.dest, None)
        if value is None:
            continue
        flag = max(action.option_strings, key=len)
        if (
            action.choices is not None
            and not isinstance(value, list)
            and value not in action.choices
        ):
            parser.error(
                f"argument {flag}: invalid choice: {value!r} (choose from "
                f"{', '.join(map(str, action.choices))})"
            )
        rule = _FLAG_RULES.get(action.dest)
        if rule is not None and not rule[0](value):
            parser.error(f"argument {flag}: invalid value {value!r}: expected {rule[1]}")
    try:
        validate_device(getattr(args, "device", None))
    except ConfigError as exc:
        reason = str(exc).split(": expected ", 1)[-1].replace("None, ", "")
        parser.error(f"argument --device: invalid value {args.device!r}: expected {reason}")


def _flagged(message: str, parser: argparse.ArgumentParser | None) -> str:
    """The library's ``name=value`` wording in a message becomes the CLI's ``--flag value``."""
    if parser is None:
        return message
    flags = {
        a.dest: max(a.option_strings, key=len)
        for a in parser._actions
        if a.option_strings and a.dest not in ("help", "version")
    }
    flags.update({"lr_scheduler": "--schedule", "pretrained": "--resume"})
    flags = {
        k: v
        for k, v in flags.items()
        if k.replace("_", "-") == v[2:] or k in ("lr_scheduler", "pretrained")
    }
    for dest, flag in flags.items():
        message = re.sub(rf"(?<![\w.(\-])(?<!, ){re.escape(dest)}=", f"{flag} ", message)
    return message


def _read_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Settings of a ``train --config`` file as sub-parser defaults (keys checked)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise ConfigError(f"Invalid --config {path!r}: {exc.strerror or exc}.") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid --config {path!r}: not valid YAML ({exc}).") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"Invalid --config {path!r}: expected a mapping of settings (key: value lines)."
        )
    dests = {a.dest for a in parser._actions if a.dest not in ("help", "config")}
    defaults: dict[str, Any] = {}
    for key, value in loaded.items():
        if key in ("resolved", "library_version"):
            continue  # what an earlier run resolved: informational
        dest = str(key).replace("-", "_")
        if dest not in dests:
            raise unknown_name("config key", key, sorted(_flag_key(d) for d in dests))
        if dest == "set":
            value = (
                [f"{k}={v}" for k, v in value.items()]
                if isinstance(value, dict)
                else list(value or [])
            )
        defaults[dest] = value
    return defaults


def main(argv: list[str] | None = None) -> int:
    """Run the command line (``super-selfish`` or ``python -m super_selfish.cli``).

    A ``train --config FILE`` sets that sub-command's defaults from the file first, so flags
    given on the command line win. Errors of the library and missing extras are printed as
    one line, with the flag that caused them, instead of a traceback.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on a library error or a missing extra
        (argparse itself exits with status 2 on malformed arguments).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = parser.commands  # type: ignore[attr-defined]
    command = next((a for a in argv if a in commands), None)
    sub = commands.get(command)
    try:
        if command == "train":
            pre = argparse.ArgumentParser(add_help=False)
            pre.add_argument("--config", default=None)
            config = pre.parse_known_args(argv[argv.index("train") + 1 :])[0].config
            if config is not None:
                sub.set_defaults(**_read_config(config, sub))
        args = parser.parse_args(argv)
        _check_args(sub, args)
        args.parser = sub
        return args.func(args)
    except SuperSelfishError as exc:
        console.error(_flagged(str(exc), sub))
        return 2
    except ImportError as exc:  # an optional extra (tensorboard, matplotlib...) is missing
        console.error(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
