"""Search MOAT cells under a latency budget: over-budget networks are skipped untrained.

Each trial builds its network, measures its zero-cost metrics (params, FLOPs, latency, memory;
recorded as ``zc_*`` user attrs, which the sampler learns from) and is pruned at once when the
measured latency is over ``--max-latency-ms``. The sampler never proposes a skipped
architecture again, and learns from its metrics which ones fit.

The default run (digits at 32 px, 6 trials of 1 epoch) takes a few minutes on 2 CPU cores. A
real run on CIFAR-100 (binary files) on a GPU, with the latency budget measured on the CPU::

    python examples/moat.py --data cifar100:/data/cifar-100-binary --device cuda \
        --epochs 100 --trials 80 --max-latency-ms 15
"""

from __future__ import annotations

import optuna

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.cli import example_parser
from optuna_deepens.cli import open_storage
from optuna_deepens.cli import run_study
from optuna_deepens.data import load_data
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.training import TrainingConfig
from search_spaces import moat


def main() -> None:
    parser = example_parser(__doc__, trials=6, epochs=1, storage="sqlite:///moat.db")
    parser.add_argument("--max-latency-ms", type=float, default=12.0, help="CPU, batch 1")
    args = parser.parse_args()
    objective = TrainingObjective(
        moat,
        load_data(args.data, limit=args.limit),
        config=TrainingConfig(epochs=args.epochs, batch_size=64, device=args.device),
        max_latency_ms=args.max_latency_ms,
    )
    study = optuna.create_study(
        study_name="moat",
        storage=open_storage(args.storage),
        sampler=DeepEnsembleSampler(seed=0, search_space=objective.suggest, n_startup_trials=3),
        direction="maximize",
        load_if_exists=True,
    )
    run_study(study, objective, args.trials)
    for trial in study.trials:
        latency = trial.user_attrs.get("zc_latency_ms", float("nan"))
        print(
            f"trial {trial.number}: {trial.state.name:8} {latency:6.2f} ms  "
            f"{list(trial.params.values())}"
        )


if __name__ == "__main__":
    main()
