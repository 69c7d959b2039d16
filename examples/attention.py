"""Search efficient-attention designs (the SnapFormer meta-design of thesis chapter 8).

Each design wires two branches of token projections inside SwiftFormer-XS. Its width is scaled
at build time so that its latency on this machine matches SwiftFormer-XS's (an
epsilon-constraint: every design competes at the same speed); the matched widths are cached in
``attention-widths.json`` across runs. With ``--search-width`` the width coefficient becomes a
searched parameter instead.

The default run (digits at 32 px, 4 trials of 1 epoch) takes a few minutes on 2 CPU cores (the
first latency match of each design takes a few seconds). A real run on a GPU::

    python examples/attention.py --data folder:/data/imagewoof --device cuda --epochs 100 \
        --trials 100
"""

from __future__ import annotations

import functools

import optuna

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.cli import example_parser
from optuna_deepens.cli import open_storage
from optuna_deepens.cli import run_study
from optuna_deepens.data import load_data
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.training import TrainingConfig
from search_spaces import attention


class Space:
    """``search_spaces.attention`` with its options bound, as the objective takes a space."""

    def __init__(self, search_width: bool) -> None:
        self.suggest = functools.partial(attention.suggest, search_width=search_width)
        self.build = functools.partial(attention.build, cache_path="attention-widths.json")


def main() -> None:
    parser = example_parser(__doc__, trials=4, epochs=1, storage="sqlite:///attention.db")
    parser.add_argument("--search-width", action="store_true", help="search the width too")
    args = parser.parse_args()
    objective = TrainingObjective(
        Space(args.search_width),
        load_data(args.data, limit=args.limit),
        config=TrainingConfig(epochs=args.epochs, batch_size=64, device=args.device),
        build_options={"distillation": False},
    )
    study = optuna.create_study(
        study_name="attention",
        storage=open_storage(args.storage),
        sampler=DeepEnsembleSampler(seed=0, search_space=objective.suggest, n_startup_trials=2),
        direction="maximize",
        load_if_exists=True,
    )
    run_study(study, objective, args.trials)
    best = study.best_trial
    print(f"best design ({best.value:.4f}): {attention.suggest_design(best)}")


if __name__ == "__main__":
    main()
