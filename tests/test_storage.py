"""A killed worker's study resumed in a new process (concurrent workers: test_workers.py)."""

from __future__ import annotations

from pathlib import Path
import time

import optuna
from optuna.trial import TrialState
import pytest
from worker import create_study
from worker import load_study as _load
from worker import params_key
from worker import spawn as _start


def _storage_spec(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return f"journal:{tmp_path / 'journal.log'}"


def _keys(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [params_key(t) for t in trials]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_killed_study_resumes_without_replaying_or_repeating(kind: str, tmp_path: Path) -> None:
    spec = _storage_spec(kind, tmp_path)
    create_study(spec)
    worker = _start(spec, 100, "--hang-at", "6")
    assert worker.stdout is not None
    deadline = time.monotonic() + 300
    while worker.stdout.readline().strip() != "hanging":
        assert time.monotonic() < deadline and worker.poll() is None
    worker.kill()  # SIGKILL: no cleanup, trial 6 stays RUNNING for ever (no heartbeat).
    worker.wait()

    before = _load(spec).trials
    assert [t.state for t in before].count(TrialState.COMPLETE) == 6
    assert before[6].state == TrialState.RUNNING and before[6].params

    resumed = _start(spec, 12)
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr

    after = _load(spec).trials
    assert len(after) == 19
    new = after[7:]
    assert all(t.state == TrialState.COMPLETE for t in new)
    # Nothing evaluated, nor the killed worker's architecture, is proposed again; in particular
    # the startup draws of seed 0 are not replayed by the new process.
    assert not set(_keys(new)) & set(_keys(before))
    assert len(set(_keys(new))) == len(new)
    assert any(t.user_attrs.get("deepens_source") == "model" for t in new)
