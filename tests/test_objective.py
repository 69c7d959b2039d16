"""The training objective in studies: results, fidelity, failures that leave the study running,
and a killed trial that resumes from its checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState
import pytest
import torch
from torch import nn
from train_worker import TinySpace

from optuna_deepens import DeepEnsembleSampler
from optuna_deepens import LowFidelityPruner
from optuna_deepens import MultiFidelity
from optuna_deepens import data
from optuna_deepens.coordination import FAIL_REASON_ATTR
from optuna_deepens.coordination import RESUMED_ATTR
from optuna_deepens.objective import TrainingObjective
from optuna_deepens.training import TrainingConfig

pytest.importorskip("sklearn")
optuna.logging.set_verbosity(optuna.logging.ERROR)
WORKER = str(Path(__file__).with_name("train_worker.py"))
CONFIG = TrainingConfig(epochs=2, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def digits() -> data.ImageData:
    return data.digits(image_size=16)


class FaultySpace:
    """``kind`` picks what goes wrong: nothing, the build, memory, or the loss."""

    @staticmethod
    def suggest(trial: optuna.Trial) -> str:
        return trial.suggest_categorical("kind", ["ok", "broken", "oom", "nan"])

    @staticmethod
    def build(kind: str, *, num_classes: int) -> nn.Module:
        if kind == "broken":
            raise ValueError("stride 2 on a 1x1 feature map")
        return Faulty(kind, num_classes)


class Faulty(nn.Module):
    def __init__(self, kind: str, num_classes: int) -> None:
        super().__init__()
        self.kind = kind
        self.linear = nn.Linear(3 * 16 * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x.flatten(1))
        if self.training and self.kind == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if self.training and self.kind == "nan":
            return logits * float("nan")
        return logits


def test_trials_report_every_epoch_and_record_zero_cost_metrics(digits: data.ImageData) -> None:
    objective = TrainingObjective(TinySpace, digits, config=CONFIG)
    sampler = DeepEnsembleSampler(seed=0, search_space=objective.suggest, n_startup_trials=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=3)
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        assert sorted(trial.intermediate_values) == [1, 2]
        assert trial.value == trial.intermediate_values[2]
        assert 0.0 <= trial.value <= 1.0  # Two epochs of a tiny model: any accuracy.
        assert trial.user_attrs["zc_params"] > 0 and trial.user_attrs["zc_latency_ms"] > 0
    assert study.trials[2].user_attrs["deepens_source"] == "model"
    # The same architecture at the same trial number trains to the same accuracy: the model's
    # initialisation is seeded like the training, whatever ran before in the process.
    torch.randn(1000)
    again = optuna.create_study(direction="maximize")
    for trial in study.trials:
        again.enqueue_trial(trial.params)
    again.optimize(objective, n_trials=3)
    assert [t.value for t in again.trials] == [t.value for t in study.trials]


def test_failures_end_the_trial_with_a_reason_and_the_study_goes_on(
    digits: data.ImageData,
) -> None:
    objective = TrainingObjective(FaultySpace, digits, config=CONFIG)
    study = optuna.create_study(direction="maximize")
    for kind in ("broken", "oom", "nan", "ok"):
        study.enqueue_trial({"kind": kind})
    study.optimize(objective, n_trials=4)  # No catch=: nothing may escape the objective.
    states = {t.params["kind"]: t.state for t in study.trials}
    reasons = {t.params["kind"]: t.user_attrs.get(FAIL_REASON_ATTR, "") for t in study.trials}
    assert states == {
        "broken": TrialState.FAIL,
        "oom": TrialState.FAIL,
        "nan": TrialState.FAIL,
        "ok": TrialState.COMPLETE,
    }
    assert reasons["broken"].startswith("the model does not build: ValueError: stride 2")
    assert reasons["oom"].startswith("CUDA out of memory")
    assert reasons["nan"].startswith("diverged: the training loss is nan in epoch 1")
    assert reasons["ok"] == ""


def test_accuracy_and_latency_as_two_objectives_and_failures_still_fail(
    digits: data.ImageData,
) -> None:
    objective = TrainingObjective(
        FaultySpace, digits, config=CONFIG, objectives=("accuracy", "latency_ms")
    )
    assert objective.directions == ["maximize", "minimize"]
    assert objective.objective_metrics == {1: "latency_ms"}
    study = optuna.create_study(directions=objective.directions)
    for kind in ("ok", "nan"):
        study.enqueue_trial({"kind": kind})
    study.optimize(objective, n_trials=2)
    ok, nan = study.trials
    assert ok.state == TrialState.COMPLETE and ok.values[1] == ok.user_attrs["zc_latency_ms"]
    assert nan.state == TrialState.FAIL
    assert nan.user_attrs[FAIL_REASON_ATTR].startswith("diverged")
    with pytest.raises(ValueError, match="first objective is 'accuracy'"):
        TrainingObjective(FaultySpace, digits, objectives=("latency_ms",))
    with pytest.raises(ValueError, match="zero_cost_metrics=True"):
        TrainingObjective(
            FaultySpace, digits, objectives=("accuracy", "params"), zero_cost_metrics=False
        )


def test_short_runs_end_pruned_and_full_ones_complete(digits: data.ImageData) -> None:
    objective = TrainingObjective(TinySpace, digits, config=CONFIG, zero_cost_metrics=False)
    sampler = DeepEnsembleSampler(
        seed=0,
        search_space=objective.suggest,
        n_startup_trials=2,
        multi_fidelity=MultiFidelity(
            low_step=1, full_step=2, low_per_iteration=1, high_per_round=1, iterations_per_round=1
        ),
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=LowFidelityPruner())
    study.optimize(objective, n_trials=4)
    for trial in study.trials:
        if trial.user_attrs["deepens_fidelity"] == "low":
            assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
        else:
            assert trial.state == TrialState.COMPLETE and list(trial.intermediate_values) == [1, 2]
    assert {t.state for t in study.trials} == {TrialState.PRUNED, TrialState.COMPLETE}


def test_a_killed_trial_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'train.db'}"
    checkpoints = tmp_path / "checkpoints"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, WORKER, storage, str(checkpoints)]
    worker = subprocess.Popen(
        [*command, "1", "--hang-at-epoch", "3"], stdout=subprocess.PIPE, text=True, env=env
    )
    assert worker.stdout is not None
    deadline = time.monotonic() + 300
    while worker.stdout.readline().strip() != "hanging":
        assert time.monotonic() < deadline and worker.poll() is None
    worker.kill()  # SIGKILL after epoch 2 was checkpointed.
    worker.wait()
    assert len(list(checkpoints.glob("*.pt"))) == 1
    time.sleep(2.5)  # Past the heartbeat's grace period.

    resumed = subprocess.run([*command, "1"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "trained 2 epochs" in resumed.stdout  # Epochs 3 and 4 only.

    killed, retry = optuna.load_study(study_name="train", storage=storage).trials
    assert killed.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params  # The same architecture, not a new one.
    assert retry.user_attrs[RESUMED_ATTR] == 2
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]  # Earlier epochs re-reported.
    assert not list(checkpoints.glob("*.pt"))  # Cleaned up once the trial ended.


def _learning_rate_and_weight_decay(trial: optuna.Trial) -> dict[str, float]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-1, log=True),
    }


def test_architecture_and_training_hyperparameters_in_one_study(
    digits: data.ImageData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each trial trains with the learning rate and weight decay it suggested; the sampler
    models them beside the architecture and says which guided trials tried a new one."""
    import optuna_deepens.objective as objective_module

    used: dict[int, tuple[float, float]] = {}
    real = objective_module.TrainingRun

    def spy(model, data_, config, *, epochs, seed):
        used[seed - config.seed] = (config.learning_rate, config.weight_decay)
        return real(model, data_, config, epochs=epochs, seed=seed)

    monkeypatch.setattr(objective_module, "TrainingRun", spy)
    objective = TrainingObjective(
        TinySpace,
        digits,
        config=TrainingConfig(epochs=1, batch_size=64, device="cpu"),
        zero_cost_metrics=False,
        hyperparameters=_learning_rate_and_weight_decay,
    )
    sampler = DeepEnsembleSampler(seed=0, search_space=objective.suggest, n_startup_trials=3)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=6)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for trial in study.trials:
        assert used[trial.number] == (
            trial.params["learning_rate"],
            trial.params["weight_decay"],
        )
    guided = [t for t in study.trials if t.user_attrs.get("deepens_source") == "model"]
    assert len(guided) == 3
    assert all(isinstance(t.user_attrs["deepens_new_structure"], bool) for t in guided)


def test_hyperparameters_that_are_no_training_option_are_refused_at_construction(
    digits: data.ImageData,
) -> None:
    with pytest.raises(ValueError, match=r"\['lr'\] are not TrainingConfig fields"):
        TrainingObjective(
            TinySpace,
            digits,
            config=CONFIG,
            hyperparameters=lambda t: {"lr": t.suggest_float("lr", 1e-4, 1e-1, log=True)},
        )


def test_an_invalid_hyperparameter_value_fails_the_trial_not_the_study(
    digits: data.ImageData,
) -> None:
    objective = TrainingObjective(
        TinySpace,
        digits,
        config=CONFIG,
        zero_cost_metrics=False,
        hyperparameters=lambda t: {"epochs": t.suggest_int("epochs", 0, 0)},
    )
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
    assert "hyperparameters" in study.trials[0].user_attrs[FAIL_REASON_ATTR]
