"""Checks of user options at construction, so that a bad value fails where it was written.

A wrong option found at the first fit surfaces after the startup trials, as a torch error that
names neither the option nor the fix. Each check here names the owner, the option, the value
and what to pass instead.
"""

from __future__ import annotations

import numbers
from typing import Any


def check_int(owner: str, name: str, value: Any, *, minimum: int, why: str = "") -> int:
    """An integer (not a bool, not a float) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        example = max(minimum, round(value)) if isinstance(value, numbers.Real) else minimum
        raise TypeError(
            f"{owner}({name}={value!r}): expected an int, got {type(value).__name__}. "
            f"Pass a whole number, e.g. {name}={example}."
        )
    if value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{owner}({name}={value}): {name} must be at least {minimum}{reason}.")
    return int(value)


def check_optional_int(owner: str, name: str, value: Any, *, minimum: int) -> int | None:
    return None if value is None else check_int(owner, name, value, minimum=minimum)


def check_float(
    owner: str, name: str, value: Any, *, positive: bool = False, non_negative: bool = False
) -> float:
    """A finite real number, optionally ``> 0`` or ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}({name}={value!r}): expected a number, got {type(value).__name__}."
        )
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{owner}({name}={value}): {name} must be finite.")
    if positive and number <= 0:
        raise ValueError(f"{owner}({name}={value}): {name} must be positive.")
    if non_negative and number < 0:
        raise ValueError(f"{owner}({name}={value}): {name} must not be negative.")
    return number


def check_type(
    owner: str,
    name: str,
    value: Any,
    expected: type | tuple[type, ...],
    *,
    optional: bool = True,
) -> None:
    """``value`` is an instance of ``expected`` (or ``None``, when ``optional``)."""
    if (value is None and optional) or isinstance(value, expected):
        return
    names = (
        " or ".join(t.__name__ for t in expected)
        if isinstance(expected, tuple)
        else expected.__name__
    )
    shown = repr(value) if len(repr(value)) <= 40 else "..."
    raise TypeError(
        f"{owner}({name}={shown}): expected {names}{' or None' if optional else ''}, got "
        f"{type(value).__name__}."
    )


def check_seed(owner: str, value: Any) -> int | None:
    """``None`` or a non-negative int, as ``numpy.random.SeedSequence`` needs."""
    if value is None:
        return None
    return check_int(owner, "seed", value, minimum=0, why="numpy seeds are non-negative")


def check_callable(owner: str, name: str, value: Any, *, expected: str) -> None:
    """``value`` is ``None`` or callable; ``expected`` says what the function must do."""
    if value is not None and not callable(value):
        raise TypeError(f"{owner}({name}={value!r}): expected {expected}.")
