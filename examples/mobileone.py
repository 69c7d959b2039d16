"""Search MobileOne ConvNets, then export the winner reparameterised for deployment.

MobileOne blocks train with several parallel branches and fuse them into one convolution for
inference. The search trains them unfused (``search_spaces.mobileone.build``) and the exported
best is fused with ``search_spaces.reparameterize``: the script checks that the fused network
computes the same outputs with a quarter of the parameters. The search is restricted to the
thesis's depth and size filter (36,306 architectures; ``--unfiltered`` for all 13 million).

The default run (digits at 32 px, 6 trials of 2 epochs in the filtered space) takes a few
minutes on 2 CPU cores. A real run on CIFAR-10 (binary files) on a GPU::

    python examples/mobileone.py --data cifar10:/data/cifar-10-batches-bin --device cuda \
        --epochs 100 --trials 100
"""

from __future__ import annotations

import functools

import optuna
import torch

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens.cli import example_parser
from optuna_deepens.cli import open_storage
from optuna_deepens.cli import run_study
from optuna_deepens.data import load_data
from optuna_deepens.export import export_trial
from optuna_deepens.export import load_architecture
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.training import TrainingConfig
from search_spaces import mobileone
from search_spaces import reparameterize


class Filtered:
    """``search_spaces.mobileone`` restricted to the thesis's depth and size filter."""

    suggest = staticmethod(functools.partial(mobileone.suggest, filtered=True))
    build = staticmethod(mobileone.build)


def main() -> None:
    parser = example_parser(__doc__, trials=6, epochs=2, storage="sqlite:///mobileone.db")
    parser.add_argument(
        "--unfiltered", dest="filtered", action="store_false", help="all 13M architectures"
    )
    args = parser.parse_args()
    space = Filtered() if args.filtered else mobileone
    data = load_data(args.data, limit=args.limit)
    objective = TrainingObjective(
        space, data, config=TrainingConfig(epochs=args.epochs, batch_size=64, device=args.device)
    )
    study = optuna.create_study(
        study_name="mobileone",
        storage=open_storage(args.storage),
        sampler=DeepEnsembleSampler(seed=0, search_space=objective.suggest, n_startup_trials=4),
        direction="maximize",
        load_if_exists=True,
    )
    run_study(study, objective, args.trials)

    record = export_trial(
        study.best_trial,
        "mobileone",
        build_options=objective.build_options,
        suggest_options={"filtered": args.filtered},
        out="mobileone-best.json",
    )
    _, model = load_architecture("mobileone-best.json")
    model.eval()
    x = torch.randn(2, 3, data.image_size, data.image_size)
    with torch.no_grad():
        unfused = model(x)
        n_unfused = sum(p.numel() for p in model.parameters())
        reparameterize(model)
        change = ((model(x) - unfused).norm() / unfused.norm()).item()
    n_fused = sum(p.numel() for p in model.parameters())
    print(f"Best: {record['value']:.4f}, written to mobileone-best.json.")
    print(
        f"Reparameterised: {n_unfused:,} -> {n_fused:,} parameters, outputs change {change:.1e}."
    )


if __name__ == "__main__":
    main()
