"""The method registry (name -> Supervisor class) used by the CLI, ``compare()`` and benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..registry import METHODS

T = TypeVar("T", bound=type)


def register(name: str, *, replace: bool = False) -> Callable[[T], T]:
    """Class decorator: make a Supervisor subclass available as ``name`` (its ``method``).

    A name already registered by another class is refused unless ``replace=True``.
    """

    def decorator(cls: T) -> T:
        METHODS.add(name, cls, replace=replace)
        cls.method = name  # type: ignore[attr-defined]
        return cls

    return decorator


def get(name: str) -> type:
    """The Supervisor class registered as ``name``."""
    return METHODS.get(name)


def available() -> list[str]:
    """The registered method names, sorted."""
    return METHODS.available()


def describe() -> dict[str, str]:
    """``{method name: the first line of its class docstring}``."""
    return METHODS.describe()
