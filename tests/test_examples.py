"""Each search-space example runs to completion at a smoke-test size, and resumes."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import optuna
import pytest

pytest.importorskip("sklearn")
EXAMPLES = Path(__file__).parents[1] / "examples"
SMOKE = ["--trials", "2", "--epochs", "2", "--limit", "64", "--device", "cpu"]
EXTRA = {"swiftformer": ["--pretrain", "8"], "mobileone": [], "moat": ["--max-latency-ms", "1e6"]}


def run(example: str, cwd: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{example}.py"), *SMOKE, *EXTRA.get(example, []), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


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
