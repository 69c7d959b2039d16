"""An Optuna objective that searches a space by training its networks.

``TrainingObjective(space, data)`` is what a user would otherwise write by hand around every
search space: suggest the architecture, build it, record its zero-cost metrics, train it for the
epochs the sampler's fidelity decision allows while reporting the validation accuracy after
every epoch, honour the pruner, and return the accuracy. It also handles what goes wrong in a
long search:

* a model that fails to build, CUDA running out of memory, or a loss that turns NaN ends the
  trial FAIL with the reason in the user attr ``deepens_fail_reason`` (the objective returns NaN,
  which Optuna records as a failure without stopping the study), and device memory is released;
* with ``checkpoint_dir``, every epoch is checkpointed. A trial killed mid-training (SIGKILL,
  a lost machine) is marked FAIL by Optuna's heartbeat, and ``RetryFailedTrialCallback``
  enqueues the same architecture again; that retry resumes from the last checkpoint, re-reports
  the accuracies already measured, and trains only the remaining epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import functools
import gc
import hashlib
import inspect
import json
import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
from optuna.storages import RetryFailedTrialCallback
import torch

from optuna_deepens import coordination
from optuna_deepens import zero_cost
from optuna_deepens._validation import check_float
from optuna_deepens._validation import check_type
from optuna_deepens.coordination import FAIL_REASON_ATTR
from optuna_deepens.coordination import RESUMED_ATTR
from optuna_deepens.data import ImageData
from optuna_deepens.dry_run import DryRunTrial
from optuna_deepens.multi_fidelity import fidelity
from optuna_deepens.multi_fidelity import is_low_fidelity
from optuna_deepens.pretraining_set import build_pretraining_set
from optuna_deepens.surrogate import PretrainedSurrogate
from optuna_deepens.surrogate import pretrain
from optuna_deepens.training import NonFiniteLossError
from optuna_deepens.training import TrainingConfig
from optuna_deepens.training import TrainingRun


class TrainingObjective:
    """Train and validate each architecture of ``space``; returns the validation accuracy.

    Args:
        space: A search-space module (``search_spaces.mobileone`` ...) or any object with
            ``suggest(trial) -> config`` and ``build(config, **options) -> nn.Module``.
        data: The images (:mod:`optuna_deepens.data`).
        config: The training recipe; ``config.epochs`` is the full training length.
        build_options: Extra keyword arguments of ``space.build`` (``num_classes`` is the data's).
        zero_cost_metrics: Record ``zc_*`` metrics of the untrained model (on the CPU, one
            thread, batch 1), which the sampler learns as further heads.
        checkpoint_dir: Checkpoint every epoch there, so that a retried trial resumes.
        max_latency_ms: Skip (prune, untrained) an architecture whose measured latency is
            above this budget: a hardware constraint that costs one measurement, not a training.
        hyperparameters: Training hyperparameters searched beside the architecture: a function
            making ``suggest_*`` calls and returning :class:`TrainingConfig` fields to override,
            e.g. ``lambda t: {"learning_rate": t.suggest_float("lr", 1e-4, 1e-2, log=True)}``.
            A key that is no such field is an error at construction (a dry run); a value the
            recipe refuses (say, 0 epochs) fails that trial with the reason, not the study.
            The sampler sees architecture and hyperparameters as one mixed space; its guided
            trials record in ``deepens_new_structure`` whether they tried a new architecture or
            new numbers for a known one.
        objectives: What the objective returns: ``("accuracy",)``, or accuracy and zero-cost
            metrics for a multi-objective study, e.g. ``("accuracy", "latency_ms")`` with
            ``directions=["maximize", "minimize"]`` and the sampler's
            ``objective_metrics={1: "latency_ms"}`` (:attr:`objective_metrics`). Optuna cannot
            prune a multi-objective trial, so such trials train fully.
    """

    def __init__(
        self,
        space: ModuleType | Any,
        data: ImageData,
        *,
        config: TrainingConfig | None = None,
        build_options: Mapping[str, Any] | None = None,
        zero_cost_metrics: bool = True,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        max_latency_ms: float | None = None,
        objectives: Sequence[str] = ("accuracy",),
        hyperparameters: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> None:
        for name in ("suggest", "build"):
            if not callable(getattr(space, name, None)):
                raise TypeError(
                    f"TrainingObjective(space=...): {space!r} has no {name}() function; pass a "
                    "module of search_spaces or an object with suggest(trial) and build(config)."
                )
        check_type("TrainingObjective", "config", config, TrainingConfig)
        if max_latency_ms is not None:
            check_float("TrainingObjective", "max_latency_ms", max_latency_ms, positive=True)
        self.space = space
        self.data = data
        self.config = config or TrainingConfig()
        defaults = default_build_options(
            space, num_classes=data.num_classes, image_size=data.image_size
        )
        self.build_options = {**defaults, **(build_options or {})}
        check_build_options("TrainingObjective(build_options=...)", space, self.build_options)
        self.zero_cost_metrics = zero_cost_metrics
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if max_latency_ms is not None and not zero_cost_metrics:
            raise ValueError(
                "TrainingObjective(max_latency_ms=...) needs zero_cost_metrics=True: the budget "
                "is checked against the measured latency."
            )
        self.max_latency_ms = max_latency_ms
        self.objectives = _check_objectives(tuple(objectives), zero_cost_metrics)
        self.hyperparameters = hyperparameters
        if hyperparameters is not None:
            self._overrides(DryRunTrial({}, np.random.default_rng(0)))  # Names fail here.

    @property
    def objective_metrics(self) -> dict[int, str]:
        """The sampler's ``objective_metrics`` for these objectives."""
        return {i: name for i, name in enumerate(self.objectives) if i > 0}

    @property
    def directions(self) -> list[str]:
        """The study's directions for these objectives: accuracy up, every metric down."""
        return ["maximize"] + ["minimize"] * (len(self.objectives) - 1)

    def suggest(self, trial: Any) -> Any:
        """The architecture (and the searched hyperparameters, whose values it does not return):
        every ``suggest_*`` call of a trial, so usable as the sampler's ``search_space=``."""
        architecture = self.space.suggest(trial)
        if self.hyperparameters is not None:
            self.hyperparameters(trial)
        return architecture

    def _config_for(self, trial: Any) -> TrainingConfig:
        """The recipe of this trial: ``config`` with the searched hyperparameters."""
        if self.hyperparameters is None:
            return self.config
        return dataclasses.replace(self.config, **self._overrides(trial))

    def _overrides(self, trial: Any) -> dict[str, Any]:
        assert self.hyperparameters is not None
        overrides = dict(self.hyperparameters(trial))
        fields = {f.name for f in dataclasses.fields(TrainingConfig)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"TrainingObjective(hyperparameters=...): {unknown} are not TrainingConfig "
                f"fields; return a dict with keys among {sorted(fields)}."
            )
        return overrides

    def build(self, architecture: Any) -> torch.nn.Module:
        return self.space.build(architecture, **self.build_options)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        architecture = self.space.suggest(trial)
        stage = "has invalid hyperparameters"
        metrics: dict[str, float] = {}
        try:
            config = self._config_for(trial)  # Invalid values fail the trial, not the study.
            epochs = fidelity(trial, default=config.epochs)
            stage = "does not build"
            # Seeded like the training, so a trial is the same wherever and whenever it runs.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + trial.number)
                model = self.build(architecture)
            stage = "does not run"
            if self.zero_cost_metrics:
                metrics = zero_cost.measure_and_record(trial, model, self.data.example_input())
                if self.max_latency_ms is not None and metrics["latency_ms"] > self.max_latency_ms:
                    raise optuna.TrialPruned(
                        f"latency {metrics['latency_ms']:.2f} ms is over the budget of "
                        f"{self.max_latency_ms} ms"
                    )
            stage = "failed in training"
            run = TrainingRun(
                model, self.data, config, epochs=epochs, seed=config.seed + trial.number
            )
            accuracy = self._train(trial, run)
        except optuna.TrialPruned:
            raise
        except torch.cuda.OutOfMemoryError as error:
            accuracy = _failed(trial, f"CUDA out of memory: {error}".splitlines()[0])
        except NonFiniteLossError as error:
            accuracy = _failed(trial, f"diverged: {error}")
        except Exception as error:  # One bad architecture must not stop the study.
            accuracy = _failed(trial, f"the model {stage}: {type(error).__name__}: {error}")
        finally:
            _release_memory()
        if len(self.objectives) == 1:
            return accuracy
        # NaN accuracy (a failure) makes Optuna fail the trial, whatever the metrics.
        return (accuracy, *(metrics.get(name, math.nan) for name in self.objectives[1:]))

    def _train(self, trial: optuna.Trial, run: TrainingRun) -> float:
        checkpoint = self._checkpoint_path(trial)
        if checkpoint is not None and checkpoint.is_file():
            state = torch.load(checkpoint, map_location=run.device, weights_only=True)
            if state.get("params") == _params_text(trial) and int(state["epochs"]) == run.epochs:
                run.load_state(state)
                trial.set_user_attr(RESUMED_ATTR, run.epoch)
                for epoch, accuracy in enumerate(run.history, start=1):
                    if len(self.objectives) == 1:
                        trial.report(accuracy, epoch)
        accuracy = run.history[-1] if run.history else 0.0
        single = len(self.objectives) == 1  # Optuna reports and prunes one objective only.
        while run.epoch < run.epochs:
            accuracy = run.run_epoch()
            if single:
                trial.report(accuracy, run.epoch)
            if checkpoint is not None:
                _save_atomic({**run.state(), "params": _params_text(trial)}, checkpoint)
            if single and trial.should_prune():
                self._discard(checkpoint)
                raise optuna.TrialPruned(f"pruned after epoch {run.epoch}")
        self._discard(checkpoint)
        if is_low_fidelity(trial):
            # A short run must not end COMPLETE: its value would count as a full result.
            raise optuna.TrialPruned(f"short run of {run.epochs} epochs done")
        return accuracy

    def _checkpoint_path(self, trial: optuna.Trial) -> Path | None:
        """One file per architecture run: the retry of a trial finds its original's file."""
        if self.checkpoint_dir is None:
            return None
        # Earliest first.
        history = RetryFailedTrialCallback.retry_history(coordination.frozen(trial))
        first = history[0] if history else trial.number
        digest = hashlib.sha1(_params_text(trial).encode()).hexdigest()[:12]
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return self.checkpoint_dir / f"{trial.study.study_name}-trial{first}-{digest}.pt"

    @staticmethod
    def _discard(checkpoint: Path | None) -> None:
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)


def cached_surrogate(
    objective: TrainingObjective,
    *,
    n_architectures: int,
    name: str,
    cache_dir: str | os.PathLike[str] = ".deepens-cache",
    show_progress_bar: bool = True,
) -> PretrainedSurrogate:
    """A surrogate pretrained on the zero-cost metrics of ``objective``'s space, built once.

    The table (``NAME-SIZEpx-N.jsonl``, resumable) and the surrogate (``...-surrogate.pt``) are
    kept in ``cache_dir``; a later call, or any study of the same space and input, reuses them.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{objective.data.image_size}px-{n_architectures}"
    path = cache / f"{stem}-surrogate.pt"
    if path.is_file():
        return PretrainedSurrogate.load(path)
    table = build_pretraining_set(
        objective.suggest,
        functools.partial(objective.space.build, **objective.build_options),
        objective.data.example_input(),
        n_architectures=n_architectures,
        cache=cache / f"{stem}.jsonl",
        show_progress_bar=show_progress_bar,
    )
    surrogate = pretrain(table)
    surrogate.save(path)
    return surrogate


def default_build_options(space: Any, *, num_classes: int, image_size: int) -> dict[str, Any]:
    """``build`` options for a class count and image size, with what each family needs to
    train without a teacher."""
    options: dict[str, Any] = {"num_classes": num_classes}
    name = getattr(space, "__name__", "").rsplit(".", 1)[-1]
    if name in ("swiftformer", "attention"):
        options["distillation"] = False  # No teacher here: the second head would be dead weight.
    if name == "moat":
        options["image_size"] = image_size  # Sizes its relative-position tables.
    return options


def check_build_options(where: str, space: Any, options: Mapping[str, Any]) -> None:
    """Every option is a keyword of the space's ``build``: a typo fails here, not every trial."""
    parameters = list(inspect.signature(space.build).parameters.values())[1:]  # After config.
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    known = sorted(p.name for p in parameters if p.kind != inspect.Parameter.VAR_POSITIONAL)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"{where}: {unknown} are not options of "
            f"{getattr(space, '__name__', 'the space')}.build(), which takes {known}."
        )


def _check_objectives(objectives: tuple[str, ...], zero_cost_metrics: bool) -> tuple[str, ...]:
    metrics = zero_cost.METRIC_NAMES
    if not objectives or objectives[0] != "accuracy" or not set(objectives[1:]) <= set(metrics):
        raise ValueError(
            f"TrainingObjective(objectives={objectives!r}): the first objective is "
            f"'accuracy', the others zero-cost metrics among {metrics}."
        )
    if len(objectives) > 1 and not zero_cost_metrics:
        raise ValueError(
            "TrainingObjective(objectives=...) with metrics needs zero_cost_metrics=True: they "
            "are the measured zero-cost metrics."
        )
    return objectives


def _failed(trial: optuna.Trial, reason: str) -> float:
    """End the trial FAIL with its reason, and let the study go on."""
    trial.set_user_attr(FAIL_REASON_ATTR, reason[:1000])
    optuna.logging.get_logger(__name__).warning(f"Trial {trial.number} failed: {reason}")
    return float("nan")


def _params_text(trial: optuna.Trial) -> str:
    return json.dumps(trial.params, sort_keys=True, default=str)


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write then rename, so a kill mid-write never leaves a torn checkpoint."""
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
