"""Each search-space example runs to completion at a smoke-test size, and resumes."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from worker import run_python

pytest.importorskip("sklearn")
EXAMPLES = Path(__file__).parents[1] / "examples"
SMOKE = ["--trials", "2", "--epochs", "2", "--limit", "64", "--device", "cpu"]
EXTRA = {"swiftformer": ["--pretrain", "8"], "mobileone": [], "moat": ["--max-latency-ms", "1e6"]}


def run(example: str, cwd: Path, *args: str) -> str:
    script = str(EXAMPLES / f"{example}.py")
    return run_python(script, *SMOKE, *EXTRA.get(example, []), *args, cwd=cwd)


@pytest.mark.parametrize(
    "example", ["nasbench201", "mobileone", "swiftformer", "attention", "moat"]
)
def test_example_runs_a_real_search(example: str, tmp_path: Path) -> None:
    output = run(example, tmp_path)
    study = optuna.load_study(study_name=example, storage=f"sqlite:///{tmp_path / example}.db")
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 2
    assert all("zc_params" in t.user_attrs for t in finished)  # Measured before training.
    if example == "mobileone":
        assert "written to mobileone-best.json" in output
        change = float(output.rsplit("outputs change ", 1)[1].split(".\n")[0].rstrip("."))
        assert change < 1e-4  # The reparameterised network computes the same function.
    if example == "nasbench201":
        assert {t.user_attrs["deepens_fidelity"] for t in study.trials} <= {"low", "high"}


def test_an_example_resumes_its_study(tmp_path: Path) -> None:
    run("moat", tmp_path)
    output = run("moat", tmp_path, "--trials", "3")
    assert "Resuming study 'moat': 2 finished trial(s)." in output
    study = optuna.load_study(study_name="moat", storage=f"sqlite:///{tmp_path / 'moat'}.db")
    assert len(study.trials) == 3
