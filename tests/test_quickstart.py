"""The README's main job runs end to end and resumes (a short run of the real script)."""

from pathlib import Path
import subprocess
import sys
import time

import pytest
from worker import ONE_THREAD
from worker import run_python

pytest.importorskip("sklearn")
SCRIPT = Path(__file__).parents[1] / "examples" / "quickstart.py"


def _run(storage: str, trials: int, *extra: str) -> str:
    return run_python(str(SCRIPT), "--trials", str(trials), "--storage", storage, *extra)


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


def test_a_killed_run_fails_its_trial_when_resumed(tmp_path: Path) -> None:
    """SIGKILL mid-training: the heartbeat lets the resumed run mark that trial FAIL."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'quickstart.db'}"
    # More trials than it will run: on a fast machine five trials could all finish before one
    # has trained past a heartbeat, and the run would end before it could be killed.
    command = [sys.executable, str(SCRIPT), "--trials", "100", "--storage", storage]
    process = subprocess.Popen(
        [*command, "--heartbeat", "1"], env=ONE_THREAD, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    running: list = []
    seen: dict[int, float] = {}  # Trial number -> when it was first seen training.
    while not running:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="quickstart", storage=storage)
        except KeyError:
            continue  # Not created yet.
        # A trial that has started training (it has params) for more than one heartbeat
        # interval: one killed before its first heartbeat is never failed by Optuna.
        started = [
            t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if t.params
        ]
        if (
            started
            and time.monotonic() - seen.setdefault(started[0].number, time.monotonic()) > 1.5
        ):
            running = started
    process.kill()
    process.wait()
    killed = running[0].number
    n_done = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))

    # One more trial; the new process starts after the 2 s grace period has passed.
    _run(storage, n_done + 1, "--heartbeat", "1")
    trials = optuna.load_study(study_name="quickstart", storage=storage).trials
    assert trials[killed].state == optuna.trial.TrialState.FAIL
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == n_done + 1
