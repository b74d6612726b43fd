"""The argument checks every module shares: each raises :class:`ConfigError` naming the
argument, the value received and what is expected (through :func:`errors.check`).
"""
from __future__ import annotations

import math
from typing import Any

from .errors import check


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (a bool is not a number here).

    Args:
        value: anything.

    Returns:
        True for a finite, non-bool int or float.
    """
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer in the strict sense.

    Args:
        value: anything.

    Returns:
        True for an int that is not a bool.
    """
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any, argument: str, example: str = "") -> None:
    """Require an int > 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a positive int" in the message, e.g. ``" (epochs)"``.

    Raises:
        ConfigError: ``value`` is not a positive int.
    """
    check(is_int(value) and value > 0, argument, value, f"a positive int{example}")


def non_negative_int(value: Any, argument: str) -> None:
    """Require an int >= 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.

    Raises:
        ConfigError: ``value`` is negative or not an int.
    """
    check(is_int(value) and value >= 0, argument, value, "a non-negative int")


def positive_number(value: Any, argument: str, example: str = "") -> None:
    """Require a finite number > 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a positive number" in the message.

    Raises:
        ConfigError: ``value`` is not a finite positive number.
    """
    check(is_number(value) and value > 0, argument, value, f"a positive number{example}")


def non_negative_number(value: Any, argument: str) -> None:
    """Require a finite number >= 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.

    Raises:
        ConfigError: ``value`` is negative, infinite or not a number.
    """
    check(is_number(value) and value >= 0, argument, value, "a non-negative number")


def probability(value: Any, argument: str) -> None:
    """Require a probability.

    Args:
        value: the value received.
        argument: the argument's name for the message.

    Raises:
        ConfigError: ``value`` is not a number in [0, 1].
    """
    check(is_number(value) and 0.0 <= value <= 1.0, argument, value, "a number in [0, 1]")


def temperature(value: Any, argument: str = "temperature") -> None:
    """Require a positive softmax temperature.

    Args:
        value: the value received.
        argument: the argument's name for the message.

    Raises:
        ConfigError: ``value`` is not a finite positive number; the message suggests 0.1
            or 0.2.
    """
    positive_number(value, argument, " such as 0.1 or 0.2")
