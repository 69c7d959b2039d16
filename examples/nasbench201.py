"""Search NAS-Bench-201 cells with multi-fidelity: many short trainings, a few full ones.

The sampler decides each trial's fidelity before the objective runs: short runs train
``--low-epochs`` epochs and end PRUNED (``LowFidelityPruner``), full trainings go to the
architectures whose short runs, and the model's prediction of the full result, rank best
(``deepens_source`` = ``promotion`` in the dashboard). One Gaussian process learns from both,
the fidelity an input (``numeric_surrogate="ensemble"`` gives the thesis's shared-trunk heads).

On 2 CPU cores this default run (digits at 32 px, a narrow cell network, 12 trials) takes a
few minutes. The thesis's protocol on CIFAR-10, on a GPU (the binary CIFAR files)::

    python examples/nasbench201.py --data cifar10:/data/cifar-10-batches-bin --device cuda \
        --epochs 200 --low-epochs 12 --trials 300 --channels 16 --cells 5
"""

from __future__ import annotations

import optuna

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import LowFidelityPruner
from optuna_deepens import MultiFidelity
from optuna_deepens.cli import example_parser
from optuna_deepens.cli import open_storage
from optuna_deepens.cli import run_study
from optuna_deepens.data import load_data
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.training import TrainingConfig
from search_spaces import nasbench201


def main() -> None:
    parser = example_parser(__doc__, trials=12, epochs=3, storage="sqlite:///nasbench201.db")
    parser.add_argument("--low-epochs", type=int, default=1, help="epochs of a short run")
    parser.add_argument("--channels", type=int, default=8, help="16 in the benchmark")
    parser.add_argument("--cells", type=int, default=1, help="cells per stage, 5 in the benchmark")
    args = parser.parse_args()
    objective = TrainingObjective(
        nasbench201,
        load_data(args.data, limit=args.limit),
        config=TrainingConfig(epochs=args.epochs, batch_size=64, device=args.device),
        build_options={"channels": args.channels, "cells_per_stage": args.cells},
    )
    sampler = DeepEnsembleSampler(
        seed=0,
        search_space=objective.suggest,
        n_startup_trials=4,
        multi_fidelity=MultiFidelity(low_step=args.low_epochs, full_step=args.epochs),
    )
    study = optuna.create_study(
        study_name="nasbench201",
        storage=open_storage(args.storage),
        sampler=sampler,
        pruner=LowFidelityPruner(),
        direction="maximize",
        load_if_exists=True,
    )
    run_study(study, objective, args.trials)
    full = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    cost = sum(t.user_attrs.get("deepens_cost", 0.0) for t in study.trials)
    print(
        f"{len(study.trials)} trials, {len(full)} full trainings, cost {cost:.2f} full trainings"
    )
    if full:
        best = max(full, key=lambda t: t.value)
        print(f"best cell {nasbench201.to_arch_str(objective.suggest(best))}: {best.value:.4f}")


if __name__ == "__main__":
    main()
