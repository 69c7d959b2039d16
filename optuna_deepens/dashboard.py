"""Figures for optuna-dashboard, saved as the study runs (``optuna-deepens[dashboard]``).

``DashboardFigures`` is a study callback. Every few finished trials it stores two plotly
figures in the study, which optuna-dashboard shows on the study's page:

* **the surrogate, checked**: for every model-chosen trial, the prediction the sampler made
  *before* training it (``deepens_predicted_mean`` +- ``deepens_predicted_std``) against the
  value it then got: out-of-sample by construction, so it shows how far to trust the model;
* **accuracy against cost**: each trial's value against a zero-cost metric (latency by default),
  with the Pareto set (no other trial both better and cheaper) marked.
"""

from __future__ import annotations

from collections.abc import Sequence
import warnings

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState

from optuna_deepens._validation import check_choice
from optuna_deepens._validation import check_int
from optuna_deepens.coordination import PREDICTED_MEAN_ATTR
from optuna_deepens.coordination import PREDICTED_STD_ATTR
from optuna_deepens.transforms import direction_sign
from optuna_deepens.zero_cost import METRIC_NAMES

PREDICTION_FIGURE = "deepens-prediction"
PARETO_FIGURE = "deepens-pareto"


class DashboardFigures:
    """Save the surrogate and Pareto figures every ``every`` finished trials.

    Args:
        every: Trials between updates (each saves two small JSON figures to the storage).
        metric: The zero-cost metric on the cost axis: ``"latency_ms"``, ``"params"``,
            ``"flops"`` or ``"memory_mb"``.
    """

    def __init__(self, *, every: int = 5, metric: str = "latency_ms") -> None:
        check_int("DashboardFigures", "every", every, minimum=1)
        check_choice("DashboardFigures", "metric", metric, METRIC_NAMES)
        self.every = every
        self.metric = metric

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if (trial.number + 1) % self.every:
            return
        try:  # optuna-dashboard does not require plotly: check both.
            from optuna_dashboard import save_plotly_graph_object
            import plotly.graph_objects  # noqa: F401
        except ImportError:
            warnings.warn(
                "DashboardFigures needs optuna-dashboard and plotly: "
                "pip install optuna-deepens[dashboard]",
                stacklevel=2,
            )
            return
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        save_plotly_graph_object(
            study, prediction_figure(trials), graph_object_id=PREDICTION_FIGURE
        )
        save_plotly_graph_object(
            study,
            pareto_figure(trials, self.metric, study.directions[0]),
            graph_object_id=PARETO_FIGURE,
        )


def prediction_figure(trials: Sequence[FrozenTrial]):  # -> plotly.graph_objects.Figure
    """Predicted (before training) against observed values of the model-chosen trials."""
    import plotly.graph_objects as go

    chosen = [t for t in trials if PREDICTED_MEAN_ATTR in t.user_attrs]
    observed = [t.values[0] for t in chosen]  # The first objective of a multi-objective study.
    predicted = [t.user_attrs[PREDICTED_MEAN_ATTR] for t in chosen]
    spread = [t.user_attrs.get(PREDICTED_STD_ATTR, 0.0) for t in chosen]
    figure = go.Figure(
        go.Scatter(
            x=observed,
            y=predicted,
            error_y={"type": "data", "array": spread, "visible": True},
            mode="markers",
            text=[f"trial {t.number}" for t in chosen],
            name="model-chosen trials",
        )
    )
    if observed:
        low, high = min(observed + predicted), max(observed + predicted)
        figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="exact"))
    figure.update_layout(
        title="Deep ensemble: prediction before training vs result (+- one spread)",
        xaxis_title="observed value",
        yaxis_title="predicted value",
    )
    return figure


def pareto_figure(
    trials: Sequence[FrozenTrial], metric: str, direction: StudyDirection
):  # -> plotly.graph_objects.Figure
    """Value against a zero-cost metric, the Pareto set (better and cheaper) highlighted."""
    import plotly.graph_objects as go

    key = f"zc_{metric}"
    measured = [t for t in trials if key in t.user_attrs]
    sign = direction_sign(direction)
    front = pareto_set([(t.user_attrs[key], sign * t.values[0]) for t in measured])
    figure = go.Figure()
    for name, members in (
        ("trials", [t for i, t in enumerate(measured) if i not in front]),
        ("Pareto set", [t for i, t in enumerate(measured) if i in front]),
    ):
        figure.add_trace(
            go.Scatter(
                x=[t.user_attrs[key] for t in members],
                y=[t.values[0] for t in members],
                mode="markers",
                text=[f"trial {t.number}" for t in members],
                name=name,
                marker={"size": 10 if name == "Pareto set" else 6},
            )
        )
    figure.update_layout(
        title=f"Value against {metric} (untrained model, measured per trial)",
        xaxis_title=metric,
        yaxis_title="objective value",
    )
    return figure


def pareto_set(points: Sequence[tuple[float, float]]) -> set[int]:
    """Indices of ``(cost, value)`` points that no other point beats: cheaper-or-equal cost and
    larger-or-equal value, one of them strictly."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: set[int] = set()
    best = float("-inf")
    for i in order:
        if points[i][1] > best:
            front.add(i)
            best = points[i][1]
    return front
