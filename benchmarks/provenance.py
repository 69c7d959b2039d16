"""Which code a benchmark result came from: the commit, and whether the package was edited."""

from __future__ import annotations

from pathlib import Path
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


def git_dirty(*paths: str) -> bool | None:
    """Whether ``paths`` (default: every tracked file) have uncommitted changes."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    return None if status is None else bool(status)
