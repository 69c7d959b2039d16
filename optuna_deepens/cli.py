"""``optuna-deepens``: search a thesis space by training its networks, profile it, export the best.

    optuna-deepens search --space nasbench201 --data digits --storage sqlite:///nas.db --trials 30
    optuna-deepens profile --space mobileone
    optuna-deepens export --storage sqlite:///nas.db --study nasbench201-digits --out best.json

Run the same ``search`` command on many machines against one PostgreSQL database to search with
many workers; run it again after a stop and it resumes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Sequence
import functools
import json
from pathlib import Path
import sys
import time
from typing import Any

import optuna
from optuna.storages import RetryFailedTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError
import torch

from optuna_deepens import zero_cost
from optuna_deepens.dashboard import DashboardFigures
from optuna_deepens.data import DATA_SPECS
from optuna_deepens.data import DataError
from optuna_deepens.data import load_data
from optuna_deepens.export import export_trial
from optuna_deepens.multi_fidelity import LowFidelityPruner
from optuna_deepens.multi_fidelity import MultiFidelity
from optuna_deepens.novelty import NEW_STRUCTURE_ATTR
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.objective import cached_surrogate
from optuna_deepens.objective import check_build_options
from optuna_deepens.objective import default_build_options
from optuna_deepens.pretraining_set import build_pretraining_set
from optuna_deepens.sampler import DeepEnsembleSampler
from optuna_deepens.surrogate import PretrainedSurrogate
from optuna_deepens.surrogate import SurrogateFileError
from optuna_deepens.training import TrainingConfig
from optuna_deepens.zero_cost import ModelMeasurementError

SPACE_ATTR = "deepens_space"
BUILD_ATTR = "deepens_build_options"
DATA_ATTR = "deepens_data"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_Commands = argparse._SubParsersAction  # What add_subparsers returns.


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (
        DataError,
        SurrogateFileError,
        ModelMeasurementError,
        ValueError,
        KeyError,
        OSError,
        SQLAlchemyError,
    ) as error:
        parser.exit(2, f"optuna-deepens {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "\nInterrupted: run the same command again to resume.\n")


# ------------------------------------------------------------------------------------ search
def search(args: argparse.Namespace) -> int:
    objective = _training_objective(args)
    multi_fidelity, pruner = _fidelities(args)
    bounds = None if args.max_latency_ms is None else {"latency_ms": args.max_latency_ms}
    sampler = DeepEnsembleSampler(
        seed=args.seed,
        search_space=objective.suggest,
        n_startup_trials=args.startup_trials,
        multi_fidelity=multi_fidelity,
        pretrained=_pretrained(args, objective),
        objective_metrics=objective.objective_metrics or None,
        metric_bounds=bounds,
    )
    data = objective.data
    study_name = args.study or f"{args.space}-{data.name}"
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(args.storage, args.heartbeat),
        sampler=sampler,
        pruner=pruner,
        directions=objective.directions,
        load_if_exists=True,
    )
    study.set_user_attr(SPACE_ATTR, args.space)
    study.set_user_attr(BUILD_ATTR, objective.build_options)
    study.set_user_attr(DATA_ATTR, args.data)
    print(
        f"Study {study_name!r} in {args.storage}: {args.trials} finished trials wanted, on "
        f"{objective.config.torch_device()} ({args.space}, {data.name}, {len(data.x_train)} "
        "training images)."
    )
    run_study(study, objective, args.trials, quiet=args.quiet)
    _print_best(study, args)
    return 0


def _training_objective(args: argparse.Namespace) -> TrainingObjective:
    """The objective that trains each proposed network of ``--space`` on ``--data``."""
    space = _space(args.space)
    data = load_data(args.data, image_size=args.image_size, limit=args.limit)
    config = TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        device=args.device,
        compile=args.compile or False,
        seed=args.seed,
    )
    return TrainingObjective(
        space,
        data,
        config=config,
        build_options=_json_option(args.build_options),
        checkpoint_dir=args.checkpoint_dir,
        zero_cost_metrics=not args.no_zero_cost,
        max_latency_ms=args.max_latency_ms,
        objectives=args.objectives,
        hyperparameters=_around(args.lr, args.weight_decay)
        if args.search_hyperparameters
        else None,
    )


def _around(learning_rate: float, weight_decay: float) -> Callable[[Any], dict[str, float]]:
    """Learning rate and weight decay searched within a factor of 10 of the given ones (log)."""
    if weight_decay <= 0:
        raise ValueError(
            "--search-hyperparameters searches --weight-decay on a log scale around its value; "
            f"give a positive one (got {weight_decay})."
        )

    def suggest(trial: Any) -> dict[str, float]:
        return {
            "learning_rate": trial.suggest_float(
                "learning_rate", learning_rate / 10, learning_rate * 10, log=True
            ),
            "weight_decay": trial.suggest_float(
                "weight_decay", weight_decay / 10, weight_decay * 10, log=True
            ),
        }

    return suggest


def _fidelities(
    args: argparse.Namespace,
) -> tuple[MultiFidelity | None, optuna.pruners.BasePruner]:
    """Short runs of ``--low-epochs`` and the pruner that stops them there, if asked for."""
    if not args.low_epochs:
        return None, optuna.pruners.NopPruner()
    return MultiFidelity(low_step=args.low_epochs, full_step=args.epochs), LowFidelityPruner()


def _pretrained(
    args: argparse.Namespace, objective: TrainingObjective
) -> PretrainedSurrogate | None:
    """With ``--pretrain N``, the surrogate pretrained on N architectures (cached)."""
    if not args.pretrain:
        return None
    return cached_surrogate(
        objective,
        n_architectures=args.pretrain,
        name=args.space,
        cache_dir=args.cache_dir,
        show_progress_bar=not args.quiet,
    )


def _print_best(study: optuna.Study, args: argparse.Namespace) -> None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if not complete:
        print("No COMPLETE trial yet.")
        return
    front = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    if len(study.directions) > 1:
        print(f"\n{len(front)} architecture(s) on the front of accuracy against the metrics.")
    for best in sorted(front, key=lambda t: -t.values[0]):
        print(f"\nBest validation accuracy {best.values[0]:.4f} (trial {best.number}):")
        for name, value in best.params.items():
            print(f"  {name}: {value}")
        metrics = zero_cost.read_recorded(best.user_attrs)
        if metrics:
            print("  " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    print(
        f"{len(complete)} COMPLETE, {len(failed)} FAIL (reasons in user attr deepens_fail_reason)."
    )
    spent = [t.user_attrs.get(NEW_STRUCTURE_ATTR) for t in study.trials]
    if any(v is not None for v in spent):
        print(
            f"Model-guided trials: {spent.count(True)} new architecture(s), {spent.count(False)} "
            "new hyperparameters for a known one (user attr deepens_new_structure)."
        )
    print(
        f"Export it:  optuna-deepens export --storage {args.storage} --study {study.study_name}"
        f" --out best.json\nWatch it:   optuna-dashboard {args.storage}"
    )


# ----------------------------------------------------------------------------------- profile
def profile(args: argparse.Namespace) -> int:
    space = _space(args.space)
    example = torch.zeros(1, 3, args.image_size, args.image_size)
    options = {
        **default_build_options(space, num_classes=args.num_classes, image_size=args.image_size),
        **_json_option(args.build_options),
    }
    check_build_options("--build-options", space, options)
    references = getattr(space, "REFERENCES", {})
    print(f"{args.space}: {getattr(space, 'SPACE_SIZE', '?')} architectures; {args.image_size} px")
    print(
        f"{'reference':<24}{'params':>12}{'GFLOPs':>10}{'latency ms':>12}"
        f"{'memory MiB':>12}{'build s':>9}"
    )
    for name, config in references.items():
        start = time.perf_counter()
        model = space.build(config, **options)
        built = time.perf_counter() - start
        metrics = zero_cost.measure(model, example, name=name)
        print(
            f"{name:<24}{metrics['params']:>12,.0f}{metrics['flops'] / 1e9:>10.3f}"
            f"{metrics['latency_ms']:>12.2f}{metrics['memory_mb']:>12.1f}{built:>9.2f}"
        )
    if args.pretrain:
        table = build_pretraining_set(
            space.suggest,
            functools.partial(space.build, **options),
            example,
            n_architectures=args.pretrain,
            cache=Path(args.cache_dir) / f"{args.space}-{args.image_size}px-{args.pretrain}.jsonl",
            show_progress_bar=not args.quiet,
        )
        print(f"Pretraining set: {len(table.params)} architectures measured.")
    return 0


# ------------------------------------------------------------------------------------ export
def export(args: argparse.Namespace) -> int:
    _check_sqlite_file(args.storage)
    storage = optuna.storages.get_storage(args.storage)  # Opened once for both reads.
    names = optuna.get_all_study_names(storage=storage)
    if args.study not in names:
        raise ValueError(f"no study named {args.study!r} in {args.storage}; it holds {names}.")
    study = optuna.load_study(study_name=args.study, storage=storage)
    space_name = study.user_attrs.get(SPACE_ATTR) or args.space
    if space_name is None:
        raise ValueError(
            "The study does not record its search space (it was not made by "
            "'optuna-deepens search'); pass --space."
        )
    trial = _most_accurate(study) if args.trial is None else _trial(study, args.trial)
    build_options = {**study.user_attrs.get(BUILD_ATTR, {}), **_json_option(args.build_options)}
    record = export_trial(
        trial,
        space_name,
        build_options=build_options,
        out=args.out,
        onnx=args.onnx,
        image_size=args.image_size,
    )
    print(json.dumps(record, indent=2))
    return 0


# ------------------------------------------------------------------------------------ helpers
def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``, else a usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def example_parser(doc: str, *, trials: int, epochs: int, storage: str) -> argparse.ArgumentParser:
    """The options every example script takes, with the same names as ``search``'s."""
    parser = argparse.ArgumentParser(
        description=doc.splitlines()[0],
        epilog=doc.split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--trials", type=_at_least(0), default=trials, help="finished trials to hold"
    )
    parser.add_argument(
        "--epochs", type=_at_least(1), default=epochs, help="epochs of a full training"
    )
    parser.add_argument("--data", default="digits", help=DATA_SPECS)
    parser.add_argument("--storage", default=storage, help="Optuna storage URL")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--limit", type=_at_least(1), help="use only N training images (smoke runs)"
    )
    return parser


def _check_sqlite_file(storage: str) -> None:
    """Reading a SQLite file that is not there would create an empty one: say so instead."""
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not Path(storage[len(prefix) :]).is_file():
        raise ValueError(f"{storage}: no such database file.")


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trials.get(number) is None or trials[number].state != TrialState.COMPLETE:
        done = [n for n, t in trials.items() if t.state == TrialState.COMPLETE]
        raise ValueError(
            f"--trial {number}: the study has no complete trial {number}; complete ones: "
            f"{done[:20]}{' ...' if len(done) > 20 else ''}."
        )
    return trials[number]


def _most_accurate(study: optuna.Study) -> FrozenTrial:
    """The best trial; of a multi-objective study, the most accurate of its front."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ValueError(f"study {study.study_name!r} has no complete trial to export yet.")
    if len(study.directions) == 1:
        return study.best_trial
    return max(study.best_trials, key=lambda t: t.values[0])


def run_study(
    study: optuna.Study, objective: Any, trials: int, *, quiet: bool = False
) -> optuna.Study:
    """Run ``study`` until it holds ``trials`` finished trials (over all its workers).

    With optuna-dashboard installed, the study's page shows the surrogate's predictions
    against the results and the value-latency Pareto set, updated every 5 trials.
    """
    done = len(study.get_trials(deepcopy=False, states=_FINISHED))
    if done:
        print(f"Resuming study {study.study_name!r}: {done} finished trial(s).")
    if trials > done:
        study.optimize(
            objective,
            n_trials=trials - done,
            callbacks=[MaxTrialsCallback(trials, states=_FINISHED), *_figures()],
            show_progress_bar=not quiet,
        )
    return study


def _figures() -> list[DashboardFigures]:
    try:
        import optuna_dashboard  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        return []
    return [DashboardFigures(every=5)]


def open_storage(url: str, heartbeat: int = 30) -> optuna.storages.BaseStorage:
    """RDB with a heartbeat, and a retry of a killed worker's trial (which then resumes)."""
    if url.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(url.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=heartbeat,
        failed_trial_callback=RetryFailedTrialCallback(max_retry=2),
    )


def _space(name: str) -> Any:
    from search_spaces import SPACES

    if name not in SPACES:
        raise ValueError(f"--space {name!r}: choose one of {sorted(SPACES)}.")
    return SPACES[name]


def _json_option(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--build-options must be a JSON object: {error}") from error
    if not isinstance(value, dict):
        raise ValueError("--build-options must be a JSON object, e.g. '{\"channels\": 8}'.")
    return value


def _parser() -> argparse.ArgumentParser:
    from search_spaces import SPACES

    parser = argparse.ArgumentParser(
        prog="optuna-deepens",
        description="Neural architecture search with a deep-ensemble Optuna sampler.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    spaces = sorted(SPACES)
    _add_search(commands, spaces)
    _add_profile(commands, spaces)
    _add_export(commands, spaces)
    return parser


def _add_hardware_options(s: argparse.ArgumentParser) -> None:
    """Latency as a second objective, or as a budget."""
    s.add_argument(
        "--objectives",
        nargs="+",
        default=["accuracy"],
        metavar="NAME",
        help="accuracy, then zero-cost metrics to minimise with it (e.g. accuracy latency_ms): "
        "a multi-objective search of the accuracy/latency front",
    )
    s.add_argument(
        "--max-latency-ms",
        type=float,
        help="latency budget: architectures predicted over it are not proposed, and one "
        "measured over it is skipped untrained",
    )


def _add_search(commands: _Commands, spaces: list[str]) -> None:
    """The ``search`` command: its training, study and sampler options."""
    s = commands.add_parser(
        "search",
        help="search a space by training its networks",
        description="Search a space by training each proposed network; resumes a stopped study. "
        "For many workers, run this same command on each machine with a PostgreSQL --storage "
        "(pip install optuna-deepens[postgresql]); --trials then counts the study's trials "
        "over all workers.",
    )
    s.add_argument("--space", required=True, choices=spaces, help="search space family")
    s.add_argument("--data", default="digits", help=f"{DATA_SPECS} (default: digits)")
    s.add_argument("--storage", default="sqlite:///deepens.db", help="Optuna storage URL")
    s.add_argument("--study", help="study name (default: SPACE-DATA)")
    s.add_argument(
        "--trials", type=_at_least(0), default=30, help="finished trials the study should hold"
    )
    s.add_argument("--epochs", type=_at_least(1), default=10, help="epochs of a full training")
    s.add_argument(
        "--low-epochs",
        type=_at_least(1),
        help="multi-fidelity: epochs of a short run (e.g. 12 of 200)",
    )
    s.add_argument("--batch-size", type=_at_least(1), default=128)
    s.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    s.add_argument("--weight-decay", type=float, default=0.05)
    s.add_argument(
        "--search-hyperparameters",
        action="store_true",
        help="also search --lr and --weight-decay (log scale, within a factor of 10)",
    )
    s.add_argument(
        "--image-size", type=_at_least(1), default=32, help="image size for digits and folders"
    )
    s.add_argument("--limit", type=_at_least(1), help="use only N training images (smoke runs)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument(
        "--compile",
        nargs="?",
        const=True,
        help="torch.compile each model (optionally a mode, "
        "e.g. reduce-overhead); pays only for long trainings",
    )
    s.add_argument(
        "--pretrain",
        type=_at_least(1),
        metavar="N",
        help="pretrain on N architectures' zero-cost metrics (cached)",
    )
    _add_hardware_options(s)
    s.add_argument(
        "--startup-trials", type=_at_least(0), default=10, help="random trials before the model"
    )
    s.add_argument("--seed", type=_at_least(0), default=0)
    s.add_argument(
        "--checkpoint-dir", default=".deepens-checkpoints", help="per-epoch checkpoints"
    )
    s.add_argument(
        "--cache-dir", default=".deepens-cache", help="pretraining tables and surrogates"
    )
    s.add_argument(
        "--heartbeat", type=_at_least(1), default=30, help="seconds between trial heartbeats"
    )
    s.add_argument(
        "--build-options", help="JSON of extra keyword arguments of the space's build()"
    )
    s.add_argument("--no-zero-cost", action="store_true", help="do not record zero-cost metrics")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(run=search)


def _add_profile(commands: _Commands, spaces: list[str]) -> None:
    """The ``profile`` command: reference networks and pretraining set."""
    p = commands.add_parser("profile", help="zero-cost metrics of a space's reference networks")
    p.add_argument("--space", required=True, choices=spaces)
    p.add_argument("--image-size", type=_at_least(1), default=224)
    p.add_argument("--num-classes", type=_at_least(1), default=1000)
    p.add_argument(
        "--pretrain", type=_at_least(1), metavar="N", help="also build the pretraining set of N"
    )
    p.add_argument("--cache-dir", default=".deepens-cache")
    p.add_argument("--build-options", help="JSON of extra keyword arguments of build()")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=profile)


def _add_export(commands: _Commands, spaces: list[str]) -> None:
    """The ``export`` command: which trial, and where to write it."""
    e = commands.add_parser("export", help="the best architecture as JSON (and ONNX)")
    e.add_argument("--storage", required=True)
    e.add_argument("--study", required=True)
    e.add_argument("--trial", type=_at_least(0), help="trial number (default: the best)")
    e.add_argument("--space", choices=spaces, help="for studies not made by 'search'")
    e.add_argument("--out", help="write the architecture JSON here")
    e.add_argument("--onnx", help="write the reparameterised, untrained model as ONNX here")
    e.add_argument("--image-size", type=_at_least(1), default=32, help="ONNX input size")
    e.add_argument("--build-options", help="JSON overriding the recorded build options")
    e.set_defaults(run=export)


if __name__ == "__main__":
    sys.exit(main())
