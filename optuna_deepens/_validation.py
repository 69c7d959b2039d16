"""Checks of user options at construction, so that a bad value fails where it was written.

A wrong option found at the first fit surfaces after the startup trials, as a torch error that
names neither the option nor the fix. Each check here names the owner, the option, the value
and what to pass instead.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
import numbers
from typing import Any

from optuna_deepens.acquisition import check_acquisition


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


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{owner}({name}={value!r}): choose one of {choices}.")


def check_seed(owner: str, value: Any) -> int | None:
    """``None`` or a non-negative int, as ``numpy.random.SeedSequence`` needs."""
    if value is None:
        return None
    return check_int(owner, "seed", value, minimum=0, why="numpy seeds are non-negative")


def check_callable(owner: str, name: str, value: Any, *, expected: str) -> None:
    """``value`` is ``None`` or callable; ``expected`` says what the function must do."""
    if value is not None and not callable(value):
        raise TypeError(f"{owner}({name}={value!r}): expected {expected}.")


def check_objective_metrics(owner: str, value: Any) -> dict[int, str]:
    """Objective index -> zero-cost metric name."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 0 and isinstance(v, str) and v
        for k, v in value.items()
    ):
        raise TypeError(
            f"{owner}(objective_metrics={value!r}): expected a dict from objective index "
            'to zero-cost metric name, e.g. {1: "latency_ms"}.'
        )
    return dict(value)


def check_metric_bounds(owner: str, value: Any) -> dict[str, float]:
    """Zero-cost metric name -> positive upper bound."""
    if value is None:
        return {}
    valid = isinstance(value, Mapping) and all(
        isinstance(k, str)
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and v > 0
        for k, v in value.items()
    )
    if not valid:
        raise ValueError(
            f"{owner}(metric_bounds={value!r}): expected a dict from zero-cost metric name to "
            'its largest feasible value (positive), e.g. {"latency_ms": 5.0}.'
        )
    return {k: float(v) for k, v in value.items()}


def check_options(
    owner: str,
    *,
    acquisition: str | None,
    search_space: Any,
    typed: Mapping[str, tuple[Any, type]],
    replay_pretraining: Any,
    measure_metrics: Any,
) -> None:
    """The sampler's type checks, each error naming the option and the fix."""
    if acquisition is not None:
        check_acquisition(acquisition)
    check_callable(
        owner,
        "search_space",
        search_space,
        expected="a function taking a trial and making the objective's suggest_* calls",
    )
    for name, (value, expected) in typed.items():
        check_type(owner, name, value, expected)
    check_type(owner, "replay_pretraining", replay_pretraining, bool, optional=False)
    check_callable(
        owner,
        "measure_metrics",
        measure_metrics,
        expected="a function from an architecture's params to its zero-cost metrics",
    )


def check_objectives(
    owner: str, n_objectives: int, objective_metrics: Mapping[int, str], multi_fidelity: bool
) -> None:
    """Options that must fit the study's objectives, checked at its first trial."""
    if n_objectives > 1 and multi_fidelity:
        raise ValueError(
            f"{owner}(multi_fidelity=...) supports single-objective studies only; this study "
            f"has {n_objectives} objectives. Drop multi_fidelity, or optimise one objective "
            "with the others as bounds (metric_bounds=...)."
        )
    wrong = sorted(i for i in objective_metrics if i >= n_objectives)
    if wrong or (objective_metrics and n_objectives == 1):
        raise ValueError(
            f"{owner}(objective_metrics={dict(objective_metrics)}): the study has "
            f"{n_objectives} objective(s). objective_metrics maps the index of one of several "
            "objectives (0 to n-1) to the zero-cost metric it returns; for one objective, "
            "leave it out."
        )
