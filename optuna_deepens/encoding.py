"""Optuna distributions to fixed-length feature vectors, over the UNION of all parameters.

Architectures live in define-by-run spaces where many parameters only exist on some branches.
Optuna's intersection search space drops exactly those parameters, so this module keeps every
parameter ever seen and encodes a parameter that a trial did not use as *inactive*.

Two representations are used:

* the *internal matrix* ``[n, n_params]`` of floats: Optuna's internal representation of each
  value (the index for a categorical, the number itself otherwise), ``NaN`` where inactive;
* the *feature matrix* ``[n, n_features]`` fed to the ensemble: per parameter an activity flag,
  then a one-hot block for a categorical or one value scaled to ``[0, 1]`` (in log space for
  ``log=True``) for a number. Inactive parameters are all zeros apart from their flag.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
import math
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution

SUPPORTED_DISTRIBUTIONS = (FloatDistribution, IntDistribution, CategoricalDistribution)


def is_supported(distribution: BaseDistribution) -> bool:
    return isinstance(distribution, SUPPORTED_DISTRIBUTIONS)


def numeric_bounds(distribution: FloatDistribution | IntDistribution) -> tuple[float, float]:
    """The interval a number is scaled from, widened by half a step for stepped values.

    Widening gives every grid point the same share of ``[0, 1]``, so uniform draws in the scaled
    space followed by rounding pick each grid point equally often.
    """
    low, high = float(distribution.low), float(distribution.high)
    step = distribution.step
    if distribution.log:
        if isinstance(distribution, IntDistribution):
            return math.log(low - 0.5) if low > 0.5 else math.log(low), math.log(high + 0.5)
        return math.log(low), math.log(high)
    if step is not None:
        return low - 0.5 * step, high + 0.5 * step
    return low, high


def unscale_numeric(
    distribution: FloatDistribution | IntDistribution, unit: np.ndarray
) -> np.ndarray:
    """Map values in ``[0, 1]`` to valid internal values of ``distribution`` (on its grid)."""
    lo, hi = numeric_bounds(distribution)
    raw = lo + np.clip(unit, 0.0, 1.0) * (hi - lo)
    if distribution.log:
        raw = np.exp(raw)
    low, high = float(distribution.low), float(distribution.high)
    if distribution.step is not None:
        step = float(distribution.step)
        raw = low + np.round((raw - low) / step) * step
    elif isinstance(distribution, IntDistribution):
        raw = np.round(raw)
    return np.clip(raw, low, high)


def scale_numeric(
    distribution: FloatDistribution | IntDistribution, raw: np.ndarray
) -> np.ndarray:
    lo, hi = numeric_bounds(distribution)
    values = np.log(np.maximum(raw, 1e-300)) if distribution.log else raw
    if hi <= lo:
        return np.full_like(values, 0.5)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def union_search_space(
    distributions_in_order: Iterable[Mapping[str, BaseDistribution]],
) -> dict[str, BaseDistribution]:
    """Every parameter seen, the latest distribution winning when a parameter's range changed."""
    union: dict[str, BaseDistribution] = {}
    for distributions in distributions_in_order:
        union.update(distributions)
    return {name: union[name] for name in sorted(union)}


def modelled_space(
    distributions: Mapping[str, BaseDistribution],
) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The parameters the ensemble models, and the names of unsupported ones left out.

    A parameter with a single value needs no model and is left out silently.
    """
    space: dict[str, BaseDistribution] = {}
    unsupported: list[str] = []
    for name, distribution in distributions.items():
        if distribution.single():
            continue
        if not is_supported(distribution):
            unsupported.append(name)
            continue
        space[name] = distribution
    return space, unsupported


class SearchSpaceEncoder:
    """Encodes parameter dictionaries of a fixed union search space.

    Args:
        search_space: Parameter name to distribution. Only Float, Int and Categorical
            distributions with more than one value are encoded; callers leave others out.
    """

    def __init__(self, search_space: Mapping[str, BaseDistribution]) -> None:
        for name, distribution in search_space.items():
            if not is_supported(distribution):
                raise ValueError(
                    f"Parameter {name!r} has an unsupported distribution "
                    f"{type(distribution).__name__}; use FloatDistribution, IntDistribution "
                    "or CategoricalDistribution (trial.suggest_float/int/categorical)."
                )
        self.names: list[str] = sorted(search_space)
        self.distributions: list[BaseDistribution] = [search_space[n] for n in self.names]
        self.index = {name: i for i, name in enumerate(self.names)}
        widths = [
            1 + (len(d.choices) if isinstance(d, CategoricalDistribution) else 1)
            for d in self.distributions
        ]
        self.offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        self.n_features = int(self.offsets[-1])

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def signature(self) -> tuple[tuple[str, str], ...]:
        """Identifies the feature layout: an ensemble trained on one layout fits no other."""
        return tuple((n, repr(d)) for n, d in zip(self.names, self.distributions))

    def to_internal(self, params_list: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Rows of Optuna internal values; ``NaN`` where a parameter is absent or invalid now."""
        rows = []
        for params in params_list:
            row = np.full(self.n_params, np.nan)
            for name, value in params.items():
                j = self.index.get(name)
                if j is None:
                    continue
                row[j] = self._value_to_internal(self.distributions[j], value)
            rows.append(row)
        return np.asarray(rows, dtype=float).reshape(-1, self.n_params)

    def value_to_internal(self, column: int, value: Any) -> float:
        """Internal value of one external value of column ``column``; ``NaN`` if invalid now."""
        return self._value_to_internal(self.distributions[column], value)

    @staticmethod
    def _value_to_internal(distribution: BaseDistribution, value: Any) -> float:
        if isinstance(distribution, CategoricalDistribution):
            try:
                return float(distribution.to_internal_repr(value))
            except ValueError:
                return math.nan  # A choice the current distribution no longer offers.
        try:
            number = float(value)
        except (TypeError, ValueError):
            return math.nan
        return number if math.isfinite(number) else math.nan

    def encode(self, internal: np.ndarray) -> np.ndarray:
        """Feature matrix ``[n, n_features]`` (float32) of an internal matrix."""
        n = internal.shape[0]
        features = np.zeros((n, self.n_features), dtype=np.float32)
        for j, distribution in enumerate(self.distributions):
            column = internal[:, j]
            active = ~np.isnan(column)
            start = self.offsets[j]
            features[:, start] = active
            if isinstance(distribution, CategoricalDistribution):
                rows = np.flatnonzero(active)
                features[rows, start + 1 + column[rows].astype(int)] = 1.0
            else:
                scaled = scale_numeric(distribution, np.where(active, column, distribution.low))
                features[:, start + 1] = np.where(active, scaled, 0.0)
        return features

    def to_params(self, row: np.ndarray) -> dict[str, Any]:
        """External (user-facing) values of the active entries of one internal row."""
        params: dict[str, Any] = {}
        for j, distribution in enumerate(self.distributions):
            value = row[j]
            if math.isnan(value):
                continue
            if isinstance(distribution, CategoricalDistribution):
                params[self.names[j]] = distribution.to_external_repr(int(value))
            else:
                params[self.names[j]] = distribution.to_external_repr(float(value))
        return params

    def keys(self, internal: np.ndarray) -> list[tuple[tuple[str, float], ...]]:
        """Hashable identities of rows, over their active entries, for deduplication."""
        rounded = np.round(internal, 9)
        names = self.names
        return [
            tuple((names[j], float(v)) for j, v in enumerate(row) if not math.isnan(v))
            for row in rounded
        ]


def params_key(params: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """The identity of ``{name: internal value}``, matching :meth:`SearchSpaceEncoder.keys`."""
    return tuple(
        (name, float(np.round(value, 9)))
        for name, value in sorted(params.items())
        if not math.isnan(value)
    )
