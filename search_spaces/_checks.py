"""Checks of hand-written configs, so that a wrong one fails when made, not deep in forward()."""

from __future__ import annotations

from collections.abc import Sequence
import math
import numbers
from typing import Any


def check_stages(owner: str, name: str, values: Sequence[Any], *, kind: str) -> None:
    """Four stages of whole numbers >= 0 (``kind="count"``), >= 1 (``"size"``), or positive
    finite reals (``"factor"``)."""
    if not isinstance(values, Sequence) or len(values) != 4:
        raise ValueError(f"{owner}({name}={values!r}): give one value per stage, four in all.")
    for value in values:
        if kind == "factor":
            ok = isinstance(value, numbers.Real) and math.isfinite(value) and value > 0
        else:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            ok = ok and value >= (0 if kind == "count" else 1)
        if not ok:
            wanted = {
                "count": "a whole number >= 0",
                "size": "a whole number >= 1",
                "factor": "a positive number",
            }[kind]
            raise ValueError(f"{owner}({name}={tuple(values)!r}): each value must be {wanted}.")


def check_choices(owner: str, name: str, values: Sequence[Any], choices: Sequence[str]) -> None:
    """Four stages, each one of ``choices``."""
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != 4:
        raise ValueError(f"{owner}({name}={values!r}): give one value per stage, four in all.")
    wrong = [v for v in values if v not in choices]
    if wrong:
        raise ValueError(f"{owner}({name}=...): {wrong[0]!r} is not one of {tuple(choices)}.")


def check_branches(owner: str, value: Any) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}(num_branches={value!r}): a whole number >= 1 (1 or 4 here).")
