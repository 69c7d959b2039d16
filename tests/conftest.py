from collections.abc import Iterator
import glob
import itertools
import os
from pathlib import Path
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
import torch

# Helper modules of the tests (synthetic objectives, worker scripts) import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Small models run faster on one thread, and CI machines are small and shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- PostgreSQL
REQUIRE_POSTGRES = "DEEPENS_REQUIRE_POSTGRES"
_SERVER_USER = "postgres"  # PostgreSQL refuses to run as root: as root, run it as this user.


def _postgres_unavailable(reason: str) -> None:
    """Skip, unless CI asked for PostgreSQL (``DEEPENS_REQUIRE_POSTGRES=1``): then fail."""
    if os.environ.get(REQUIRE_POSTGRES) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES}=1 but no PostgreSQL server: {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL server: {reason} (set {REQUIRE_POSTGRES}=1 to fail instead)")


def _find_initdb() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin/initdb`` (Debian keeps it off PATH), else PATH's."""

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", Path(path).parts[-3]))

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1])
    on_path = shutil.which("initdb")
    return Path(on_path) if on_path else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scratch() -> str | None:
    """Memory (``/dev/shm``) when it has room, else the temporary directory.

    A throwaway cluster needs no disk, and on disk deleting it at the end of a session can wait
    seconds for the kernel's writeback of pages it has just written.
    """
    try:
        if shutil.disk_usage("/dev/shm").free >= 2**30:
            return "/dev/shm"
    except OSError:
        pass
    return None  # tempfile's default, short enough for the server's socket path.


class _Server:
    """A throwaway cluster in a temporary directory, run as ``postgres`` when we are root."""

    def __init__(self, initdb: Path) -> None:
        self.initdb = initdb
        self.pg_ctl = initdb.with_name("pg_ctl")
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="deepens-pg-", dir=_scratch()))
        self.data = self.base / "data"
        self.sockets = self.base / "sockets"
        self.log = self.base / "server.log"
        self.sockets.mkdir()
        if self.as_root:
            for path in (self.base, self.sockets):
                shutil.chown(path, user=_SERVER_USER, group=None)

    def run(self, *command: object, timeout: float = 120) -> None:
        argv = [str(part) for part in command]
        if self.as_root:
            argv = ["runuser", "-u", _SERVER_USER, "--", *argv]
        done = subprocess.run(
            argv, cwd=self.base, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited with {done.returncode}: "
                f"{(done.stdout + done.stderr).strip()[-2000:]}{self.log_tail()}"
            )

    def log_tail(self) -> str:
        try:
            return "\nserver log:\n" + self.log.read_text()[-2000:]
        except OSError:
            return ""

    def start(self) -> int:
        self.run(
            self.initdb, "-D", self.data, "--auth=trust", "-U", _SERVER_USER,
            "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        for attempt in itertools.count():
            port = _free_port()
            options = (
                f"-p {port} -k {self.sockets} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self.run(self.pg_ctl, "-D", self.data, "-l", self.log, "-w", "-t", "60",
                         "-o", options, "start")  # fmt: skip
                return port
            except RuntimeError:
                if attempt == 2:  # Another process may have taken the free port meanwhile.
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        try:
            self.run(self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop")
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            pass  # Never started, or already gone.
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1, for the whole session.

    Yields ``postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres`` (trust authentication).
    Skips when PostgreSQL or psycopg2 is missing or the server cannot start, unless
    ``DEEPENS_REQUIRE_POSTGRES=1``: then the tests fail, so CI cannot skip them silently.
    """
    try:
        import psycopg2
    except ImportError as error:
        _postgres_unavailable(f"psycopg2 is not installed ({error})")
    initdb = _find_initdb()
    if initdb is None:
        _postgres_unavailable("initdb found neither under /usr/lib/postgresql/*/bin nor on PATH")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        _postgres_unavailable("running as root and runuser is missing")
    try:
        server = _Server(initdb)
    except (OSError, LookupError) as error:  # LookupError: no user named postgres.
        _postgres_unavailable(f"cannot prepare a data directory for {_SERVER_USER}: {error}")
    failure = None
    try:
        port = server.start()
        psycopg2.connect(host="127.0.0.1", port=port, user=_SERVER_USER, dbname="postgres").close()
    except (OSError, RuntimeError, subprocess.TimeoutExpired, psycopg2.Error) as error:
        failure = f"the server did not start with {initdb}: {error}"
    if failure is not None:
        server.stop()
        _postgres_unavailable(failure)
    try:
        yield f"postgresql+psycopg2://{_SERVER_USER}@127.0.0.1:{port}/postgres"
    finally:
        server.stop()


@pytest.fixture
def postgres_database_url(postgres_url: str) -> str:
    """A new, empty database on the session's server, for one test."""
    import psycopg2

    name = f"test_{os.getpid()}_{next(_databases)}"
    server, _ = postgres_url.rsplit("/", 1)
    host, port = server.rsplit("@", 1)[1].split(":")
    connection = psycopg2.connect(host=host, port=int(port), user=_SERVER_USER, dbname="postgres")
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction.
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()
    return f"{server}/{name}"


_databases = itertools.count()
