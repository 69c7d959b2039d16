"""Where a benchmark result came from: the commit, whether the package was edited, the CPU."""

from __future__ import annotations

from pathlib import Path
import platform
import subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return completed.stdout.strip()


def git_commit() -> str | None:
    """The short hash of HEAD, or ``None`` outside a git checkout."""
    return _git("rev-parse", "--short", "HEAD") or None


def cpu_model() -> str:
    """The processor's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_dirty(*paths: str) -> bool | None:
    """Whether ``paths`` (default: every tracked file) have uncommitted changes."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    return None if status is None else bool(status)
