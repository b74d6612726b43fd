"""Named presets and the one entry point, :func:`build`, that turns names or specs into views."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, Union

from ..errors import ConfigError, check
from ..registry import Registry, first_line
from .core import OPS, Op, Pipeline, Views, as_size

PresetFunction = Callable[..., Views]
F = TypeVar("F", bound=PresetFunction)
OpSpec = Union[Op, str, Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class _Preset:
    function: PresetFunction
    defaults: Mapping[str, Any]

    @property
    def overrides(self) -> list[str]:
        """The keyword arguments the preset accepts."""
        parameters = inspect.signature(self.function).parameters.values()
        return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


#: Every augmentation preset by name; :func:`register` adds one, a name that is taken is refused.
PRESETS: Registry[_Preset] = Registry("augmentation preset")


def register(name: str, **defaults: Any) -> Callable[[F], F]:
    """Register ``fn(size, **overrides) -> Views`` as preset ``name``.

    ``defaults`` pre-set some of its keyword arguments, so that one function can serve several
    presets (``register("moco_v2", scale=(0.2, 1.0))(simclr)``).
    """

    def decorator(function: F) -> F:
        preset = _Preset(function, dict(defaults))
        _check_keywords(f"Preset {name!r}", "override", defaults, preset.overrides)
        PRESETS.add(name, preset, first_line(function))
        return function

    return decorator


def available() -> list[str]:
    """The registered preset names, sorted."""
    return PRESETS.available()


def _check_keywords(owner: str, noun: str, given: Iterable[str], valid: Sequence[str]) -> None:
    """Reject a keyword ``owner`` does not take, naming the closest valid one."""
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{owner} has no {noun} {key!r}.{hint} Valid {noun}s: {', '.join(valid)}."
            )


def op_from_spec(spec: OpSpec) -> Op:
    """Turn an op, an op name (``"hflip"``) or a dict (``{"name": "solarize", "p": 0.2}``) into
    an op.
    """
    if isinstance(spec, Op):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    check(
        isinstance(spec, Mapping) and "name" in spec,
        "op spec",
        spec,
        'an Op, an op name, or a dict with a "name" key and the op\'s parameters',
    )
    kwargs = dict(spec)
    op_class = OPS.get(kwargs.pop("name"))
    name = op_class.name
    if "ops" in kwargs:
        kwargs["ops"] = tuple(op_from_spec(inner) for inner in kwargs["ops"])
    parameters = [field.name for field in dataclasses.fields(op_class)]
    _check_keywords(f"Op {name!r}", "parameter", kwargs, parameters)
    return op_class(**kwargs)


def build(
    name_or_spec: str | Pipeline | Views | Sequence[OpSpec],
    size: int | tuple[int, int],
    **overrides: Any,
) -> Views:
    """Build the views a method trains on.

    ``name_or_spec`` is a preset name (see :func:`available`; ``overrides`` go to the preset), a
    ready :class:`Pipeline` or :class:`Views` (returned as views; their first size must equal
    ``size``), or a list of op specs, run as ``n_views`` identical views (``n_views=2`` unless
    overridden).
    """
    out_size = as_size(size)
    if isinstance(name_or_spec, str):
        preset = PRESETS.get(name_or_spec)
        _check_keywords(f"Preset {name_or_spec!r}", "override", overrides, preset.overrides)
        try:
            return preset.function(out_size, **{**preset.defaults, **overrides})
        except ConfigError as error:
            raise ConfigError(
                f"{error} (building preset {name_or_spec!r} with overrides {overrides})"
            ) from error
    if isinstance(name_or_spec, (Pipeline, Views)):
        views = Views([name_or_spec]) if isinstance(name_or_spec, Pipeline) else name_or_spec
        check(
            not overrides,
            "overrides",
            overrides,
            "none: a ready Pipeline or Views has no preset to pass them to",
        )
        check(
            views.sizes[0] == out_size,
            "size",
            size,
            f"the size the given views were built at, {views.sizes[0]}",
        )
        return views
    check(
        isinstance(name_or_spec, Sequence) and len(name_or_spec) > 0,
        "name_or_spec",
        name_or_spec,
        "a preset name, a Pipeline, a Views or a non-empty list of op specs",
    )
    n_views = overrides.pop("n_views", 2)
    check(not overrides, "overrides", overrides, "only n_views for a list of op specs")
    check(isinstance(n_views, int) and n_views >= 1, "n_views", n_views, "a positive int")
    pipeline = Pipeline([op_from_spec(spec) for spec in name_or_spec], out_size)
    return Views([pipeline] * n_views)
