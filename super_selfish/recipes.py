"""Each method's training recipe, in one place: :data:`RECIPES`.

``supervise()`` without ``lr``/``optimizer``/``weight_decay``/``warmup_epochs``/
``lr_scheduler`` takes them from the method's :class:`Recipe`, scaled to the run
(:meth:`Recipe.resolve`): the learning rate by the batch size (linearly or by the square root,
as the paper does), the warm-up clipped to a tenth of the run. Explicit arguments override.
The README's "Training recipes" table is generated from :data:`RECIPES`
(:func:`markdown_table`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from . import optim, validate
from .errors import check

SCALINGS = ("linear", "sqrt", "none")
SCHEDULES = ("cosine", "constant")
#: A recipe's warm-up never takes more than this share of a run (short CPU runs).
MAX_WARMUP_FRACTION = 0.1
#: An explicit ``lr`` more than this factor away from the recipe's rate, with the recipe's
#: optimizer, is warned about (it was likely chosen for another optimizer).
OFF_SCALE_RATIO = 30.0


@dataclass(frozen=True)
class Recipe:
    """How a method trains by default.

    Args:
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"lars"`` (see
            :data:`super_selfish.optim.OPTIMIZERS`).
        lr: the base learning rate, the one used at ``batch_size``.
        batch_size: the batch size ``lr`` refers to.
        scaling: how the rate follows the batch size: ``"linear"`` (``lr * b / batch_size``),
            ``"sqrt"`` (``lr * sqrt(b / batch_size)``) or ``"none"``.
        weight_decay: on weights (biases and normalisation weights never decay).
        momentum: SGD's and LARS's momentum.
        betas: Adam's and AdamW's coefficients.
        warmup_epochs: linear warm-up (clipped to a tenth of a run, see :meth:`resolve`).
        lars_exclude_1d: with LARS, leave biases and normalisation weights (tensors of at
            most one dimension) out of the layer-wise adaptation, as the papers do; False
            adapts them too.
        schedule: ``"cosine"`` (decay to 0 over the run, after the warm-up) or ``"constant"``.
        paper: where the recipe comes from.
        deviation: where and why this library's default differs from the paper's.
        factory: an optimizer factory that replaces ``optimizer``'s (for recipes built from a
            user class's ``default_optimizer``; not part of :data:`RECIPES`).
    """

    optimizer: str
    lr: float
    batch_size: int = 256
    scaling: str = "linear"
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 0.0
    lars_exclude_1d: bool = True
    schedule: str = "cosine"
    paper: str = ""
    deviation: str = ""
    factory: Optional[Callable[..., Any]] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check(
            self.factory is not None or self.optimizer in optim.OPTIMIZERS,
            "optimizer",
            self.optimizer,
            f"one of {sorted(optim.OPTIMIZERS)}",
        )
        validate.positive_number(self.lr, "lr")
        validate.positive_int(self.batch_size, "batch_size")
        check(self.scaling in SCALINGS, "scaling", self.scaling, f"one of {SCALINGS}")
        check(self.schedule in SCHEDULES, "schedule", self.schedule, f"one of {SCHEDULES}")
        validate.non_negative_number(self.weight_decay, "weight_decay")
        validate.non_negative_number(self.warmup_epochs, "warmup_epochs")

    def lr_for(self, batch_size: int) -> float:
        """The learning rate at ``batch_size`` by this recipe's scaling rule.

        Args:
            batch_size: the run's batch size.

        Returns:
            The starting learning rate.
        """
        ratio = batch_size / self.batch_size
        if self.scaling == "linear":
            return self.lr * ratio
        if self.scaling == "sqrt":
            return self.lr * math.sqrt(ratio)
        return self.lr

    def warmup_for(self, epochs: float) -> float:
        """The recipe's warm-up in a run of ``epochs``: at most a tenth of the run.

        Args:
            epochs: the run's length.

        Returns:
            The warm-up in epochs.
        """
        return min(self.warmup_epochs, MAX_WARMUP_FRACTION * epochs)

    def optimizer_factory(self, name: Optional[str] = None) -> Callable[..., Any]:
        """The factory of this recipe's optimizer, or of optimizer ``name`` with this recipe's
        momentum, betas and ``lars_exclude_1d``.

        Args:
            name: a name of :data:`super_selfish.optim.OPTIMIZERS`; None: the recipe's own
                (its ``factory`` when it has one).

        Returns:
            ``f(params, lr=...)`` building the optimizer.
        """
        if name is None and self.factory is not None:
            return self.factory
        return optim.factory(
            name or self.optimizer, self.momentum, self.betas, self.lars_exclude_1d
        )

    def resolve(
        self,
        batch_size: int,
        epochs: float,
        *,
        lr: Optional[float] = None,
        optimizer: Any = None,
        weight_decay: Optional[float] = None,
        warmup_epochs: Optional[float] = None,
        lr_scheduler: Any = None,
    ) -> dict[str, Any]:
        """The run's settings: each argument that is None comes from this recipe.

        Args:
            batch_size: the run's batch size (per process; the rate follows it).
            epochs: the run's length (the recipe's warm-up is clipped to a tenth of it).
            lr: an explicit learning rate (warned about when far from the scale of the
                recipe's optimizer and no optimizer is given).
            optimizer: a name of :data:`super_selfish.optim.OPTIMIZERS` (built with this
                recipe's momentum/betas and ``lars_exclude_1d``) or a callable
                ``f(params, lr=...)``.
            weight_decay: an explicit weight decay.
            warmup_epochs: explicit warm-up epochs.
            lr_scheduler: ``"cosine"``, ``"constant"`` or a callable of the optimizer.

        Returns:
            ``lr``, ``optimizer`` (a callable), ``optimizer_name``, ``weight_decay``,
            ``warmup_epochs``, ``lr_scheduler`` and ``from_recipe`` (the names of the
            settings that came from the recipe).
        """
        taken = []
        if optimizer is None:
            optimizer, name = self.optimizer_factory(), self.optimizer
            taken.append("optimizer")
            if lr is not None:
                self._warn_if_off_scale(lr, batch_size)
        elif isinstance(optimizer, str):
            name, optimizer = optimizer, self.optimizer_factory(optimizer)
        else:
            name = _callable_name(optimizer)
        if lr is None:
            lr = self.lr_for(batch_size)
            taken.append("lr")
        if weight_decay is None:
            weight_decay = self.weight_decay
            taken.append("weight_decay")
        if lr_scheduler is None:
            lr_scheduler = self.schedule
            taken.append("lr_scheduler")
        if warmup_epochs is None:
            warmup_epochs = 0.0 if callable(lr_scheduler) else self.warmup_for(epochs)
            taken.append("warmup_epochs")
        return {
            "lr": lr,
            "optimizer": optimizer,
            "optimizer_name": name,
            "weight_decay": weight_decay,
            "warmup_epochs": warmup_epochs,
            "lr_scheduler": lr_scheduler,
            "from_recipe": taken,
        }

    def _warn_if_off_scale(self, lr: float, batch_size: int) -> None:
        """Warn when an explicit ``lr`` is far from the scale of the recipe's optimizer.

        A rate chosen for Adam (``1e-3``) given to the recipe's LARS or SGD barely moves the
        weights, and an SGD rate given to Adam diverges: both train silently badly.
        """
        expected = self.lr_for(batch_size)
        if not (expected / OFF_SCALE_RATIO <= lr <= expected * OFF_SCALE_RATIO):
            warnings.warn(
                f"lr={lr:g} is used with the recipe's optimizer {self.optimizer!r}, whose rate at "
                f"batch {batch_size} is {expected:g} ({lr / expected:.3g}x that). If lr was chosen "
                f"for another optimizer, name it too (e.g. optimizer='adam'), or leave lr to None "
                f"for the recipe's rate.",
                UserWarning,
                stacklevel=4,
            )

    def describe(self) -> dict[str, Any]:
        """The recipe as plain values (for checkpoints, histories and config files).

        Returns:
            A dict of the recipe's fields (``factory`` as its name, in ``optimizer``).
        """
        values = asdict(self)
        values.pop("factory")
        values["betas"] = list(self.betas)
        if self.factory is not None:
            values["optimizer"] = _callable_name(self.factory)
        return values


def _callable_name(fn: Any) -> str:
    fn = getattr(fn, "func", fn)  # functools.partial
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


_ADAM_KEPT = (
    "the paper's optimizer and schedule are not reproduced; Adam at this library's "
    "measured small-budget rate (benchmarks/methods_knn.py), cosine decay"
)

#: Every registered method's recipe (``super_selfish.methods.available()``).
RECIPES: dict[str, Recipe] = {
    "simclr": Recipe(
        "lars",
        0.3,
        256,
        "linear",
        1e-6,
        warmup_epochs=10,
        paper="Chen et al. 2020 (SimCLR), Sec. 4 / App. B.1",
    ),
    "moco": Recipe(
        "sgd",
        0.03,
        256,
        "linear",
        1e-4,
        paper="Chen et al. 2020 (MoCo v2), cosine schedule",
        deviation="version=3 uses the same recipe (MoCo v3 trains with LARS/AdamW)",
    ),
    "byol": Recipe(
        "lars",
        0.2,
        256,
        "linear",
        1.5e-6,
        warmup_epochs=10,
        paper="Grill et al. 2020 (BYOL), Sec. 3.2 / App. C",
    ),
    "simsiam": Recipe(
        "sgd",
        0.05,
        256,
        "linear",
        1e-4,
        paper="Chen & He 2021 (SimSiam), Sec. 4",
        deviation="the predictor's learning rate decays like the rest (the paper keeps it fixed)",
    ),
    "barlow": Recipe(
        "lars",
        0.2,
        256,
        "linear",
        1.5e-6,
        warmup_epochs=10,
        paper="Zbontar et al. 2021 (Barlow Twins), Sec. 4",
        deviation="biases and norm weights use the weights' rate (the paper: 0.0048 x batch/256)",
    ),
    "vicreg": Recipe(
        "lars",
        0.2,
        256,
        "linear",
        1e-6,
        warmup_epochs=10,
        lars_exclude_1d=False,
        paper="Bardes et al. 2022 (VICReg), App. C",
        deviation="LARS adapts biases and norm weights too, as lightly's VICReg does (the paper "
        "leaves them out; adapting them trained better in short runs, docs/parity.md)",
    ),
    "nnclr": Recipe(
        "lars",
        0.3,
        256,
        "linear",
        1e-6,
        warmup_epochs=10,
        paper="Dwibedi et al. 2021 (NNCLR), Sec. 4 (SimCLR's recipe)",
    ),
    "swav": Recipe(
        "lars",
        0.6,
        256,
        "linear",
        1e-6,
        paper="Caron et al. 2020 (SwAV), authors' batch-256 setting",
        deviation="cosine decays to 0 (the paper: to lr/1000)",
    ),
    "dino": Recipe(
        "adamw",
        5e-4,
        256,
        "linear",
        0.04,
        warmup_epochs=10,
        paper="Caron et al. 2021 (DINO), Sec. 4 / App. (ViT recipe)",
        deviation="constant weight decay (the paper: cosine 0.04 -> 0.4)",
    ),
    "mae": Recipe(
        "adamw",
        1.5e-4,
        256,
        "linear",
        0.05,
        betas=(0.9, 0.95),
        warmup_epochs=40,
        paper="He et al. 2022 (MAE), App. A.1",
    ),
    "instdisc": Recipe(
        "sgd",
        0.03,
        256,
        "linear",
        5e-4,
        paper="Wu et al. 2018 (instance discrimination), Sec. 4",
        deviation="cosine decay instead of the paper's steps",
    ),
    "pirl": Recipe(
        "sgd",
        0.12,
        1024,
        "linear",
        1e-4,
        paper="Misra & van der Maaten 2020 (PIRL), Sec. 4",
        deviation="cosine decay instead of the paper's steps",
    ),
    "cmc": Recipe(
        "sgd",
        0.03,
        256,
        "linear",
        1e-4,
        paper="Tian et al. 2020 (CMC), App. (ImageNet ResNet setting)",
        deviation="cosine decay instead of the paper's steps",
    ),
    "rotnet": Recipe(
        "sgd",
        0.1,
        128,
        "linear",
        5e-4,
        paper="Gidaris et al. 2018 (RotNet), CIFAR-10 setting",
        deviation="cosine decay instead of the paper's steps; no Nesterov",
    ),
    "jigsaw": Recipe(
        "sgd",
        0.01,
        256,
        "linear",
        5e-4,
        paper="Noroozi & Favaro 2016 (jigsaw), Sec. 4",
        deviation="cosine decay instead of the paper's steps",
    ),
    "context": Recipe(
        "adam",
        2e-4,
        64,
        "none",
        0.0,
        betas=(0.5, 0.999),
        paper="Pathak et al. 2016 (context encoders), authors' code",
    ),
    "bigan": Recipe(
        "adam",
        2e-4,
        128,
        "none",
        2.5e-5,
        betas=(0.5, 0.999),
        paper="Donahue et al. 2017 (BiGAN), Sec. 4",
        deviation="cosine decay (the paper: constant, then linear to 0)",
    ),
    "cpc": Recipe(
        "adam", 1e-3, 256, "none", 0.0, paper="Henaff et al. 2020 (CPC v2)", deviation=_ADAM_KEPT
    ),
    "relpos": Recipe(
        "adam",
        1e-3,
        256,
        "none",
        0.0,
        paper="Doersch et al. 2015 (context prediction)",
        deviation=_ADAM_KEPT,
    ),
    "exemplar": Recipe(
        "adam",
        3e-4,
        256,
        "none",
        0.0,
        paper="Dosovitskiy et al. 2014 (exemplar CNN)",
        deviation=_ADAM_KEPT,
    ),
    "denoise": Recipe(
        "adam",
        3e-4,
        256,
        "none",
        0.0,
        paper="Vincent et al. 2008 (denoising autoencoders)",
        deviation=_ADAM_KEPT,
    ),
    "splitbrain": Recipe(
        "adam",
        1e-3,
        256,
        "none",
        0.0,
        paper="Zhang et al. 2017 (split-brain autoencoders)",
        deviation=_ADAM_KEPT,
    ),
}


def get(method: str) -> Recipe:
    """The recipe of a registered method.

    Args:
        method: a registered method name, e.g. ``"simclr"``.

    Returns:
        Its :class:`Recipe`.

    Raises:
        UnknownNameError: no recipe has that name (the message suggests the closest).
    """
    from .errors import unknown_name

    if method not in RECIPES:
        raise unknown_name("method with a recipe", method, RECIPES)
    return RECIPES[method]


def _rate(recipe: Recipe) -> str:
    if recipe.scaling == "none":
        return f"{recipe.lr:g}"
    rule = "b/{}" if recipe.scaling == "linear" else "sqrt(b/{})"
    return f"{recipe.lr:g} x " + rule.format(recipe.batch_size)


def table_rows() -> list[list[str]]:
    """The rows of the README's recipe table, one per method.

    Returns:
        Rows of strings: method, optimizer, lr (b: the run's batch size), weight decay,
        momentum or betas, warm-up epochs, schedule, paper, deviation.
    """
    rows = []
    for name in sorted(RECIPES):
        r = RECIPES[name]
        hyper = (
            f"momentum {r.momentum:g}"
            if r.optimizer in ("sgd", "lars")
            else f"betas {r.betas[0]:g}/{r.betas[1]:g}"
        )
        rows.append(
            [
                name,
                r.optimizer,
                _rate(r),
                f"{r.weight_decay:g}",
                hyper,
                f"{r.warmup_epochs:g}",
                r.schedule,
                r.paper,
                r.deviation or "-",
            ]
        )
    return rows


TABLE_HEADER = [
    "method",
    "optimizer",
    "lr (b = batch size)",
    "weight decay",
    "momentum / betas",
    "warm-up epochs",
    "schedule",
    "paper",
    "differs from paper",
]


def markdown_table() -> str:
    """The README's "Training recipes" table (``python -m super_selfish.recipes``).

    Returns:
        The table in Markdown.
    """
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
