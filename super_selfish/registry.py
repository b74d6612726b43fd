"""One :class:`Registry` for every kind of named part: methods, backbones, presets and ops.

A registry maps a name to an entry (a class or a factory) with a one-line description. It is
filled by a decorator, refuses a name that is taken (unless ``replace=True`` says the clash is
meant), lists its names with their descriptions and answers an unknown name with the valid ones
and the closest match ("did you mean").

Example::

    BACKBONES = Registry("backbone")

    @BACKBONES.register("convnet-small")
    def convnet_small(in_channels=3):
        \"\"\"Four 3x3 conv blocks, 128-d features: fast enough for CPU tests.\"\"\"
        ...

    BACKBONES.get("convnet-smal")  # UnknownNameError: ... Did you mean 'convnet-small'?
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, Optional, TypeVar

from .errors import ConfigError, check, unknown_name

T = TypeVar("T")


def first_line(obj: Any) -> str:
    """The first line of ``obj``'s docstring ('' when it has none).

    Args:
        obj: a class, function or other object.

    Returns:
        The stripped first line.
    """
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


class Registry(Generic[T]):
    """Names to entries of one kind, with descriptions.

    Args:
        kind: what an entry is, in error messages and listings (e.g. ``"method"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def add(
        self, name: str, entry: T, description: Optional[str] = None, *, replace: bool = False
    ) -> T:
        """Register ``entry`` under ``name``.

        Args:
            name: the name users pass (non-empty string).
            entry: the class or factory.
            description: one line for listings; default: the first line of the entry's
                docstring.
            replace: allow replacing an entry already registered under ``name``.

        Returns:
            ``entry`` unchanged.

        Raises:
            ConfigError: ``name`` is empty, or taken and ``replace`` is False.
        """
        check(
            isinstance(name, str) and name.strip() != "",
            "name",
            name,
            f"a non-empty {self.kind} name",
        )
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise ConfigError(
                f"Invalid name={name!r}: a {self.kind} of that name is already "
                f"registered ({self._entries[name]!r}); pick another name, or "
                "pass replace=True to replace it."
            )
        self._entries[name] = entry
        self._descriptions[name] = first_line(entry) if description is None else description
        return entry

    def register(
        self, name: str, description: Optional[str] = None, *, replace: bool = False
    ) -> Callable[[T], T]:
        """Decorator form of :meth:`add`.

        Args:
            name: the name users pass.
            description: one line for listings; default: the entry's first docstring line.
            replace: allow replacing an entry already registered under ``name``.

        Returns:
            A decorator that registers its argument and returns it unchanged.
        """

        def decorator(entry: T) -> T:
            return self.add(name, entry, description, replace=replace)

        return decorator

    def remove(self, name: str) -> T:
        """Unregister ``name`` (e.g. a temporary entry in a test or notebook).

        Args:
            name: a registered name.

        Returns:
            The entry that was registered.

        Raises:
            UnknownNameError: no such name.
        """
        entry = self.get(name)
        del self._entries[name], self._descriptions[name]
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Args:
            name: the name to look up.

        Returns:
            The class or factory.

        Raises:
            UnknownNameError: no such name; the message lists the valid names and the closest.
        """
        if not isinstance(name, str) or name not in self._entries:
            raise unknown_name(self.kind, name, self._entries)
        return self._entries[name]

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """``{name: one-line description}``, sorted by name."""
        return {name: self._descriptions[name] for name in self.available()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


#: Every method (Supervisor subclass) by name: filled by ``methods.registry.register``, read
#: by the CLI, ``compare()`` and ``Supervisor.from_checkpoint``.
METHODS: Registry[type] = Registry("method")
