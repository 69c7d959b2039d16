"""The seeded checks of the model and trust-region tests, run over 20 seeds, to size margins.

The sibling of ``quality_margins.py`` (the sampler's own searches) for the remaining seeded
checks in ``tests/``: rank correlations and errors of fitted ensembles (``test_ensemble.py``,
``test_surrogate.py``, ``test_fidelity.py``), what the trust region's searches reach
(``test_trust_region.py``), whether Optuna's pruners stop a full training
(``test_fidelity.py``), and the NAS-Bench-201 baselines' evaluations to the optimum
(``test_nb201_benchmark.py``, needs the table; skipped without it). Each case calls the test's
own helper with the seed that drives the model's training (the ensemble's, pretraining's or the
sampler's) set to 0-19; the tests assert only what held for every seed, with room to spare
(see ``results/quality_margins_models.md``). ``trust-region-moves-untrained`` reruns the trust
region's search with an untrained ensemble (one step at learning rate 1e-12), a broken model,
to show which of its checks tell the two apart.

Where a case uses a different seed from the others: the test's own (data, NAS-Bench-201 table)
inputs stay fixed; ``fidelity-low-helps`` varies the data and the sampler together, as the
test's seeds do; the NAS-Bench-201 baselines fit no model (their seed is the random stream).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/quality_margins_models.py [--seeds 20]
[--workers 2] [--cases ...]``
"""

from __future__ import annotations

import itertools
from pathlib import Path
import sys

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from quality_margins import parse_args  # noqa: E402
from quality_margins import run_and_save  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
NAME = "quality_margins_models"


def _ensemble(case: str, seed: int) -> dict:
    import test_ensemble as t

    if case == "ensemble-rank":
        predictions, y_test = t.held_out_predictions(seed)
        return {
            "spearman": t._spearman(predictions.mean(axis=0), y_test),
            "min_member_spread": float(predictions.std(axis=0).min()),
        }
    if case == "ensemble-far-near":
        near, far = t.spread_near_and_far(seed)
        return {"far_over_near": far / near, "near": near, "far": far}
    metric = t.sparse_head_predictions(seed)  # ensemble-sparse-head
    return {
        "abs_mean_minus_1": abs(float(metric.mean()) - 1.0),
        "all_finite": bool(np.all(np.isfinite(metric))),
    }


def run(case: str, seed: int) -> dict:
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(1)
    if case.startswith("ensemble"):
        return _ensemble(case, seed)
    if case == "surrogate-pretrained":
        import test_surrogate as t

        out = {}
        for name, (before, after, rank) in t.held_out_errors(seed).items():
            out[f"{name}_after_over_before"] = after / before
            out[f"{name}_spearman"] = rank
        return out
    if case == "surrogate-sequential":
        import test_surrogate as t

        return {f"{n}_spearman": r for n, r in t.sequential_rank_correlations(seed).items()}
    if case == "fidelity-low-helps":
        import test_fidelity as t

        without = t._held_out_rank_correlation(seed, 0)
        with_low = t._held_out_rank_correlation(seed, 300)
        return {"gain": with_low - without, "without": without, "with_low": with_low}
    if case.startswith("fidelity-pruner-"):
        from optuna.trial import TrialState
        import test_fidelity as t

        study, _ = t.pruned_search(case.removeprefix("fidelity-pruner-"), seed)
        stopped = [
            trial
            for trial in study.trials
            if trial.user_attrs["deepens_fidelity"] == "high" and trial.state == TrialState.PRUNED
        ]
        sources = [trial.user_attrs.get("deepens_source") for trial in study.trials]
        return {"full_trainings_stopped": len(stopped), "model_trials": sources.count("model")}
    if case.startswith("trust-region"):
        return _trust_region(case, seed)
    if case.startswith("nb201-"):
        import nb201

        method = case.removeprefix("nb201-")
        # The test's run (budget 150, stopping at the optimum) up to where it stops: a longer
        # budget only lets the seeds that miss at 150 show how far they are.
        spec = nb201.RunSpec("cifar10", method, seed, 300, str(nb201.DEFAULT_DATA))
        _, record = nb201.run_study(spec)
        return {"evals_to_optimum": record["evals_to_optimum"]}
    raise ValueError(f"unknown case {case!r}")


def _trust_region(case: str, seed: int) -> dict:
    import test_trust_region as t

    if case.startswith("trust-region-moves"):
        if case == "trust-region-moves-untrained":  # A broken model: one step at lr 1e-12.
            from optuna_deepens import EnsembleConfig

            untrained = EnsembleConfig(cold_steps=1, warm_steps=0, learning_rate=1e-12)
            study = t.region_search(seed, ensemble_config=untrained)
        else:
            study = t.region_search(seed)
        region = [tr for tr in study.trials if "deepens_trust_radius" in tr.user_attrs]
        outside = 0
        losses = []  # How much worse than its incumbent each proposal of the region was.
        for trial in region:
            earlier = [e for e in study.trials if e.number < trial.number and e.value is not None]
            incumbent = max(earlier, key=lambda e: e.value)
            edits = t._edits(trial.params, incumbent.params)
            outside += not 1 <= edits <= trial.user_attrs["deepens_trust_radius"]
            losses.append(incumbent.value - trial.value)
        startup_best = max(tr.value for tr in study.trials[:5])
        running = np.maximum.accumulate([tr.value for tr in study.trials])
        return {
            "improvement": study.best_value - startup_best,
            "startup_best": startup_best,
            "best": study.best_value,
            "incumbent_changes": int(np.sum(np.diff(running[4:]) > 0)),
            "region_mean_minus_startup_mean": float(
                np.mean([tr.value for tr in region])
                - np.mean([tr.value for tr in study.trials[:5]])
            ),
            "mean_loss_vs_incumbent": float(np.mean(losses)),
            "model_spearman_all_cells": t.model_rank_of_all_cells(study),
            "region_trials": len(region),
            "outside_radius": outside,
        }
    if case == "trust-region-exhausted":
        study = t.exhausted_region_search(seed)
        keys = {tuple(sorted(tr.params.items())) for tr in study.trials}
        in_region = sum("deepens_trust_radius" in tr.user_attrs for tr in study.trials[2:])
        return {"distinct": len(keys), "region_trials_of_7": in_region}
    if case == "trust-region-conditional":
        study = t.conditional_region_search(seed)
        region = sum("deepens_trust_radius" in tr.user_attrs for tr in study.trials)
        return {"region_trials": region}
    study = t.distinct_region_search(seed)  # trust-region-distinct
    keys = {tuple(sorted(tr.params.items())) for tr in study.trials}
    return {
        "distinct_of_25": len(keys),
        "region_trials": sum("deepens_trust_radius" in tr.user_attrs for tr in study.trials),
    }


CASES = (
    "ensemble-rank",
    "ensemble-far-near",
    "ensemble-sparse-head",
    "surrogate-pretrained",
    "surrogate-sequential",
    "fidelity-low-helps",
    "fidelity-pruner-median-under-companion",
    "fidelity-pruner-successive-halving-under-companion",
    "fidelity-pruner-median-alone",
    "trust-region-moves",
    "trust-region-moves-untrained",
    "trust-region-exhausted",
    "trust-region-conditional",
    "trust-region-distinct",
    "nb201-local-search",
    "nb201-evolution",
)
# The seed each test fixes (the one this script varies), to mark it in the summary.
TEST_SEED = {
    "trust-region-moves": 3,
    "trust-region-moves-untrained": 3,
    "trust-region-distinct": 5,
}


def _cell(v: object) -> str:
    if v is None:
        return "never"
    if isinstance(v, bool):
        return str(v)
    return f"{v:.4f}" if 0.99 < abs(v) < 1 else f"{v:.3g}"  # Correlations near 1 show apart.


def _summary(results: dict[str, list[dict]]) -> str:
    lines = [
        "# Margins of the seeded model and trust-region tests, 20 seeds",
        "",
        "Written by `benchmarks/quality_margins_models.py`. Each row: one value the test checks, "
        "for the seed the test fixes (marked) and over all seeds.",
        "",
        "| case | metric | test's seed | all seeds: min / median / max | per seed |",
        "|---|---|---|---|---|",
    ]
    for case, rows in results.items():
        fixed = TEST_SEED.get(case, 0)
        for metric in rows[0]:
            values = [row[metric] for row in rows]
            if all(isinstance(v, bool) for v in values):
                lines.append(
                    f"| {case} | {metric} | {values[fixed] if fixed < len(values) else '-'} | "
                    f"{sum(values)} of {len(values)} True | |"
                )
                continue
            finite = [float(v) for v in values if v is not None]
            top = _cell(max(finite)) if len(finite) == len(values) else "never"
            lines.append(
                f"| {case} | {metric} | {_cell(values[fixed]) if fixed < len(values) else '-'} | "
                f"{_cell(min(finite))} / {_cell(float(np.median(finite)))} / {top} | "
                f"{', '.join(_cell(v) for v in values)} |"
            )
    if "trust-region-moves-untrained" in results:
        lines += [
            "",
            "trust-region-moves-untrained: trust-region-moves with an untrained ensemble (one "
            "step at learning rate 1e-12), a broken model: what its checks must tell apart.",
        ]
    # test_low_fidelity_results_improve_the_prediction_of_full_results averages 3 seeds.
    if "fidelity-low-helps" in results:
        rows = results["fidelity-low-helps"]
        if len(rows) >= 3:
            gain = np.array([row["gain"] for row in rows])
            # mean(with_low) - mean(without) over 3 seeds is the mean of their gains.
            gains = [gain[list(c)].mean() for c in itertools.combinations(range(len(rows)), 3)]
            lines += [
                "",
                "fidelity-low-helps, the test's check over every choice of 3 of the seeds: "
                f"mean(with_low) - mean(without) from {min(gains):.3f} to {max(gains):.3f} "
                f"(seeds 0-2: {gains[0]:.3f}).",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args(__doc__, CASES)
    if any(c.startswith("nb201-") for c in args.cases):
        import nb201_table

        if not nb201_table.DEFAULT_DATA.is_file():
            print(f"No NAS-Bench-201 table at {nb201_table.DEFAULT_DATA}: nb201 cases skipped")
            args.cases = [c for c in args.cases if not c.startswith("nb201-")]
    run_and_save(run, args, name=NAME, cases=CASES, summary=_summary)


if __name__ == "__main__":
    main()
