"""The argument checks every module shares: each raises :class:`ConfigError` naming the
argument, the value received and what is expected (through :func:`errors.check`)."""
from __future__ import annotations

import math
from typing import Any

from .errors import check


def is_number(value: Any) -> bool:
    """True for a finite int or float (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def is_int(value: Any) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any, argument: str, example: str = "") -> None:
    """``value`` is an int > 0."""
    check(is_int(value) and value > 0, argument, value, f"a positive int{example}")


def non_negative_int(value: Any, argument: str) -> None:
    """``value`` is an int >= 0."""
    check(is_int(value) and value >= 0, argument, value, "a non-negative int")


def positive_number(value: Any, argument: str, example: str = "") -> None:
    """``value`` is a finite number > 0."""
    check(is_number(value) and value > 0, argument, value, f"a positive number{example}")


def non_negative_number(value: Any, argument: str) -> None:
    """``value`` is a finite number >= 0."""
    check(is_number(value) and value >= 0, argument, value, "a non-negative number")


def probability(value: Any, argument: str) -> None:
    """``value`` is a number in [0, 1]."""
    check(is_number(value) and 0.0 <= value <= 1.0, argument, value, "a number in [0, 1]")


def temperature(value: Any, argument: str = "temperature") -> None:
    """``value`` is a positive softmax temperature."""
    positive_number(value, argument, " such as 0.1 or 0.2")
