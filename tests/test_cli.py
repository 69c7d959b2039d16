"""The ``optuna-deepens`` command: search each space, resume, export, profile, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from worker import run_python

from optuna_deepens.cli import main
from optuna_deepens.export import load_architecture

pytest.importorskip("sklearn")
SMOKE = ["--data", "digits", "--epochs", "1", "--limit", "48", "--device", "cpu", "--quiet"]


def search(tmp_path: Path, space: str, trials: int, *extra: str) -> str:
    """``optuna-deepens search`` in a fresh process; its output."""
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    command = ["-m", "optuna_deepens.cli", "search", "--space", space, "--storage", storage]
    return run_python(*command, "--trials", str(trials), *SMOKE, *extra, cwd=tmp_path)


def _assert_trained(output: str, tmp_path: Path, space: str, n_trials: int) -> None:
    """The search printed its best and holds ``n_trials`` COMPLETE trials, measured first."""
    assert "Best validation accuracy" in output
    study = optuna.load_study(
        study_name=f"{space}-digits", storage=f"sqlite:///{tmp_path / 'nas.db'}"
    )
    assert len(study.trials) == n_trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all(t.user_attrs["zc_params"] > 0 for t in study.trials)


# nasbench201 and mobileone are searched end to end by the resume and ONNX tests below, which
# make the same checks: training them once more each cost half a minute of the suite.
@pytest.mark.parametrize("space", ["swiftformer", "attention", "moat"])
def test_search_trains_every_space(space: str, tmp_path: Path) -> None:
    _assert_trained(search(tmp_path, space, 1), tmp_path, space, 1)


def test_search_resumes_and_exports_the_best(tmp_path: Path) -> None:
    options = ["--build-options", '{"channels": 8, "cells_per_stage": 1}', "--startup-trials", "2"]
    _assert_trained(search(tmp_path, "nasbench201", 2, *options), tmp_path, "nasbench201", 2)
    result = search(tmp_path, "nasbench201", 3, *options)
    assert "2 finished trial(s)" in result
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.load_study(study_name="nasbench201-digits", storage=storage)
    assert len(study.trials) == 3 and study.trials[2].user_attrs["deepens_source"] == "model"

    out = tmp_path / "best.json"
    assert (
        main(["export", "--storage", storage, "--study", "nasbench201-digits", "--out", str(out)])
        == 0
    )
    record = json.loads(out.read_text())
    assert record["params"] == study.best_params and record["value"] == study.best_value
    assert record["build_options"] == {"num_classes": 10, "channels": 8, "cells_per_stage": 1}
    _, model = load_architecture(out)
    assert sum(p.numel() for p in model.parameters()) == record["zero_cost"]["params"]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_export_writes_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    _assert_trained(search(tmp_path, "mobileone", 1), tmp_path, "mobileone", 1)
    onnx_file = tmp_path / "best.onnx"
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    main(["export", "--storage", storage, "--study", "mobileone-digits", "--onnx", str(onnx_file)])
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    assert graph.input[0].type.tensor_type.shape.dim[2].dim_value == 32
    # Reparameterised: one convolution per MobileOne block, no parallel branches left.
    assert not any(node.op_type == "BatchNormalization" for node in graph.node)


def test_profile_lists_the_references(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["profile", "--space", "nasbench201", "--image-size", "32", "--num-classes", "10"])
        == 0
    )
    output = capsys.readouterr().out
    assert "best_cifar10" in output and "15625 architectures" in output


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["search", "--space", "nasbench201", "--data", "imagenet"],
            "expected digits, cifar10:PATH",
        ),
        (["search", "--space", "nasbench201", "--build-options", "[1]"], "must be a JSON object"),
        (["search", "--space", "nasbench201", "--epochs", "0"], "--epochs: 0 is below 1"),
        (["search", "--space", "nasbench201", "--trials", "-5"], "--trials: -5 is below 0"),
        (["profile", "--space", "nasbench201", "--pretrain", "-1"], "--pretrain: -1 is below 1"),
        (
            ["profile", "--space", "nasbench201", "--build-options", '{"chanels": 8}'],
            "['chanels'] are not options of search_spaces.nasbench201.build()",
        ),
        (
            ["search", "--space", "nasbench201", "--build-options", '{"chanels": 8}'],
            "['chanels'] are not options",
        ),
    ],
)
def test_bad_arguments_are_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        storage = ["--storage", f"sqlite:///{tmp_path / 'x.db'}"] if argv[0] == "search" else []
        main([*argv, *storage])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_storage_that_cannot_open_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["search", "--space", "nasbench201", "--trials", "0", *SMOKE]
    for storage in ("bogus://x", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--storage", storage])
        assert exit_info.value.code == 2
        assert "optuna-deepens search: error:" in capsys.readouterr().err


def _nasbench201_study(storage: str) -> optuna.Study:
    from search_spaces import nasbench201

    study = optuna.create_study(study_name="made", storage=storage, direction="maximize")
    study.optimize(lambda t: (nasbench201.suggest(t), 0.5)[1], n_trials=2)
    return study


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--study", "absent"], "no study named 'absent'"),
        (["--study", "made", "--trial", "7"], "no complete trial 7; complete ones: [0, 1]"),
    ],
)
def test_export_errors_name_what_is_missing(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    _nasbench201_study(storage)
    with pytest.raises(SystemExit):
        main(["export", "--storage", storage, "--space", "nasbench201", *extra])
    assert message in capsys.readouterr().err


def test_export_from_a_missing_database_creates_no_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--storage", f"sqlite:///{tmp_path / 'typo.db'}", "--study", "made"])
    assert "no such database file" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "cannot read an exported architecture"),
        ("[1, 2]", "is not an architecture exported by optuna-deepens"),
        (None, "unknown search space 'nope'"),
    ],
)
def test_a_bad_architecture_file_names_itself(
    content: str | None, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "arch.json"
    record = {"format": "optuna-deepens/architecture", "version": 1, "space": "nope"}
    path.write_text(json.dumps(record) if content is None else content)
    with pytest.raises(ValueError, match=message) as error:
        load_architecture(path)
    assert str(path) in str(error.value)


def test_an_edited_value_outside_the_space_is_refused(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    out = tmp_path / "arch.json"
    argv = ["export", "--storage", storage, "--study", "made", "--space", "nasbench201"]
    _nasbench201_study(storage)
    assert main([*argv, "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    record["params"][next(iter(record["params"]))] = "conv_9x9"
    with pytest.raises(ValueError, match="not in"):
        load_architecture(record)


def test_search_accuracy_against_latency_with_a_budget(tmp_path: Path) -> None:
    options = ["--build-options", '{"channels": 8, "cells_per_stage": 1}', "--startup-trials", "2"]
    budget = ["--objectives", "accuracy", "latency_ms", "--max-latency-ms", "1000"]
    result = search(tmp_path, "nasbench201", 3, *options, *budget)
    assert "on the front of accuracy against the metrics" in result
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.load_study(study_name="nasbench201-digits", storage=storage)
    assert len(study.directions) == 2
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    for trial in complete:
        assert trial.values[1] == trial.user_attrs["zc_latency_ms"] <= 1000
    assert study.trials[-1].user_attrs["deepens_acquisition_function"] == "ei"
    out = tmp_path / "front.json"
    argv = ["export", "--storage", storage, "--study", "nasbench201-digits", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert record["value"] == max(t.values[0] for t in study.best_trials)
    assert len(record["values"]) == 2


def test_search_architecture_and_training_hyperparameters(tmp_path: Path) -> None:
    """A thesis space plus learning rate and weight decay: the study models both, and says how
    its guided trials were spent."""
    options = ["--build-options", '{"channels": 8, "cells_per_stage": 1}', "--startup-trials", "2"]
    extra = ["--search-hyperparameters", "--lr", "0.002", "--weight-decay", "0.05"]
    result = search(tmp_path, "nasbench201", 4, *options, *extra)
    assert "Model-guided trials: " in result
    storage = f"sqlite:///{tmp_path / 'nas.db'}"
    study = optuna.load_study(study_name="nasbench201-digits", storage=storage)
    for trial in study.trials:
        assert 2e-4 <= trial.params["learning_rate"] <= 2e-2
        assert 5e-3 <= trial.params["weight_decay"] <= 0.5
    guided = [t for t in study.trials if t.user_attrs["deepens_source"] == "model"]
    assert len(guided) == 2 and all("deepens_new_structure" in t.user_attrs for t in guided)
    # The export rebuilds the architecture and keeps the hyperparameters that trained it apart.
    out = tmp_path / "best.json"
    argv = ["export", "--storage", storage, "--study", study.study_name, "--out", str(out)]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert set(record["hyperparameters"]) == {"learning_rate", "weight_decay"}
    assert {**record["params"], **record["hyperparameters"]} == study.best_params
    load_architecture(out)
