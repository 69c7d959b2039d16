"""Never the same architecture twice under concurrent workers, one of them SIGKILLed mid-trial.

Real components only: worker processes (``worker.py``) on PostgreSQL, SQLite and a journal file,
the issue's conditional space (160 architectures), all workers of a study with one seed (0;
seeds 0-2 on PostgreSQL without search_space). Four workers run 25 trials each; one is killed
during its 5th trial and a replacement runs the 21 trials it still owed, so the study ends with
101 trials: 100 COMPLETE and the killed one, which the heartbeat fails on RDB storages and which
stays RUNNING on the journal (no heartbeat there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
import sqlite3
import time

from optuna.trial import FrozenTrial
from optuna.trial import TrialState
import pytest
from worker import create_study
from worker import load_study
from worker import params_key
from worker import spawn

N_WORKERS = 4
N_TRIALS = 25
HANG_AFTER = 5  # The killed worker's 5th trial hangs: it completed 4.
HEARTBEAT = 1  # Seconds; the grace period is twice that.
TIMEOUT = 300


class Worker:
    """A worker process whose output goes to files, so that no pipe can fill and block it."""

    def __init__(self, name: str, spec: str, n_trials: int, options: list[str], tmp: Path):
        self.name = name
        self.stdout = tmp / f"{name}.out"
        self.stderr = tmp / f"{name}.err"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.process = spawn(spec, n_trials, *options, stdout=out, stderr=err)

    def lines(self) -> list[str]:
        return self.stdout.read_text().splitlines()

    def numbers(self) -> list[int]:
        """The trial numbers this process ran (printed once their parameters were suggested)."""
        return [int(line.split()[1]) for line in self.lines() if line.startswith("trial ")]

    def wait(self) -> int:
        return self.process.wait(timeout=TIMEOUT)

    def wait_until(self, line: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while line not in self.lines():
            assert self.process.poll() is None, f"{self.name} exited: {self.stderr.read_text()}"
            assert time.monotonic() < deadline, f"{self.name} never printed {line!r}"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _journal(tmp_path: Path) -> str:
    return f"journal:{tmp_path / 'journal.log'}"


def _sqlite(tmp_path: Path) -> str:
    """A SQLite file in WAL mode (it persists in the file, so every worker's connection has it).

    In SQLite's default rollback-journal mode, readers block writers: five processes reading
    every trial at each proposal can hold a heartbeat's write back for seconds, past the 2 s
    grace period, and another worker then fails a live trial (Optuna's worker crashes on
    "Cannot tell a FAIL trial"). That is SQLite and Optuna's heartbeat, not the sampler.
    """
    path = tmp_path / "study.db"
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    return f"sqlite:///{path}"


SPECS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "postgresql": lambda request, _: request.getfixturevalue("postgres_database_url"),
    "sqlite": lambda _, tmp_path: _sqlite(tmp_path),
    "journal": lambda _, tmp_path: _journal(tmp_path),
}


def _repeats(trials: list[FrozenTrial], owner: dict[int, str]) -> str:
    """Every repeated architecture, with the number, state and worker of each of its trials."""
    counts = Counter(params_key(t) for t in trials)
    return "\n".join(
        f"{dict(key)}: "
        + ", ".join(
            f"#{t.number} {t.state.name} by {owner.get(t.number, '?')}"
            for t in trials
            if params_key(t) == key
        )
        for key, count in counts.items()
        if count > 1
    )


def _overlapping_pairs(trials: list[FrozenTrial], owner: dict[int, str]) -> int:
    """Pairs of trials of different processes that were RUNNING at the same time."""
    spans = [
        (t.datetime_start, t.datetime_complete, owner[t.number])
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    ]
    return sum(
        1
        for i, (start, end, who) in enumerate(spans)
        for other_start, other_end, other in spans[i + 1 :]
        if who != other and start < other_end and other_start < end
    )


@pytest.mark.parametrize(
    ("kind", "search_space", "seed"),
    [
        pytest.param("postgresql", True, 0, id="postgresql-search_space"),
        # The repro without search_space, over seeds 0-2 as it asks.
        pytest.param("postgresql", False, 0, id="postgresql-seed0"),
        pytest.param("postgresql", False, 1, id="postgresql-seed1"),
        pytest.param("postgresql", False, 2, id="postgresql-seed2"),
        pytest.param("sqlite", False, 0, id="sqlite"),
        pytest.param("journal", False, 0, id="journal"),
    ],
)
def test_concurrent_workers_and_a_killed_one_never_repeat_an_architecture(
    kind: str, search_space: bool, seed: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    spec = SPECS[kind](request, tmp_path)
    heartbeat = kind != "journal"  # Optuna has no heartbeat for the journal storage.
    create_study(spec)
    options = ["--space", "conditional", "--seed", str(seed)]
    if not search_space:
        options.append("--no-search-space")
    if heartbeat:
        options += ["--heartbeat", str(HEARTBEAT)]

    workers = [
        Worker(f"worker{i}", spec, N_TRIALS, options, tmp_path) for i in range(N_WORKERS - 1)
    ]
    hanging = Worker(
        "killed", spec, N_TRIALS, [*options, "--hang-after", str(HANG_AFTER)], tmp_path
    )
    try:
        hanging.wait_until("hanging")
        hanging.kill()  # SIGKILL in the middle of its trial: no cleanup at all.
        assert hanging.process.returncode == -9
        if heartbeat:
            time.sleep(3 * HEARTBEAT)  # Past the grace period: the next trial fails it.
        workers.append(Worker("replacement", spec, N_TRIALS - (HANG_AFTER - 1), options, tmp_path))
        for worker in workers:
            assert worker.wait() == 0, f"{worker.name}: {worker.stderr.read_text()}"
    finally:
        for worker in [*workers, hanging]:
            worker.kill()

    trials = load_study(spec).trials
    owner = {n: w.name for w in [*workers, hanging] for n in w.numbers()}
    # The issue: no two trials, the killed one included, have the same architecture.
    keys = [params_key(t) for t in trials]
    assert len(set(keys)) == len(keys), f"repeated architectures:\n{_repeats(trials, owner)}"
    assert len(trials) == N_WORKERS * N_TRIALS + 1
    assert sorted(owner) == [t.number for t in trials], "each trial ran in exactly one process"
    assert [len(w.numbers()) for w in workers] == [N_TRIALS] * (N_WORKERS - 1) + [
        N_TRIALS - (HANG_AFTER - 1)
    ]
    assert len(hanging.numbers()) == HANG_AFTER

    unfinished = [t for t in trials if t.state != TrialState.COMPLETE]
    assert [t.number for t in unfinished] == hanging.numbers()[-1:], [
        (t.number, t.state.name, owner.get(t.number)) for t in unfinished
    ]
    killed = unfinished[0]
    assert killed.state == (TrialState.FAIL if heartbeat else TrialState.RUNNING)
    # It had suggested a whole architecture, which therefore had to stay taken.
    expected = {"a", "b", "c", "d"} if killed.params["a"] in ("a0", "a1") else {"a", "b", "c"}
    assert set(killed.params) == expected

    # The workers really ran at the same time: trials of different processes overlapped.
    assert _overlapping_pairs(trials, owner) > 0
