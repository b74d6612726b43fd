"""Name -> Supervisor class registry used by the CLI, ``compare()`` and benchmarks."""
from __future__ import annotations

from typing import Callable, Dict, List, TypeVar

from ..errors import unknown_name

_METHODS: Dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a Supervisor subclass available as ``name``."""

    def decorator(cls: T) -> T:
        cls.method = name
        _METHODS[name] = cls
        return cls

    return decorator


def get(name: str) -> type:
    """The Supervisor class registered as ``name``."""
    if name not in _METHODS:
        raise unknown_name("method", name, _METHODS)
    return _METHODS[name]


def available() -> List[str]:
    return sorted(_METHODS)
