"""Compare methods under one budget: same data, backbone, seed and evaluation protocol.

.. code-block:: python

    from super_selfish import compare

    table = compare(["simclr", "byol", "rotnet"], "cifar10-sample", budget=dict(epochs=5),
                    eval=("knn", "linear"))
    print(table)          # markdown table, protocol footnotes
    table.to_pandas()     # a DataFrame (with pandas installed)
    table.plot()          # bar charts (with matplotlib installed)

Every method is built with the same backbone architecture and ``seed`` (hence the same
initial weights), trained with the same budget, and its backbone is then scored by the same
protocols (:func:`super_selfish.evaluate.run_protocols`). The untrained network the methods
start from is scored by the same protocols too (the ``untrained`` row), and every method's
``<protocol>_gain`` column is its accuracy minus that row's: a method below zero learned
features worse than random weights. The global RNG of the caller is left as it was.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import re
import resource
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from . import console, data, evaluate, validate
from . import methods as method_registry
from .errors import ConfigError, check
from .supervisor import Callback, Supervisor

__all__ = [
    "compare",
    "ComparisonTable",
    "Budget",
    "parse_budget",
    "untrained_record",
    "bootstrap_difference",
    "summarize_seeds",
]

DEFAULT_EPOCHS = 10
_SCHEDULE_HORIZON = 10**6  # epochs passed to supervise() when only a time budget is given


# ---------------------------------------------------------------------------------- budget
class Budget(dict[str, float]):
    """``{"epochs": N}``, ``{"seconds": S}`` or both (stop at whichever comes first)."""

    @property
    def epochs(self) -> Optional[int]:
        """The epoch budget, or None."""
        return self.get("epochs")  # type: ignore[return-value]

    @property
    def seconds(self) -> Optional[float]:
        """The wall-clock budget in seconds, or None."""
        return self.get("seconds")

    def __str__(self) -> str:
        parts = []
        if self.epochs is not None:
            parts.append(f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s")
        return " or ".join(parts)


_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
}


def parse_budget(
    budget: Any = None, epochs: Optional[int] = None, seconds: Optional[float] = None
) -> Budget:
    """Normalise a budget.

    Args:
        budget: an int (epochs), ``dict(epochs=N)``, ``dict(seconds=S)``, both, or a string
            such as ``"5 epochs"``, ``"90s"``, ``"10 min"``.
        epochs: the epoch budget, instead of ``budget``.
        seconds: the wall-clock budget, instead of ``budget``.

    Returns:
        The :class:`Budget`; nothing given: ``DEFAULT_EPOCHS`` (10) epochs.

    Raises:
        ConfigError: both ``budget`` and a keyword are given, or a value is invalid.
    """
    expected = (
        "an int (epochs), dict(epochs=N) and/or dict(seconds=S), or a string such as "
        "'5 epochs' or '90s'"
    )
    if budget is not None and (epochs is not None or seconds is not None):
        raise ConfigError("Pass either budget=... or epochs=/seconds=, not both.")
    if budget is None:
        budget = {k: v for k, v in (("epochs", epochs), ("seconds", seconds)) if v is not None}
        if not budget:
            budget = {"epochs": DEFAULT_EPOCHS}
    if isinstance(budget, bool):
        raise ConfigError(f"Invalid budget={budget!r}: expected {expected}.")
    if isinstance(budget, int):
        budget = {"epochs": budget}
    elif isinstance(budget, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", budget.lower())
        unit = match.group(2) if match else None
        if match is None or unit not in ("", "ep", "epoch", "epochs", *_UNITS):
            raise ConfigError(f"Invalid budget={budget!r}: expected {expected}.")
        value = float(match.group(1))
        budget = (
            {"epochs": int(value)}
            if unit in ("", "ep", "epoch", "epochs")
            else {"seconds": value * _UNITS[unit]}
        )
    check(
        isinstance(budget, Mapping) and budget and set(budget) <= {"epochs", "seconds"},
        "budget",
        budget,
        expected,
    )
    out = Budget()
    if budget.get("epochs") is not None:
        value = budget["epochs"]
        validate.positive_int(value, "budget epochs")
        out["epochs"] = value
    if budget.get("seconds") is not None:
        value = budget["seconds"]
        validate.positive_number(value, "budget seconds", " of seconds")
        out["seconds"] = float(value)
    check(bool(out), "budget", budget, expected)
    return out


class _BudgetReached(Exception):
    """Raised by :class:`_Tracker` at the end of the step during which time ran out."""


class _Tracker(Callback):
    """Times the training loop, keeps every step's loss, enforces a wall-clock budget."""

    def __init__(self, seconds: Optional[float]):
        self.seconds = seconds
        self.losses: list[float] = []
        self.started: Optional[float] = None
        self.stopped: Optional[float] = None
        self.out_of_time = False

    def on_train_start(self, sup: Any) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, sup: Any, step: int, metrics: dict[str, float]) -> None:
        self.losses.append(float(metrics["loss"]))
        if self.seconds is not None and time.perf_counter() - self.started >= self.seconds:
            self.stopped = time.perf_counter()
            self.out_of_time = True
            raise _BudgetReached()  # the step is complete: weights are updated

    def on_train_end(self, sup: Any, history: list[dict[str, Any]]) -> None:
        self.stopped = time.perf_counter()

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.stopped or time.perf_counter()) - self.started


# ---------------------------------------------------------------------------------- memory
def _reset_peak_memory(device: torch.device) -> str:
    """Start a peak-memory measurement; returns what will be measured."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_memory_allocated"
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM) of this process
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return "process_peak_rss"
    except OSError:
        return "process_peak_rss_since_start"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


MEMORY_NOTES = {
    "cuda_max_memory_allocated": "peak_memory_mb: torch.cuda.max_memory_allocated during "
    "training (tensors only, reset before each method)",
    "process_peak_rss": "peak_memory_mb: peak resident memory of the whole process during "
    "training (Linux VmHWM, reset before each method; includes the "
    "dataset and Python itself)",
    "process_peak_rss_since_start": "peak_memory_mb: peak resident memory of the process "
    "since it started (resource.getrusage; cannot be reset, "
    "so a later method reports at least an earlier peak)",
}


# ---------------------------------------------------------------------------------- the table
_FIRST = ("method",)
#: Run measurements: the last columns of a table, and averaged over seeds (summarize_seeds).
_LAST = (
    "final_loss",
    "epochs",
    "steps",
    "train_seconds",
    "images_per_s",
    "peak_memory_mb",
    "eval_seconds",
)


class ComparisonTable(list):
    """A list of per-method records (dicts) with table, DataFrame, file and plot views.

    Record fields: ``method``, one ``<protocol>_accuracy`` per protocol (``knn_accuracy``,
    ``linear_accuracy``, ...), one ``<protocol>_gain`` per protocol (the accuracy minus the
    untrained baseline's, see :func:`compare`), ``knn_k`` (the neighbours kNN used),
    ``final_loss`` (mean training loss over the last epoch's worth of steps; each method's
    own objective, so not comparable across methods), ``epochs`` (completed, fractional
    under a time budget), ``steps``, ``lr``, ``train_seconds`` (wall-clock of the training
    loop), ``images_per_s``, ``peak_memory_mb`` (see :attr:`notes`), ``eval_seconds``,
    ``baseline`` (the label of the untrained row a method is compared with; a baseline row
    names itself), plus ``backbone``, ``budget`` and ``seed``. :attr:`protocols` describes
    exactly how each accuracy was obtained; :attr:`meta` what was compared (dataset, image
    size, budget, batch size), used for the plot's title.

    Args:
        records: the rows.
        protocols: ``{accuracy column: how it was measured}``.
        notes: further notes printed under the table (memory measurement, settings).
        histories: each method's epoch records.
        backbones: each method's trained backbone.
        meta: what was compared (dataset, image size, budget, batch size).
    """

    def __init__(
        self,
        records: Sequence[dict[str, Any]] = (),
        *,
        protocols: Optional[dict[str, str]] = None,
        notes: Sequence[str] = (),
        histories: Optional[dict[str, list[dict[str, Any]]]] = None,
        backbones: Optional[dict[str, torch.nn.Module]] = None,
        meta: Optional[dict[str, Any]] = None,
    ):
        super().__init__(dict(r) for r in records)
        self.protocols: dict[str, str] = dict(protocols or {})
        self.notes: list[str] = list(notes)
        self.histories = dict(histories or {})
        self.backbones = dict(backbones or {})
        self.meta: dict[str, Any] = dict(meta or {})
        self.runs: list[dict[str, Any]] = []  # per-seed records of a multi-seed comparison

    @property
    def columns(self) -> list[str]:
        """The record fields in table order: method first, accuracies, gains, then the rest."""
        keys = list(dict.fromkeys(k for r in self for k in r))
        first = [k for k in _FIRST if k in keys]

        def with_summaries(metrics: list[str]) -> list[str]:
            return [
                k for m in metrics for k in (m, *(m + s for s in SUMMARY_SUFFIXES)) if k in keys
            ]

        accuracy = with_summaries([k for k in keys if k.endswith("_accuracy")])
        gain = with_summaries([k for k in keys if k.endswith("_gain")])
        last = [k for k in _LAST if k in keys]
        rest = [k for k in keys if k not in first + accuracy + gain + last]
        return first + accuracy + gain + last + rest

    @staticmethod
    def is_baseline(record: Mapping[str, Any]) -> bool:
        """Whether ``record`` is an untrained-baseline row (it names itself as baseline).

        Args:
            record: one row of the table.

        Returns:
            True for a baseline row.
        """
        return record.get("baseline") is not None and record.get("baseline") == record.get("method")

    @property
    def baselines(self) -> list[dict[str, Any]]:
        """The untrained-baseline rows."""
        return [r for r in self if self.is_baseline(r)]

    def best(self, metric: str = "knn_accuracy") -> dict[str, Any]:
        """The trained method's record with the highest ``metric`` (baseline rows excluded).

        Args:
            metric: a column, e.g. ``"knn_accuracy"``.

        Returns:
            That record (a baseline row only when no trained method has ``metric``).

        Raises:
            ConfigError: no record has ``metric``.
        """
        check(any(metric in r for r in self), "metric", metric, f"one of {self.columns}")
        candidates = [r for r in self if metric in r and not self.is_baseline(r)]
        return max(candidates or [r for r in self if metric in r], key=lambda r: r[metric])

    def to_pandas(self):
        """A ``pandas.DataFrame`` with one row per method (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "ComparisonTable.to_pandas() needs pandas: pip install pandas "
                "(or pip install super_selfish[viz])."
            ) from exc
        return pd.DataFrame(list(self), columns=self.columns)

    @staticmethod
    def _cell(column: str, value: Any, digits: int) -> str:
        """Accuracies with ``digits`` decimals, other numbers with ``digits`` significant
        digits (no exponent below 10^6).
        """
        if isinstance(value, float) and math.isfinite(value):
            if column.endswith(("_accuracy", "_accuracy_sd", "_gain_sd")):
                return f"{value:.{digits}f}"
            if column.endswith(("_gain", "_diff", "_diff_low", "_diff_high")):
                return f"{value:+.{digits}f}"
            return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
        return str(value)

    def to_markdown(self, digits: int = 4, notes: bool = True) -> str:
        """A GitHub-markdown table, followed by the protocol and memory notes.

        Args:
            digits: decimals of accuracies and gains, significant digits of other numbers.
            notes: append the protocol descriptions and notes.

        Returns:
            The Markdown text.
        """
        if not self:
            return "(empty comparison)"
        columns = self.columns
        rows = [[self._cell(c, r.get(c, ""), digits) for c in columns] for r in self]
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |"

        out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in rows]
        if notes:
            out += [""] + [f"- {key}: {text}" for key, text in self.protocols.items()]
            out += [f"- {text}" for text in self.notes]
        return "\n".join(out)

    def __repr__(self) -> str:
        return self.to_markdown()

    __str__ = __repr__

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def to_json(self, path: Union[str, os.PathLike]) -> Path:
        """Write records, protocols, notes and meta to a JSON file.

        Args:
            path: the file to write (its folder is created).

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            json.dump(
                {
                    "records": list(self),
                    "protocols": self.protocols,
                    "notes": self.notes,
                    "meta": self.meta,
                    "runs": self.runs,
                },
                handle,
                indent=1,
            )
        return path

    @classmethod
    def from_json(cls, path: Union[str, os.PathLike]) -> ComparisonTable:
        """Read a table written by :meth:`to_json` (without histories and backbones).

        Args:
            path: the JSON file.

        Returns:
            The :class:`ComparisonTable`.
        """
        with open(path) as handle:
            payload = json.load(handle)
        table = cls(
            payload["records"],
            protocols=payload.get("protocols"),
            notes=payload.get("notes", ()),
            meta=payload.get("meta"),
        )
        table.runs = list(payload.get("runs", []))
        return table

    def to_csv(self, path: Union[str, os.PathLike]) -> Path:
        """Write the records (one row per method, :attr:`columns` in order) to a CSV file.

        Args:
            path: the file to write (its folder is created).

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self)
        return path

    def plot(
        self,
        metrics: Optional[Sequence[str]] = None,
        path: Optional[Union[str, os.PathLike]] = None,
    ):
        """Bar charts per metric, baseline marked, titled with :attr:`meta` (see
        :func:`super_selfish.plots.plot_comparison`).

        Args:
            metrics: the columns to draw (default: the accuracies, then training time,
                throughput and peak memory).
            path: write a PNG there when given.

        Returns:
            The matplotlib ``Figure``.
        """
        from .plots import plot_comparison

        return plot_comparison(self, metrics, path)


# ---------------------------------------------------------------------------------- baseline
BASELINE_LABEL = "untrained"


def network_fingerprint(module: torch.nn.Module) -> str:
    """Identity of a network: its module types, parameter/buffer names, shapes and values.

    Two methods whose untrained backbones have equal fingerprints start from the same net.

    Args:
        module: the network.

    Returns:
        A hex SHA-1 digest.
    """
    digest = hashlib.sha1()
    for name, sub in module.named_modules():
        digest.update(f"{name}:{type(sub).__module__}.{type(sub).__qualname__};".encode())
    for key, value in module.state_dict().items():
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tensor.dtype}:{tuple(value.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _run_protocols(
    backbone: torch.nn.Module, memory: Any, test: Any, protocols: Mapping[str, Mapping[str, Any]]
) -> dict[str, evaluate.ProbeResult]:
    """:func:`evaluate.run_protocols`, its warnings kept in the results only: compare()
    warns once per message (every method would repeat the same kNN warning).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", evaluate.KNNWarning)
        return evaluate.run_protocols(backbone, memory, test, protocols)


def _warn_once(results: Mapping[str, evaluate.ProbeResult], warned: list[str]) -> None:
    for message in (w for r in results.values() for w in r.warnings):
        if message not in warned:
            warned.append(message)
            warnings.warn(message, evaluate.KNNWarning, stacklevel=3)


def _protocol_fields(results: Mapping[str, evaluate.ProbeResult]) -> dict[str, Any]:
    """Record fields of protocol results: each accuracy and the kNN ``k`` actually used."""
    fields: dict[str, Any] = {}
    for key, result in results.items():
        fields[key] = result.accuracy
        if result.k is not None:
            fields[key[: -len("_accuracy")] + "_k"] = result.k
    return fields


def untrained_record(
    backbone: torch.nn.Module,
    memory: Any,
    test: Any,
    protocols: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    label: str = BASELINE_LABEL,
) -> tuple[dict[str, Any], dict[str, evaluate.ProbeResult]]:
    """The baseline row: ``backbone`` as it is before any training, scored by ``protocols``
    on the same data as the trained methods.

    The caller's RNG is left as it was, so scoring the baseline does not change the run that
    follows; the backbone is only read (frozen protocols run it in eval mode under
    ``no_grad``, fine-tuning trains a copy).

    Args:
        backbone: the untrained network.
        memory: labelled images for the kNN memory / probe training.
        test: labelled held-out images.
        protocols: ``{name: options}`` as for :func:`super_selfish.evaluate.run_protocols`.
        seed: recorded in the row.
        label: the row's ``method`` and ``baseline`` name.

    Returns:
        The record and the protocol results.
    """
    started = time.perf_counter()
    with torch.random.fork_rng(
        devices=[d for d in [evaluate._device_of(backbone)] if d.type == "cuda"]
    ):
        results = _run_protocols(backbone, memory, test, protocols)
    record: dict[str, Any] = {
        "method": label,
        **_protocol_fields(results),
        "epochs": 0,
        "steps": 0,
        "eval_seconds": time.perf_counter() - started,
        "baseline": label,
        "backbone": getattr(backbone, "name", type(backbone).__name__),
        "budget": "none (untrained)",
        "seed": seed,
    }
    return record, results


def _with_gains(
    methods: list[dict[str, Any]], baselines: dict[str, dict[str, Any]], reference: dict[str, str]
) -> list[dict[str, Any]]:
    """Baseline rows first (labelled ``untrained``, or ``untrained (for a, b)`` when methods
    start from different networks), then the methods with ``<protocol>_gain`` columns: each
    accuracy minus that of the baseline row of the network the method started from.
    """
    groups: dict[str, list[str]] = {}
    for method, key in reference.items():
        groups.setdefault(key, []).append(method)
    labels = {
        key: BASELINE_LABEL
        if len(baselines) == 1
        else f"{BASELINE_LABEL} (for {', '.join(groups[key])})"
        for key in baselines
    }
    rows = []
    for key, base in baselines.items():
        rows.append(dict(base, method=labels[key], baseline=labels[key]))
    for record in methods:
        key = reference.get(record["method"])
        if key is None:
            rows.append(record)
            continue
        base = baselines[key]
        gains = {
            name[: -len("_accuracy")] + "_gain": record[name] - base[name]
            for name in record
            if name.endswith("_accuracy") and name in base
        }
        rows.append(dict(record, **gains, baseline=labels[key]))
    return rows


def _dataset_label(dataset: Any, train: data.ImageDataset) -> str:
    """How the comparison's title names the training data: the name or folder given, else
    the source a dataset object remembers, else its kind.
    """
    source: Optional[Union[str, os.PathLike]] = (
        dataset if isinstance(dataset, (str, os.PathLike)) else getattr(train, "source", None)
    )
    if source is None:
        return "in-memory images"
    name = os.fspath(source).rstrip("/\\")
    if os.path.isabs(name):  # the last two folders say enough (e.g. imagenette/train)
        name = os.path.join(*Path(name).parts[-2:])
    split = getattr(train, "split", None)
    return f"{name} ({split})" if split and os.path.basename(name) != split else name


# ---------------------------------------------------------------------------------- compare
MethodSpec = Union[str, type]


def _method_items(methods: Any) -> list[tuple[str, type]]:
    if isinstance(methods, (str, type)):
        methods = [methods]
    items = (
        list(methods.items())
        if isinstance(methods, Mapping)
        else [(m if isinstance(m, str) else getattr(m, "method", m.__name__), m) for m in methods]
    )
    check(len(items) > 0, "methods", methods, "at least one method name or Supervisor class")
    out = []
    for label, spec in items:
        cls = method_registry.get(spec) if isinstance(spec, str) else spec
        check(
            isinstance(cls, type) and issubclass(cls, Supervisor),
            "methods",
            spec,
            f"a registered method name (one of {method_registry.available()}) or a "
            "Supervisor subclass",
        )
        out.append((str(label), cls))
    labels = [label for label, _ in out]
    check(
        len(set(labels)) == len(labels),
        "methods",
        labels,
        "distinct names (pass a dict {label: method} to compare one method twice)",
    )
    return out


def _eval_sets(
    dataset: Any, test_dataset: Any, eval_train_dataset: Any, train: data.ImageDataset, wanted: bool
):
    if not wanted:
        return None, None
    if test_dataset is not None:
        test = data.dataset(test_dataset, "test")
    elif isinstance(dataset, str) and dataset in data.NAMES:
        test = data.dataset(dataset, "test")
    else:
        raise ConfigError(
            "compare(..., eval=...) needs labelled held-out images: pass "
            "test_dataset=... (or eval=() to skip evaluation)."
        )
    memory = train if eval_train_dataset is None else data.dataset(eval_train_dataset)
    if not memory.has_labels:
        raise ConfigError(
            "the training dataset has no labels, so it cannot serve as the "
            "evaluation training set: pass eval_train_dataset=... (labelled)."
        )
    if not test.has_labels:
        raise ConfigError("test_dataset has no labels: evaluation needs labelled test images.")
    return data.materialize(memory), data.materialize(test)


# ---------------------------------------------------------------------------------- pipelines
def _pipeline_label(spec: Any, position: int) -> str:
    """How a table row names an augmentation pipeline: the preset's name, else its position."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, (list, tuple)):
        names = [
            op
            if isinstance(op, str)
            else op.get("name", "?")
            if isinstance(op, Mapping)
            else getattr(op, "name", type(op).__name__)
            for op in spec
        ]
        return "ops " + "+".join(str(n) for n in names)
    return f"pipeline {position}"


def _augment_items(
    methods: Any, augment: Any, method_options: Optional[Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``compare(method, augment=[...])`` as a comparison of labelled copies of one method,
    each with its own ``augment`` option.
    """
    items = _method_items(methods)
    check(
        len(items) == 1,
        "methods",
        [label for label, _ in items],
        "exactly one method when augment=[...] compares pipelines",
    )
    ((method_label, cls),) = items
    if isinstance(augment, Mapping):
        pipelines = [(str(label), spec) for label, spec in augment.items()]
    else:
        check(
            isinstance(augment, (list, tuple)) and len(augment) > 0,
            "augment",
            augment,
            "a non-empty list of presets, op-spec lists, Pipelines or Views, or a dict "
            "{label: pipeline}",
        )
        pipelines = [(_pipeline_label(spec, i), spec) for i, spec in enumerate(augment)]
    labels = [label for label, _ in pipelines]
    check(
        len(set(labels)) == len(labels),
        "augment",
        labels,
        "distinct pipelines (pass a dict {label: pipeline} to name them)",
    )
    shared = dict((method_options or {}).get(method_label, {}))
    unknown = set(method_options or {}) - {method_label}
    check(
        not unknown,
        "method_options",
        sorted(unknown),
        f"only the compared method's label, {method_label!r}",
    )
    check(
        "augment" not in shared,
        "method_options",
        shared,
        "no 'augment' key: pass the pipelines as compare(augment=[...])",
    )
    return (
        {label: cls for label in labels},
        {label: dict(shared, augment=spec) for label, spec in pipelines},
    )


# ---------------------------------------------------------------------------------- seeds
BOOTSTRAP_RESAMPLES = 10_000
SUMMARY_SUFFIXES = ("_sd", "_diff", "_diff_low", "_diff_high")


def bootstrap_difference(
    first: Sequence[float],
    second: Sequence[float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Difference of means ``mean(second) - mean(first)`` and its percentile bootstrap CI.

    Each group is resampled with replacement at its own size, independently of the other
    (the foveation study's analysis resampled the second group at the first group's size).

    Args:
        first: the baseline's values (one per seed).
        second: the compared row's values.
        resamples: bootstrap resamples.
        level: the interval's coverage.
        seed: seed of the resampling, so that a table is reproducible.

    Returns:
        ``(difference, low, high)``.
    """
    a = torch.tensor([float(v) for v in first], dtype=torch.float64)
    b = torch.tensor([float(v) for v in second], dtype=torch.float64)
    check(
        len(a) > 0 and len(b) > 0,
        "values",
        (list(first), list(second)),
        "at least one value per group",
    )
    generator = torch.Generator().manual_seed(seed)
    pick_a = torch.randint(len(a), (resamples, len(a)), generator=generator)
    pick_b = torch.randint(len(b), (resamples, len(b)), generator=generator)
    differences = b[pick_b].mean(1) - a[pick_a].mean(1)
    tail = (1 - level) / 2
    low, high = torch.quantile(differences, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(b.mean() - a.mean()), float(low), float(high)


def _summary_metrics(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The numeric per-run fields that get a mean and spread over seeds: the accuracies and
    gains, and the run measurements the table lists last (:data:`_LAST`).
    """
    keys = dict.fromkeys(k for r in records for k in r)
    return [k for k in keys if k.endswith(("_accuracy", "_gain")) or k in _LAST]


def summarize_seeds(tables: Sequence[ComparisonTable], seeds: Sequence[int]) -> ComparisonTable:
    """One row per label from per-seed comparisons: means, standard deviations over seeds, and
    for accuracies the difference to the first trained row with its bootstrap CI (gains get a
    mean and standard deviation only).

    Args:
        tables: one single-seed comparison per seed, rows labelled alike.
        seeds: the seeds, in the order of ``tables``.

    Returns:
        The summary table; its ``runs`` attribute holds every per-seed record.
    """
    runs = [dict(record) for table in tables for record in table]
    labels = list(dict.fromkeys(r["method"] for r in runs))
    trained = [
        label
        for label in labels
        if not any(ComparisonTable.is_baseline(r) for r in runs if r["method"] == label)
    ]
    first = trained[0] if trained else None
    metrics = _summary_metrics(runs)
    rows = []
    for label in labels:
        group = [r for r in runs if r["method"] == label]
        row: dict[str, Any] = {"method": label}
        for metric in metrics:
            values = [float(r[metric]) for r in group if isinstance(r.get(metric), (int, float))]
            if not values:
                continue
            mean = sum(values) / len(values)
            row[metric] = mean
            if metric.endswith(("_accuracy", "_gain")) or metric == "images_per_s":
                spread = (
                    (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
                    if len(values) > 1
                    else 0.0
                )
                row[metric + "_sd"] = spread
            if metric.endswith("_accuracy") and label in trained and label != first:
                base = [float(r[metric]) for r in runs if r["method"] == first and metric in r]
                if base:
                    diff, low, high = bootstrap_difference(base, values)
                    row.update(
                        {
                            metric + "_diff": diff,
                            metric + "_diff_low": low,
                            metric + "_diff_high": high,
                        }
                    )
        for key in ("baseline", "backbone", "budget", "lr", "optimizer", "knn_k"):
            if key in group[0]:
                row[key] = group[0][key]
        row["seeds"] = " ".join(str(r["seed"]) for r in group)
        rows.append(row)
    last = tables[-1]
    notes = [n for n in last.notes if not n.startswith(("every method:", "seeds "))]
    notes += [
        note.replace(f", seed {seeds[-1]}", "")
        for note in last.notes
        if note.startswith("every method:")
    ]
    notes.append(
        f"seeds {', '.join(map(str, seeds))}: each value is the mean over seeds; "
        "<metric>_sd its standard deviation; <metric>_diff the difference of means "
        f"to {first!r} with a 95% bootstrap CI [<metric>_diff_low, <metric>_diff_high]"
        f" ({BOOTSTRAP_RESAMPLES:,} resamples of each row's seeds, independently)"
    )
    histories, backbones = {}, {}
    for table, each in zip(tables, seeds):
        histories.update({f"{k} (seed {each})": v for k, v in table.histories.items()})
        backbones.update({f"{k} (seed {each})": v for k, v in table.backbones.items()})
    meta = dict(last.meta, seed=list(seeds))
    summary = ComparisonTable(
        rows,
        protocols=last.protocols,
        notes=notes,
        histories=histories,
        backbones=backbones,
        meta=meta,
    )
    summary.runs = runs
    return summary


def compare(
    methods: Union[MethodSpec, Sequence[MethodSpec], Mapping[str, MethodSpec]],
    dataset: Any = "cifar10-sample",
    backbone: Any = "convnet-small",
    budget: Any = None,
    eval: Union[Sequence[str], Mapping[str, Any]] = ("knn",),
    test_dataset: Any = None,
    seed: int = 0,
    batch_size: int = 256,
    lr: Optional[float] = None,
    *,
    epochs: Optional[int] = None,
    seconds: Optional[float] = None,
    eval_train_dataset: Any = None,
    image_size: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
    method_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    supervise_options: Optional[Mapping[str, Any]] = None,
    callbacks: Union[Sequence[Callback], Callable[[str], Sequence[Callback]]] = (),
    name: Optional[str] = None,
    progress: bool = False,
    keep_backbones: bool = True,
    baseline: bool = True,
    augment: Optional[Union[Sequence[Any], Mapping[str, Any]]] = None,
    seeds: Optional[Sequence[int]] = None,
) -> ComparisonTable:
    """Train several methods under the same budget and score them the same way.

    With ``baseline=True`` (the default) the table starts with an ``untrained`` row: the
    network the methods start from, scored before any training by the same protocols on the
    same data, and each method gets a ``<protocol>_gain`` column (its accuracy minus the
    baseline's). A random network is a strong baseline for kNN and probes on small images,
    and a method can score below it; without this row the table cannot show that.

    What is fair when methods use different networks: each method is compared with the
    untrained version of exactly the network it starts from (same backbone name, seed and
    initial weights, found by comparing the weights), because that is what its training
    changed. Methods that share a backbone and seed share one baseline row; a method whose
    starting network differs (another backbone, a method that builds its own encoders, such
    as CMC's L and ab networks) gets its own row, ``untrained (for <methods>)``. Gains are
    then comparable across methods (what training added), accuracies across different
    networks are not (they also measure the architecture).

    Args:
        methods: registry names (``super_selfish.methods.available()``), Supervisor classes,
            or a dict ``{label: name or class}``.
        dataset: training images (anything :func:`super_selfish.data.dataset` accepts; names
            use their ``train`` split). Labels are never used for training.
        backbone: the architecture every method gets: a registry name, or a module (each
            method trains its own deep copy, so all start from the same weights).
        budget: ``epochs`` (int, ``dict(epochs=N)``) or wall-clock ``dict(seconds=S)``, or both
            (see :func:`parse_budget`; also ``epochs=``/``seconds=``). With a time budget
            training stops at the end of the step during which the time ran out (measured
            from the first step's start, setup excluded); the learning-rate/momentum
            schedules then use ``epochs`` as their horizon when given (else a constant
            horizon of 10^6 epochs, and no warm-up unless ``supervise_options`` sets one).
        eval: protocols, names or ``{name: options}`` (``knn``, ``linear``, ``mlp``,
            ``finetune``, ``finetune-1%``, ``finetune-10%``; see
            :func:`super_selfish.evaluate.run_protocols`); ``()`` skips evaluation.
        test_dataset: labelled held-out images (default: the ``test`` split of a named
            dataset).
        seed: the same for every method: initial weights, data order, augmentations.
        batch_size: the same for every method.
        lr: the same for every method when given; by default each method trains on its
            own recipe (``Supervisor.recipe()``: optimizer, rate scaled to ``batch_size``,
            weight decay, warm-up, schedule; the rate is recorded in the ``lr`` column, the
            optimizer in ``optimizer``).
        epochs: the budget in epochs (instead of ``budget``).
        seconds: the wall-clock budget in seconds (instead of ``budget``).
        eval_train_dataset: labelled images for the kNN memory / probe training (default:
            ``dataset``).
        image_size: the training views' side for every method (default: each method's,
            from the data).
        device: where to train and evaluate (default: CUDA when available).
        method_options: constructor options per label, e.g. ``{"simclr":
            {"temperature": 0.2}}``.
        supervise_options: other ``supervise`` arguments for every method (e.g.
            ``weight_decay``, ``lr_scheduler``).
        callbacks: extra callbacks for every run, or ``callable(label) -> callbacks``.
        name: when given, checkpoints go to ``<name>/<label>`` and the table to
            ``<name>/comparison.{json,csv}``; otherwise nothing is written.
        progress: show each run's progress bar.
        keep_backbones: keep each method's trained backbone in ``.backbones``.
        baseline: score the untrained starting network(s) too (see above); ``False`` skips.
        augment: compare augmentation pipelines instead of methods: a list of presets (names),
            op-spec lists, ``Pipeline`` or ``Views`` objects, or a dict ``{label: pipeline}``,
            each trained with the one method ``methods`` names under the same budget, seeds,
            backbone and batch. The first pipeline is the baseline of the differences.
        seeds: run every method (or pipeline) once per seed and report each metric as the mean
            over seeds, its standard deviation (``<metric>_sd``), and for every row after the
            first its difference of means to the first row (``<metric>_diff``) with a 95%
            bootstrap confidence interval (``<metric>_diff_low``, ``<metric>_diff_high``:
            10,000 resamples of each row's seeds, drawn independently, as the foveation
            study's analysis). Replaces ``seed``; the per-seed records are in ``.runs``.

    Returns:
        A :class:`ComparisonTable`; ``.histories`` and ``.backbones`` hold each method's
        epoch records and trained backbone, ``.meta`` the dataset, image size, budget and
        batch size (the plot's title). With ``seeds`` its rows are the per-label summaries,
        and histories and backbones are keyed ``"<label> (seed <s>)"``.

    Example::

        table = compare("simclr", "cifar10-sample", budget=3, eval=("knn", "linear"),
                        augment=["simclr", "simclr_magnif"], seeds=[0, 1])
    """
    shared = _SharedSettings(
        dataset=dataset,
        backbone=backbone,
        budget=budget,
        eval=eval,
        test_dataset=test_dataset,
        batch_size=batch_size,
        lr=lr,
        epochs=epochs,
        seconds=seconds,
        eval_train_dataset=eval_train_dataset,
        image_size=image_size,
        device=device,
        supervise_options=supervise_options,
        callbacks=callbacks,
        progress=progress,
        keep_backbones=keep_backbones,
        baseline=baseline,
    )
    if augment is not None:
        methods, method_options = _augment_items(methods, augment, method_options)
    if seeds is None:
        return _compare_once(methods, shared, seed=seed, method_options=method_options, name=name)
    check(
        isinstance(seeds, (list, tuple))
        and len(seeds) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        and len(set(seeds)) == len(seeds),
        "seeds",
        seeds,
        "a non-empty list of distinct non-negative ints (or None for one seed=)",
    )
    tables: list[ComparisonTable] = []
    for each in seeds:
        console.info(f"compare: seed {each} ({len(tables) + 1} of {len(seeds)})")
        run_name = str(Path(name) / f"seed{each}") if name is not None else None
        tables.append(
            _compare_once(methods, shared, seed=each, method_options=method_options, name=run_name)
        )
    table = summarize_seeds(tables, seeds)
    if name is not None:
        table.to_json(Path(name) / "comparison.json")
        table.to_csv(Path(name) / "comparison.csv")
    return table


@dataclass(frozen=True)
class _SharedSettings:
    """The arguments of :func:`compare` that are the same for every seed it runs."""

    dataset: Any
    backbone: Any
    budget: Any
    eval: Union[Sequence[str], Mapping[str, Any]]
    test_dataset: Any
    batch_size: int
    lr: Optional[float]
    epochs: Optional[int]
    seconds: Optional[float]
    eval_train_dataset: Any
    image_size: Optional[int]
    device: Optional[Union[str, torch.device]]
    supervise_options: Optional[Mapping[str, Any]]
    callbacks: Union[Sequence[Callback], Callable[[str], Sequence[Callback]]]
    progress: bool
    keep_backbones: bool
    baseline: bool


def _compare_once(
    methods: Union[MethodSpec, Sequence[MethodSpec], Mapping[str, MethodSpec]],
    shared: _SharedSettings,
    *,
    seed: int,
    method_options: Optional[Mapping[str, Mapping[str, Any]]],
    name: Optional[str],
) -> ComparisonTable:
    """One seed of :func:`compare` (no ``augment`` or ``seeds``)."""
    dataset, backbone, eval = shared.dataset, shared.backbone, shared.eval
    batch_size, lr, supervise_options = shared.batch_size, shared.lr, shared.supervise_options
    items = _method_items(methods)
    plan = parse_budget(shared.budget, shared.epochs, shared.seconds)
    validate.non_negative_int(seed, "seed")
    if isinstance(eval, str):
        eval = (eval,)
    protocols = dict(eval) if isinstance(eval, Mapping) else {p: {} for p in eval}
    for p in protocols:  # fail before any training on a misspelt protocol
        evaluate.protocol_key(p)
    train = data.dataset(dataset, "train")
    memory, test = _eval_sets(
        dataset, shared.test_dataset, shared.eval_train_dataset, train, bool(protocols)
    )
    managed = {
        "lr",
        "epochs",
        "batch_size",
        "seed",
        "device",
        "progress",
        "callbacks",
        "save",
        "name",
        "pretrained",
        "resume",
    }
    clash = sorted(managed & set(supervise_options or {}))
    check(
        not clash,
        "supervise_options",
        clash,
        "no keys that compare() sets itself (use its "
        "own lr=, batch_size=, budget=, seed=, device=, callbacks=, name= arguments)",
    )
    method_options = dict(method_options or {})
    unknown = set(method_options) - {label for label, _ in items}
    check(not unknown, "method_options", sorted(unknown), "keys among the compared methods")
    target = (
        torch.device(shared.device)
        if shared.device is not None
        else (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    )
    rng_devices = [target] if target.type == "cuda" else []
    records, histories, backbones = [], {}, {}
    descriptions: dict[str, str] = {}
    warned: list[str] = []
    baselines: dict[str, dict[str, Any]] = {}  # network fingerprint -> untrained row
    reference: dict[str, str] = {}  # method label -> fingerprint of its starting network
    memory_kind = ""
    sizes: dict[int, None] = {}  # the view sizes the methods trained at
    for label, cls in items:
        with torch.random.fork_rng(devices=rng_devices):
            arch = copy.deepcopy(backbone) if isinstance(backbone, torch.nn.Module) else backbone
            sup = cls(
                train,
                backbone=arch,
                seed=seed,
                image_size=shared.image_size,
                **dict(method_options.get(label, {})),
            )
            sizes[sup.image_size] = None
            if shared.baseline and protocols:
                start = network_fingerprint(sup.get_backbone())
                reference[label] = start
                if start not in baselines:
                    console.info(f"compare: scoring the untrained network {label} starts from")
                    baselines[start], results = untrained_record(
                        sup.to(target).get_backbone(), memory, test, protocols, seed=seed
                    )
                    descriptions.update((k, r.description) for k, r in results.items())
                    _warn_once(results, warned)
            tracker = _Tracker(plan.seconds)
            extra = shared.callbacks(label) if callable(shared.callbacks) else shared.callbacks
            memory_kind = _reset_peak_memory(target)
            options = dict(
                lr=lr,
                epochs=plan.epochs or _SCHEDULE_HORIZON,
                warmup_epochs=None if plan.epochs else 0.0,
                batch_size=batch_size,
                seed=seed,
                device=target,
                progress=shared.progress,
                callbacks=[tracker, *extra],
                save=name is not None,
                name=str(Path(name) / label) if name is not None else "store/_compare",
            )
            options.update(supervise_options or {})
            console.info(f"compare: training {label} ({plan})")
            try:
                sup.supervise(**options)
            except _BudgetReached:
                pass
            train_seconds = tracker.elapsed
            peak = _peak_memory_mb(target)
            if tracker.out_of_time and name is not None:
                sup.save(options["name"])  # the state reached when time ran out
            steps = len(tracker.losses)
            per_epoch = len(sup.loader)
            tail = tracker.losses[-per_epoch:]
            record: dict[str, Any] = {
                "method": label,
                "final_loss": sum(tail) / len(tail) if tail else float("nan"),
                "epochs": round(steps / per_epoch, 3),
                "steps": steps,
                "lr": sup.base_lr,
                "optimizer": sup.run_options["optimizer"],
                "train_seconds": train_seconds,
                "images_per_s": steps * batch_size / max(train_seconds, 1e-9),
                "peak_memory_mb": peak,
            }
            if protocols:
                started = time.perf_counter()
                results = _run_protocols(sup.get_backbone(), memory, test, protocols)
                record.update(_protocol_fields(results))
                descriptions.update((k, r.description) for k, r in results.items())
                _warn_once(results, warned)
                record["eval_seconds"] = time.perf_counter() - started
            record.update(backbone=sup.backbone.name, budget=str(plan), seed=seed)
        records.append(record)
        histories[label] = list(sup.history)
        if shared.keep_backbones:
            backbones[label] = sup.get_backbone().eval()
        summary = ", ".join(f"{k} {record[k]:.4f}" for k in record if k.endswith("_accuracy"))
        console.info(
            f"compare: {label} done in {train_seconds:.1f} s" + (f", {summary}" if summary else "")
        )
        del sup
    arch = backbone if isinstance(backbone, str) else type(backbone).__name__
    notes = [
        MEMORY_NOTES[memory_kind],
        f"every method: backbone {arch}, budget {plan}, "
        f"batch {batch_size}, "
        + (
            f"lr {lr:g}"
            if lr is not None
            else "each method's default lr (its recipe, scaled to the batch)"
        )
        + f", seed {seed}",
    ]
    if baselines:
        notes.append(
            "untrained: the network a method starts from (same backbone, seed and "
            "initial weights), scored before training by the same protocols; "
            "<protocol>_gain = a method's accuracy minus its untrained row's"
        )
    notes += warned  # e.g. a kNN k too large for the smallest class
    meta = {
        "dataset": _dataset_label(dataset, train),
        "n_train": len(train),
        "image_size": next(iter(sizes)) if len(sizes) == 1 else list(sizes),
        "budget": str(plan),
        "batch_size": batch_size,
        "backbone": arch,
        "seed": seed,
    }
    if test is not None:
        meta["n_test"] = len(test)
    table = ComparisonTable(
        _with_gains(records, baselines, reference),
        protocols=descriptions,
        notes=notes,
        histories=histories,
        backbones=backbones,
        meta=meta,
    )
    if name is not None:
        table.to_json(Path(name) / "comparison.json")
        table.to_csv(Path(name) / "comparison.csv")
    return table
