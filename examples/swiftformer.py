"""Search SwiftFormer-MobileOne hybrids, starting from a surrogate pretrained on zero-cost metrics.

Before the first training, 200 architectures of the space are built and measured (params,
FLOPs, latency, memory: seconds each, no training) and the ensemble is pretrained on them
(thesis 5.2.3). The search then starts from a model that already tells architectures apart by
size and speed. The table and the surrogate are cached in ``.deepens-cache/``: a rerun, or any
later study of this space, reuses them.

The default run (digits at 32 px, 6 trials of 1 epoch, 200 architectures measured) takes a few
minutes on 2 CPU cores. A real run on an image folder on a GPU::

    python examples/swiftformer.py --data folder:/data/imagewoof --device cuda --epochs 100 \
        --trials 100 --pretrain 2000
"""

from __future__ import annotations

import optuna

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.cli import example_parser
from optuna_deepens.cli import open_storage
from optuna_deepens.cli import run_study
from optuna_deepens.data import load_data
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.objective import cached_surrogate
from optuna_deepens.training import TrainingConfig
from search_spaces import swiftformer


def main() -> None:
    parser = example_parser(__doc__, trials=6, epochs=1, storage="sqlite:///swiftformer.db")
    parser.add_argument("--pretrain", type=int, default=200, help="architectures to measure")
    args = parser.parse_args()
    data = load_data(args.data, limit=args.limit)
    objective = TrainingObjective(
        swiftformer,
        data,
        config=TrainingConfig(epochs=args.epochs, batch_size=64, device=args.device),
    )
    surrogate = cached_surrogate(objective, n_architectures=args.pretrain, name="swiftformer")
    sampler = DeepEnsembleSampler(
        seed=0, search_space=objective.suggest, pretrained=surrogate, n_startup_trials=2
    )
    study = optuna.create_study(
        study_name="swiftformer",
        storage=open_storage(args.storage),
        sampler=sampler,
        direction="maximize",
        load_if_exists=True,
    )
    run_study(study, objective, args.trials)
    best = study.best_trial
    print(f"best {best.value:.4f}: {best.params}")
    print(
        f"{best.user_attrs['zc_params']:,.0f} parameters, "
        f"{best.user_attrs['zc_latency_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
