"""Feasibility: constraints the objective reports, and bounds declared on zero-cost metrics.

Two kinds, both feasible at ``<= 0`` once expressed as a constraint value:

* ``Trial.set_constraint(key, value)`` (Optuna 5) in the objective: each key is a head of the
  ensemble, learnt from the trials in its own units (``training_data``);
* bounds the user declares on a zero-cost metric (``metric_bounds={"latency_ms": 5.0}``): the
  constraint is ``log(metric) - log(bound)``, read from the metric's head (pretrained, or learnt
  from the ``zc_*`` attrs). Candidates whose predicted metric is over the bound are removed
  before scoring; with ``measure_metrics`` the best candidates are measured exactly, so no
  architecture over a bound is trained.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from optuna_deepens.candidates import Candidates
from optuna_deepens.context import ProposalContext
from optuna_deepens.ensemble import DeepEnsemble
from optuna_deepens.training_data import TrainingData
from optuna_deepens.transforms import metric_target
from optuna_deepens.zero_cost import USER_ATTR_PREFIX
from optuna_deepens.zero_cost import check_metric

MeasureFunction = Callable[[dict[str, Any]], Mapping[str, float]]
# Candidates measured exactly per proposal, at most: measuring is a forward pass or a lookup.
_MAX_MEASURED = 512
# Measured in the order of the acquisition first; after these, by the least predicted excess.
_MAX_BY_SCORE = 64
_FEASIBLE_WANTED = 4


@dataclass(frozen=True)
class Predicted:
    """The members' constraint values for candidates, and their excess over the bounds."""

    values: np.ndarray | None  # [members, n, c], feasible where <= 0.
    excess: np.ndarray | None  # [n], the members' mean excess over the worst declared bound.

    def take(self, mask: np.ndarray) -> Predicted:
        values = None if self.values is None else self.values[:, mask]
        return Predicted(values, None if self.excess is None else self.excess[mask])


class Constraints:
    """Applies the declared bounds and the reported constraints to one proposal's candidates.

    Args:
        measure: Exact zero-cost metrics of an architecture from its parameters (for example
            building it and calling :func:`optuna_deepens.zero_cost.measure`); ``None`` trusts
            the metric heads.
        warn: Called with a key and a message for a problem the user should hear about once.
    """

    def __init__(
        self, *, measure: MeasureFunction | None, warn: Callable[[str, str], None]
    ) -> None:
        self._measure = measure
        self._warn = warn
        self._measured: dict[Any, dict[str, float]] = {}

    def predict(
        self,
        ctx: ProposalContext,
        data: TrainingData,
        ensemble: DeepEnsemble,
        features: np.ndarray,
    ) -> Predicted:
        """Each member's constraint values (reported constraints, then declared bounds)."""
        columns = [ensemble.predict(features, head) for head in data.constraint_heads]
        excess = self._bound_excess(ctx, ensemble, features)
        if excess is None:
            return Predicted(np.stack(columns, axis=2) if columns else None, None)
        columns += list(np.moveaxis(excess, 2, 0))
        return Predicted(np.stack(columns, axis=2), excess.mean(axis=0).max(axis=1))

    @staticmethod
    def plausible(
        candidates: Candidates, features: np.ndarray, predicted: Predicted
    ) -> tuple[Candidates, np.ndarray, Predicted]:
        """The candidates predicted within every bound, with their features and predictions
        (all of them when none is)."""
        if predicted.excess is None or not (within := predicted.excess <= 0).any():
            return candidates, features, predicted
        return candidates.take(within), features[within], predicted.take(within)

    def verify(
        self,
        ctx: ProposalContext,
        candidates: Candidates,
        order: np.ndarray,
        excess: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[int, dict[str, float]]]:
        """``order`` restricted to candidates measured within the bounds, then unmeasured ones.

        The best candidates are measured in order until a few are within the bounds (a few,
        so that a clash with another worker at claim time still finds a measured one); those
        measured over a bound are dropped. When the best by score are all over a bound (the
        most accurate architectures are the slow ones), the rest are measured in the same order
        if predicted within the bounds, then from the least predicted ``excess`` up. Returns
        the order and the measured ``zc_*`` attrs by candidate index, to record on the trial.
        Without ``measure`` or bounds, the order is unchanged.
        """
        bounds = ctx.objectives.bounds
        if self._measure is None or not bounds:
            return order, {}
        fallback = order[_MAX_BY_SCORE:]
        if excess is not None:
            # Those predicted within the bounds keep the acquisition's order; the rest follow,
            # nearest the bounds first.
            within = excess[fallback] <= 0
            over = fallback[~within]
            fallback = np.concatenate(
                [fallback[within], over[np.argsort(excess[over], kind="stable")]]
            )
        walk = np.concatenate([order[:_MAX_BY_SCORE], fallback])[:_MAX_MEASURED]
        measured: dict[int, dict[str, float]] = {}
        feasible: list[int] = []
        for index in (int(i) for i in walk):
            metrics = self._metrics(ctx, candidates, index)
            measured[index] = {USER_ATTR_PREFIX + k: v for k, v in metrics.items()}
            if all(metrics.get(name, np.inf) <= bound for name, bound in bounds.items()):
                feasible.append(index)
                if len(feasible) == _FEASIBLE_WANTED:
                    break
        if not feasible:
            self._warn(
                "no-feasible",
                f"None of the {len(measured)} best candidates is within metric_bounds={bounds} "
                "when measured; the best one is tried anyway. Loosen the bounds or check that "
                "the search space holds architectures that small.",
            )
            return order, measured
        unmeasured = [int(i) for i in order if int(i) not in measured]
        return np.array(feasible + unmeasured, dtype=int), measured

    def _metrics(
        self, ctx: ProposalContext, candidates: Candidates, index: int
    ) -> dict[str, float]:
        assert self._measure is not None
        key = ctx.encoder.keys(candidates.rows[[index]])[0]
        if key not in self._measured:
            params = ctx.encoder.to_params(candidates.rows[index])
            try:
                metrics = {k: check_metric(k, v) for k, v in self._measure(params).items()}
            except Exception as error:  # One architecture's failure must not end the study.
                self._warn(
                    "measure-failed",
                    f"measure_metrics failed on {params} ({type(error).__name__}: {error}); "
                    "such candidates count as outside metric_bounds. Make it return finite "
                    "metrics >= 0 for every architecture of the space.",
                )
                metrics = {}
            self._measured[key] = metrics
        return self._measured[key]

    def _bound_excess(
        self, ctx: ProposalContext, ensemble: DeepEnsemble, features: np.ndarray
    ) -> np.ndarray | None:
        """``log(predicted metric) - log(bound)`` per member, ``[members, n, bounds]``."""
        bounds = ctx.objectives.bounds
        known = {m: b for m, b in bounds.items() if m in ensemble.head_names}
        for metric in sorted(set(bounds) - set(known)):
            self._warn(
                f"unknown-metric:{metric}",
                f"metric_bounds names {metric!r}, but no trial recorded zc_{metric} and the "
                "pretrained surrogate has no such head, so the bound cannot be predicted. "
                "Record it with optuna_deepens.measure_and_record, or pretrain on it.",
            )
        if not known:
            return None
        columns = [
            ensemble.predict(features, metric) - metric_target(np.array([bound]))[0]
            for metric, bound in known.items()
        ]
        return np.stack(columns, axis=2)
