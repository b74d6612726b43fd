"""The argument checks every module shares: each raises :class:`ConfigError` naming the
argument, the value received and what is expected (through :func:`errors.check`).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from .errors import check


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (a bool is not a number here).

    Args:
        value: anything.

    Returns:
        True for a finite, non-bool int or float.
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer in the strict sense.

    Args:
        value: anything.

    Returns:
        True for an int that is not a bool.
    """
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, value: Any, argument: str, expected: str, none: Optional[str]) -> None:
    """:func:`errors.check`, also accepting None when ``none`` says what None means."""
    if none is not None:
        ok = ok or value is None
        expected = f"None ({none}) or {expected}"
    check(ok, argument, value, expected)


def positive_int(
    value: Any, argument: str, example: str = "", *, none: Optional[str] = None
) -> None:
    """Require an int > 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a positive int" in the message, e.g. ``" such as 256"``.
        none: accept None too; the message says what None means (e.g. ``"automatic"``).

    Raises:
        ConfigError: ``value`` is not a positive int.
    """
    _require(is_int(value) and value > 0, value, argument, f"a positive int{example}", none)


def non_negative_int(
    value: Any, argument: str, example: str = "", *, none: Optional[str] = None
) -> None:
    """Require an int >= 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a non-negative int" in the message.
        none: accept None too; the message says what None means.

    Raises:
        ConfigError: ``value`` is negative or not an int.
    """
    _require(is_int(value) and value >= 0, value, argument, f"a non-negative int{example}", none)


def int_at_least(
    value: Any, argument: str, minimum: int, example: str = "", *, none: Optional[str] = None
) -> None:
    """Require an int >= ``minimum``.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        minimum: the smallest value accepted.
        example: text appended to "an int of at least N" in the message.
        none: accept None too; the message says what None means.

    Raises:
        ConfigError: ``value`` is smaller than ``minimum`` or not an int.
    """
    _require(
        is_int(value) and value >= minimum,
        value,
        argument,
        f"an int of at least {minimum}{example}",
        none,
    )


def int_in_range(value: Any, argument: str, low: int, high: int, example: str = "") -> None:
    """Require an int from ``low`` to ``high`` (both included).

    Args:
        value: the value received.
        argument: the argument's name for the message.
        low: the smallest value accepted.
        high: the largest value accepted.
        example: text appended to "an int from L to H" in the message.

    Raises:
        ConfigError: ``value`` is outside the range or not an int.
    """
    check(
        is_int(value) and low <= value <= high,
        argument,
        value,
        f"an int from {low} to {high}{example}",
    )


def positive_number(
    value: Any, argument: str, example: str = "", *, none: Optional[str] = None
) -> None:
    """Require a finite number > 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a positive finite number" in the message.
        none: accept None too; the message says what None means.

    Raises:
        ConfigError: ``value`` is not a finite positive number.
    """
    _require(
        is_number(value) and value > 0, value, argument, f"a positive finite number{example}", none
    )


def non_negative_number(
    value: Any, argument: str, example: str = "", *, none: Optional[str] = None
) -> None:
    """Require a finite number >= 0.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a non-negative number" in the message.
        none: accept None too; the message says what None means.

    Raises:
        ConfigError: ``value`` is negative, infinite or not a number.
    """
    _require(
        is_number(value) and value >= 0, value, argument, f"a non-negative number{example}", none
    )


def probability(value: Any, argument: str, example: str = "") -> None:
    """Require a probability (or any coefficient in [0, 1]).

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a number in [0, 1]" in the message.

    Raises:
        ConfigError: ``value`` is not a number in [0, 1].
    """
    check(is_number(value) and 0.0 <= value <= 1.0, argument, value, f"a number in [0, 1]{example}")


def fraction(value: Any, argument: str, example: str = "") -> None:
    """Require a fraction in (0, 1] (a share of the data, of an image side).

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: text appended to "a number in (0, 1]" in the message.

    Raises:
        ConfigError: ``value`` is not a number in (0, 1].
    """
    check(is_number(value) and 0.0 < value <= 1.0, argument, value, f"a number in (0, 1]{example}")


def temperature(
    value: Any, argument: str = "temperature", example: str = " such as 0.1 or 0.2"
) -> None:
    """Require a positive softmax temperature.

    Args:
        value: the value received.
        argument: the argument's name for the message.
        example: the values suggested in the message (default 0.1 or 0.2).

    Raises:
        ConfigError: ``value`` is not a finite positive number.
    """
    positive_number(value, argument, example)
