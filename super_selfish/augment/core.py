"""The building blocks: ops, one-view pipelines and multi-view sets.

Every op works on a whole batch at once but decides per image: whether it applies (probability
``p``) and with which random parameters. Parameters are always drawn on the CPU from the given
``torch.Generator`` and only then moved to the images' device, so a seed gives the same views on
the CPU and on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError, check
from ..registry import Registry

Size = tuple[int, int]
Params = dict[str, torch.Tensor]

# NTSC / ITU-R 601 luma weights of R, G and B.
LUMA = (0.299, 0.587, 0.114)

# On the CPU, per-image ops work on about this many values at a time (4 MiB of float32).
CPU_CHUNK_VALUES = 2**20


def as_size(size: int | Sequence[int], argument: str = "size") -> Size:
    """Turn ``32`` or ``(32, 48)`` into a validated ``(height, width)`` pair."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    valid = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    )
    check(valid, argument, size, "a positive int or a (height, width) pair of positive ints")
    return (size[0], size[1])


def as_range(
    value: float | Sequence[float],
    argument: str,
    low: float = -math.inf,
    high: float = math.inf,
) -> tuple[float, float]:
    """Turn a number or a ``(low, high)`` pair into a validated pair within ``[low, high]``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    valid = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    check(valid, argument, value, "a number or a (low, high) pair of numbers")
    pair = (float(value[0]), float(value[1]))
    check(
        low <= pair[0] <= pair[1] <= high,
        argument,
        value,
        f"low <= high, both within [{low}, {high}]",
    )
    return pair


def uniform(n: int, bounds: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
    """``n`` CPU draws from U(bounds)."""
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator)


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """Bring a uint8 or [0, 1] float batch (N, C, H, W) to float32 in [0, 1].

    The channels are kept: RGB, grayscale (C = 1) and multi-channel images (C = 4, ...) all
    make views with their own channels; the colour ops (saturation, hue, grayscale) leave
    images that are not RGB unchanged, with a one-time note.
    """
    if not isinstance(images, torch.Tensor):
        raise DataError(
            f"images must be a torch.Tensor batch (N, C, H, W); got {type(images).__name__}."
        )
    if images.ndim != 4 or images.shape[1] < 1:
        raise DataError(
            f"images must have shape (N, C, H, W); got {tuple(images.shape)}. "
            "Add a batch dimension with images[None] or convert channels-last data with "
            ".permute(0, 3, 1, 2)."
        )
    if images.dtype == torch.uint8:
        images = images.float().div_(255)
    elif images.is_floating_point():
        images = images.float()
    else:
        raise DataError(
            f"images must be uint8 (0-255) or floating point in [0, 1]; got dtype {images.dtype}."
        )
    return images.contiguous()


def luminance(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) brightness of a float batch: the luma of RGB, the channel itself for
    grayscale, the mean over the channels otherwise.
    """
    if images.shape[1] == 3:
        weights = torch.tensor(LUMA, device=images.device, dtype=images.dtype)
        return torch.einsum("c,nchw->nhw", weights, images)[:, None]
    return images.mean(dim=1, keepdim=True)


def resize(images: torch.Tensor, size: Size) -> torch.Tensor:
    """Antialiased bilinear resize; returns ``images`` itself when it already has ``size``."""
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


@lru_cache(maxsize=32)
def pixel_coordinates(length: int, device: torch.device) -> torch.Tensor:
    """The ``grid_sample`` coordinates of the pixel centres along an axis of ``length`` pixels
    (align_corners=False: -1 and 1 are the outer edges, not the outer pixel centres).
    """
    return (torch.arange(length, device=device) + 0.5) * (2 / length) - 1


def check_generator(generator: torch.Generator | None) -> None:
    """Reject non-CPU generators: parameters are drawn on the CPU so that every device sees the
    same ones.
    """
    if generator is not None and (
        not isinstance(generator, torch.Generator) or generator.device.type != "cpu"
    ):
        received = getattr(generator, "device", type(generator).__name__)
        raise ConfigError(
            f"Invalid generator on {received}: expected None or a CPU torch.Generator "
            "(random parameters are drawn on the CPU and then moved to the images' device)."
        )


def take(params: Params, images: slice | torch.Tensor) -> Params:
    """The parameters of some of the images (a slice or an index of the batch)."""
    return {key: value[images] for key, value in params.items()}


def on_device(params: Params, device: torch.device) -> Params:
    """Move CPU-drawn parameters to the images' device."""
    return {key: value.to(device) for key, value in params.items()}


def still_owned(before: torch.Tensor, after: torch.Tensor, owned: bool) -> bool:
    """Whether a pipeline may overwrite ``after``, the output of an op run on ``before``: a new
    dense tensor is its own, an unchanged one keeps its status, an expanded one is read-only.
    """
    return after.is_contiguous() and (owned if after is before else True)


#: Every augmentation op class by its ``name`` (``augment.build(["hflip", ...])`` looks names up
#: here): an :class:`Op` subclass that sets ``name`` registers itself when it is defined, and a
#: name that is taken is refused.
OPS: Registry[type] = Registry("augmentation op")


class Applied(NamedTuple):
    """What one op did to a batch: which images it changed and with which parameters."""

    op: Op
    applied: torch.Tensor  # bool (N,), CPU
    params: Params  # CPU tensors with leading dimension N


@dataclass(frozen=True, kw_only=True, repr=False)
class Op:
    """One augmentation step, applied to each image independently with probability ``p``.

    Subclasses define ``sample`` (per-image parameters, drawn on the CPU) and ``transform``
    (the batched computation); one that sets ``name`` is registered under it in :data:`OPS`.
    Ops that set ``resamples = True`` produce the pipeline's output size; images they skip are
    plainly resized so the batch stays one tensor. Ops that set ``per_image = True`` compute
    each image from its own pixels and parameters alone, so they may be given the batch a few
    images at a time.
    """

    name: ClassVar[str] = ""
    resamples: ClassVar[bool] = False
    per_image: ClassVar[bool] = False
    p: float = 1.0

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Register a subclass that names itself in :data:`OPS` (a subclass that keeps its
        parent's name, e.g. to change a default, is not a new op).
        """
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            OPS.add(cls.__dict__["name"], cls)

    def __post_init__(self) -> None:
        self._check(0.0 <= self.p <= 1.0, "p", self.p, "a probability in [0, 1]")

    def _check(self, condition: bool, field: str, received: object, expected: str) -> None:
        check(condition, f"{type(self).__name__}.{field}", received, expected)

    def _set(self, field: str, value: object) -> None:
        """Store a normalised field value on the frozen dataclass."""
        object.__setattr__(self, field, value)

    def sample(self, images: torch.Tensor, generator: torch.Generator | None) -> Params:
        """Draw this op's parameters for every image of the batch, on the CPU."""
        return {}

    def transform(self, images: torch.Tensor, params: Params, size: Size) -> torch.Tensor:
        """Apply the op to every image of ``images`` (the chosen ones) with their ``params``.

        Returns a new tensor, or ``images`` itself; never a view of it.
        """
        raise NotImplementedError

    def neutralised(self, params: Params, skipped: torch.Tensor) -> Params | None:
        """Parameters under which the ``skipped`` images come out unchanged, or None.

        Ops that have such parameters run on the whole batch, which is cheaper than picking out
        the chosen images and putting them back.
        """
        return None

    def absorbs(self, following: Op) -> bool:
        """Whether this op can also do the work of ``following``, run right after it, in its own
        pass over the pixels (a crop mirrors through its sampling grid, sparing a flip pass).

        Only ops whose draws do not look at the pixels can be absorbed: they are drawn before
        this op has produced its output.
        """
        return False

    def absorb(self, params: Params, following: Applied) -> Params:
        """This op's parameters extended to do the drawn work of ``following`` as well."""
        raise NotImplementedError

    def move_points(self, points: torch.Tensor, params: Params) -> torch.Tensor | None:
        """Where (N, 2) normalised points (x, y) of the input land in the output of this op,
        for images it changed; None when it cannot say (the preview then drops its marks).
        """
        return None if self.resamples else points

    def draw(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None,
        where: torch.Tensor | None = None,
    ) -> Applied:
        """All of the op's randomness: which images it changes (only among ``where`` when given)
        and their parameters.
        """
        chosen = torch.rand(images.shape[0], generator=generator) < self.p
        if where is not None:
            chosen &= where
        return Applied(self, chosen, self.sample(images, generator) if chosen.any() else {})

    def apply(
        self,
        images: torch.Tensor,
        record: Applied,
        size: Size,
        owned: bool = False,
        absorbed: Applied | None = None,
    ) -> torch.Tensor:
        """Do what ``record`` (drawn by this op) says, then what ``absorbed`` says, if given.

        ``owned`` says that ``images`` was made by the running pipeline, so that the op may write
        the changed images into it instead of into a copy.
        """
        chosen, params = record.applied, record.params
        if absorbed is not None:
            if not chosen.all():  # the skipped images are not this op's to pass through
                out = self.apply(images, record, size, owned)
                owned = still_owned(images, out, owned)
                return absorbed.op.apply(out, absorbed, size, owned)
            params = self.absorb(params, absorbed)
        if not chosen.any():
            return resize(images, size) if self.resamples else images
        neutral = None if chosen.all() else self.neutralised(params, ~chosen)
        if chosen.all() or neutral is not None:
            whole_batch = on_device(params if neutral is None else neutral, images.device)
            parts = self.parts(images.shape[0], images)
            if len(parts) == 1:
                return self.transform(images, whole_batch, size)
            n, channels = images.shape[:2]
            in_place = owned and not self.resamples
            out = images if in_place else images.new_empty(n, channels, *size)
            for part in parts:
                out[part] = self.transform(images[part], take(whole_batch, part), size)
            return out
        index = chosen.nonzero()[:, 0]
        subset = on_device(take(params, index), images.device)
        index = index.to(images.device)
        out = resize(images, size) if self.resamples else images
        out = out.clone() if out is images and not owned else out
        for part in self.parts(index.shape[0], images):
            changed = self.transform(images.index_select(0, index[part]), take(subset, part), size)
            out.index_copy_(0, index[part], changed)
        return out

    def parts(self, count: int, images: torch.Tensor) -> list[slice]:
        """How to split ``count`` images of the batch into the groups each ``transform`` call
        gets: a few at a time on the CPU for ``per_image`` ops, so that intermediate results stay
        in cache and reuse their buffers instead of touching fresh memory; all at once otherwise.
        """
        if not self.per_image or images.device.type != "cpu":
            return [slice(0, count)]
        step = max(1, CPU_CHUNK_VALUES // images[0].numel())
        return [slice(start, start + step) for start in range(0, count, step)]

    def run(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None,
        size: Size,
        where: torch.Tensor | None = None,
        owned: bool = False,
    ) -> tuple[torch.Tensor, list[Applied]]:
        """Apply the op to a random subset of the batch (restricted to ``where`` when given)."""
        record = self.draw(images, generator, where)
        return self.apply(images, record, size, owned), [record]

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        size: int | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Apply the op alone, as a one-op :class:`Pipeline` with output ``size``.

        ``size`` defaults to the images' own size.
        """
        return Pipeline([self], size if size is not None else tuple(images.shape[-2:]))(
            images, generator
        )

    def shown_fields(self) -> list[str]:
        """The parameters the repr lists: all that can change the output."""
        return [f.name for f in fields(self)]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.shown_fields())
        return f"{type(self).__name__}({shown})"


class Pipeline:
    """One view: a sequence of ops producing float32 (N, 3, *size) images in [0, 1].

    When no op resamples (crops, magnifies or resizes), the input is first resized to ``size``.
    """

    def __init__(self, ops: Sequence[Op], size: int | Sequence[int]) -> None:
        ops = tuple(ops)
        for position, op in enumerate(ops):
            check(
                isinstance(op, Op),
                f"ops[{position}]",
                op,
                "an augmentation Op instance (use augment.build to turn names or dicts into ops)",
            )
        self.ops = ops
        self.size = as_size(size)

    def trace(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, list[Applied]]:
        """Run the pipeline and also return what every op did (for previews and debugging)."""
        check_generator(generator)
        x = start = as_float_images(images)  # may be the caller's tensor, or shared by all views
        if not any(op.resamples for op in self.ops):
            x = resize(x, self.size)
        records: list[Applied] = []
        owned = x is not start
        ops = list(self.ops)
        while ops:
            op = ops.pop(0)
            if ops and op.absorbs(ops[0]):
                record, absorbed = op.draw(x, generator), ops.pop(0).draw(x, generator)
                out, applied = op.apply(x, record, self.size, owned, absorbed), [record, absorbed]
            else:
                out, applied = op.run(x, generator, self.size, owned=owned)
            owned, x = still_owned(x, out, owned), out
            records.extend(applied)
        return x.contiguous(), records

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The pipeline applied to a batch (N, C, H, W) in [0, 1]: one view per image."""
        return self.trace(images, generator)[0]

    def __repr__(self) -> str:
        lines = "".join(f"\n    {op!r}," for op in self.ops)
        return f"Pipeline(size={self.size}, ops=[{lines}\n  ])"


class Views:
    """The K views a method trains on: global views first, then local crops."""

    def __init__(self, pipelines: Sequence[Pipeline]) -> None:
        pipelines = tuple(pipelines)
        check(
            len(pipelines) > 0 and all(isinstance(p, Pipeline) for p in pipelines),
            "pipelines",
            pipelines,
            "a non-empty sequence of Pipeline objects",
        )
        self.pipelines = pipelines

    @property
    def sizes(self) -> list[Size]:
        """The (height, width) of every view, in order."""
        return [pipeline.size for pipeline in self.pipelines]

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Every view of a batch (N, C, H, W) in [0, 1], one tensor per pipeline."""
        check_generator(generator)
        images = as_float_images(images)
        return [pipeline(images, generator) for pipeline in self.pipelines]

    def __len__(self) -> int:
        return len(self.pipelines)

    def __getitem__(self, index: int) -> Pipeline:
        return self.pipelines[index]

    def __repr__(self) -> str:
        body = "".join(f"\n  {pipeline!r}," for pipeline in self.pipelines)
        return f"Views(n={len(self)}, sizes={self.sizes}, pipelines=[{body}\n])"
