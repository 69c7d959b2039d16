"""The README's main job runs end to end and resumes (a short run of the real script)."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")
SCRIPT = Path(__file__).parents[1] / "examples" / "quickstart.py"


def _run(storage: str, trials: int) -> str:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials", str(trials), "--storage", storage],
        capture_output=True,
        text=True,
        timeout=600,
        # One thread per process: the test machine may be running other suites at once.
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_runs_and_resumes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'quickstart.db'}"
    first = _run(storage, 3)
    assert "optuna-dashboard" in first
    second = _run(storage, 4)
    assert "Resuming" in second

    import optuna

    study = optuna.load_study(study_name="quickstart", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # Three from the first run, one more from the resumed one.
    assert 0.5 < study.best_value <= 1.0  # Ten digit classes: chance is 0.1.
