"""search_budgets: the best design at several budgets, in one shared study or one per budget."""

from __future__ import annotations

import budgeted
import optuna
import pytest

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import EnsembleConfig
from optuna_deepens import fidelity
from optuna_deepens import search_budgets
from optuna_deepens.budgets import BUDGET_ATTR
from optuna_deepens.budgets import _at_budget

_FAST = EnsembleConfig(cold_steps=200, warm_steps=40)


def _random(seed: int = 0):
    return lambda: optuna.samplers.RandomSampler(seed=seed)


@pytest.mark.parametrize("strategy", ["shared", "per_budget"])
def test_each_budget_gets_its_best_feasible_trial(strategy: str) -> None:
    result = search_budgets(
        budgeted.objective,
        budgeted.BUDGETS,
        n_trials=30,
        strategy=strategy,
        sampler=_random(),
    )
    assert result.n_evaluations == 30
    assert [d.budget for d in result.designs] == list(budgeted.BUDGETS)
    trials = [t for s in result.studies for t in s.trials]
    assert len(trials) == 30
    for design in result.designs:
        at_budget = [t for t in trials if t.user_attrs[BUDGET_ATTR] == design.budget]
        assert design.trial is not None
        assert design.value == max(t.value for t in at_budget)
        assert result.best(design.budget) is design.trial
    if strategy == "shared":
        assert len(result.studies) == 1
        assert all(t.params["budget"] == t.user_attrs[BUDGET_ATTR] for t in trials)
    else:
        # 30 trials over 3 budgets: 10 each, and the budget is not a parameter.
        assert [len(s.trials) for s in result.studies] == [10, 10, 10]
        assert all("budget" not in t.params for t in trials)


def test_the_pareto_set_drops_a_budget_whose_design_is_no_better_than_a_cheaper_one() -> None:
    values = {1.0: 5.0, 2.0: 4.0, 3.0: 7.0}

    def objective(trial: optuna.Trial, budget: float) -> float:
        trial.suggest_int("x", 0, 0)
        return values[budget]

    result = search_budgets(objective, values, n_trials=9, sampler=_random())
    assert [d.budget for d in result.pareto] == [1.0, 3.0]
    # Minimising, the order reverses: the cheapest design is the best one.
    result = search_budgets(objective, values, n_trials=9, sampler=_random(), direction="minimize")
    assert [d.budget for d in result.pareto] == [1.0, 2.0]


def test_the_pareto_set_uses_the_designs_own_cost() -> None:
    # The design found at budget 4 costs less than the one at budget 2 and is better: the
    # design at 2 is dominated even though its budget is smaller.
    cost = {2.0: 1.9, 4.0: 1.5}

    def objective(trial: optuna.Trial, budget: float) -> float:
        trial.suggest_int("x", 0, 0)
        trial.set_user_attr("zc_latency_ms", cost[budget])
        return budget

    result = search_budgets(
        objective, cost, n_trials=4, sampler=_random(), cost_attr="zc_latency_ms"
    )
    assert [(d.budget, d.cost) for d in result.pareto] == [(4.0, 1.5)]


def test_infeasible_trials_are_not_a_budgets_design() -> None:
    def objective(trial: optuna.Trial, budget: float) -> float:
        x = trial.suggest_int("x", 0, 9)
        trial.set_constraint("latency", x - budget)  # Feasible when x <= budget.
        return float(x)

    result = search_budgets(
        objective, [-1.0, 4.0], n_trials=40, strategy="per_budget", sampler=_random()
    )
    assert result.best(-1.0) is None  # No x is <= -1.
    best = result.best(4.0)
    assert best is not None and best.value <= 4.0
    assert [d.budget for d in result.pareto] == [4.0]
    with pytest.raises(KeyError, match="not one of the budgets"):
        result.best(3.0)


@pytest.mark.parametrize("strategy", ["shared", "per_budget"])
def test_a_stopped_search_resumes_from_storage(tmp_path, strategy: str) -> None:
    storage = f"sqlite:///{tmp_path / 'budgets.db'}"
    options = dict(strategy=strategy, storage=storage, study_name="snap", sampler=_random())
    first = search_budgets(budgeted.objective, budgeted.BUDGETS, n_trials=6, **options)
    second = search_budgets(budgeted.objective, budgeted.BUDGETS, n_trials=12, **options)
    assert first.n_evaluations == 6
    assert second.n_evaluations == 12  # Six more, not twelve more.
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    expected = (
        {"snap"} if strategy == "shared" else {"snap-budget-1", "snap-budget-4", "snap-budget-8"}
    )
    assert names == expected


def test_the_design_budget_does_not_pose_as_multi_fidelitys_step_budget() -> None:
    # Both features once wrote "deepens_budget": fidelity() then read a latency budget of 0.5 as
    # 0 epochs to train, and the objective finished without training.
    steps = []

    def objective(trial: optuna.Trial, budget: float) -> float:
        steps.append(fidelity(trial, default=200))
        return budgeted.objective(trial, budget)

    search_budgets(objective, [0.5, 5.0], n_trials=4, strategy="shared", sampler=_random())
    assert steps == [200] * 4


def test_a_study_written_before_the_attr_rename_keeps_its_designs() -> None:
    study = optuna.create_study(direction="maximize")
    for budget, value in [(1.0, 0.3), (4.0, 0.7)]:
        study.add_trial(
            optuna.trial.create_trial(value=value, user_attrs={"deepens_budget": budget})
        )
    assert [t.value for t in _at_budget(study, 4.0)] == [0.7]


def test_the_shared_study_runs_with_the_deep_ensemble_sampler() -> None:
    result = search_budgets(
        budgeted.objective,
        budgeted.BUDGETS,
        n_trials=16,
        strategy="shared",
        sampler=lambda: DeepEnsembleSampler(seed=0, n_startup_trials=6, ensemble_config=_FAST),
    )
    trials = result.studies[0].trials
    assert {t.user_attrs["deepens_source"] for t in trials[6:]} == {"model"}
    # The budget is part of the architecture: no (budget, design) pair is trained twice.
    assert len({tuple(t.params.values()) for t in trials}) == 16
    assert all(d.trial is not None for d in result.designs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budgets": []}, "at least one budget"),
        ({"budgets": [1.0, 1.0]}, "none twice"),
        ({"budgets": [float("nan")]}, "finite"),
        ({"strategy": "each"}, "strategy='each'"),
        ({"n_trials": 2}, "n_trials=2"),
        ({"storage": "sqlite:///:memory:"}, "study_name"),
        ({"direction": "up"}, "direction='up'"),
    ],
)
def test_bad_options_are_refused_before_any_trial(kwargs: dict, message: str) -> None:
    calls = []
    options = {"budgets": budgeted.BUDGETS, "n_trials": 6, **kwargs}
    budgets = options.pop("budgets")
    with pytest.raises(ValueError, match=message):
        search_budgets(lambda t, b: calls.append(b) or 0.0, budgets, **options)
    assert calls == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": optuna.samplers.RandomSampler()}, "not a sampler instance"),
        ({"n_trials": 6.5}, "n_trials=6.5"),
    ],
)
def test_wrongly_typed_options_are_refused_before_any_trial(kwargs: dict, message: str) -> None:
    calls = []
    options = {"n_trials": 6, **kwargs}
    with pytest.raises(TypeError, match=message):
        search_budgets(lambda t, b: calls.append(b) or 0.0, budgeted.BUDGETS, **options)
    assert calls == []


def test_the_budgets_benchmark_reads_evaluations_in_turns(tmp_path) -> None:
    from pathlib import Path
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import budgets as benchmark

    record = benchmark.run("synthetic", "random", 0, str(tmp_path / "none.csv"), quick=True)
    regret = record["regret"]
    assert len(regret) == 12 and record["found"][-1] <= len(budgeted.BUDGETS)
    assert all(b <= a for a, b in zip(regret, regret[1:]))  # The best so far only improves.
    assert record["trials_per_budget"] == {"1": 4, "4": 4, "8": 4}
    # In turns, every budget has had a trial after three evaluations: no floor is left.
    family = benchmark.synthetic_family()
    assert regret[2] < max(family.optimum.values()) - family.floor - 5.0
    text = benchmark.summary(
        {
            "meta": {"date": "d", "commit": "c", "cpu": "p", "command": ""},
            "families": {
                "synthetic": {"budgets": [1, 4, 8], "n_trials": 12, "runs": {"random": [record]}}
            },
        }
    )
    assert "| random | 1 |" in text
