"""The framework's own exceptions.

Every error raised at the library's boundary is a :class:`SuperSelfishError`, so a user can
catch them in one place, and each subclass also derives from the built-in exception a Python
user would expect (``ValueError``, ``KeyError``, ``RuntimeError``), so plain ``except
ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SuperSelfishError(Exception):
    """Base class of every exception raised by super_selfish."""


class ConfigError(SuperSelfishError, ValueError):
    """An argument or hyper-parameter is invalid."""


class UnknownNameError(SuperSelfishError, KeyError):
    """A method, backbone, augmentation or dataset name is not registered."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(SuperSelfishError, ValueError):
    """The data handed to the library cannot be used as given."""


class CheckpointError(SuperSelfishError, RuntimeError):
    """A checkpoint is missing, corrupted, unsafe or belongs to another run."""


class DivergenceError(SuperSelfishError, FloatingPointError):
    """Training produced a NaN or infinite loss."""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> UnknownNameError:
    """Build the error for an unregistered ``name``, listing the valid ones and a close match.

    Args:
        kind: what was looked up, e.g. ``"backbone"``.
        name: the name received.
        valid: the registered names.

    Returns:
        The :class:`UnknownNameError` (for the caller to raise), with "Did you mean ...?"
        when a valid name is close.
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(f"Unknown {kind} {name!r}.{hint} Valid {kind}s: {', '.join(valid)}.")


def check(condition: bool, argument: str, received: object, expected: str) -> None:
    """Raise :class:`ConfigError` naming ``argument`` unless ``condition`` holds.

    Args:
        condition: whether the value is acceptable.
        argument: the argument's name.
        received: the value received, shown with ``repr``.
        expected: what would be accepted, e.g. ``"a positive int"``.

    Raises:
        ConfigError: ``condition`` is false.
    """
    if not condition:
        raise ConfigError(f"Invalid {argument}={received!r}: expected {expected}.")
