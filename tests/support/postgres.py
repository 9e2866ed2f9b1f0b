"""A throwaway PostgreSQL server from the system's binaries, as pytest fixtures."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

_EMPTY = "''"
_INSTALL_HINT = "install the server (Debian/Ubuntu: apt-get install postgresql) or put its bin/ on PATH"
# fsync off: an OS crash cannot matter to a directory deleted after the run. Commits stay
# synchronous, because outage tests crash the server (stop -m immediate) and count what survived.
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "dynamic_shared_memory_type": "mmap",
}


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: pg_config's, else the newest Debian install, else PATH."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if found.returncode == 0:
            candidates.append(Path(found.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: _version(p.parent.name), reverse=True)
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb") or "").resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise FileNotFoundError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {_INSTALL_HINT}")


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, listening on a free loopback port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="batch-trigger-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = _free_port()
        # initdb refuses to run as root: then the cluster belongs to an unprivileged user.
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        try:
            self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-locale", "--no-sync")  # fmt: skip
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def url(self, dbname: str = "postgres") -> str:
        """A LEDGER_URL for one database of this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        """True while the postmaster answers pg_ctl status."""
        return self._run("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def start(self) -> None:
        """Start the server (a no-op when it runs) and wait until it accepts connections."""
        if self.running:
            return
        # pg_ctl hands the options to a shell: '' is an empty value.
        options = " ".join(f"-c {name}={value or _EMPTY}" for name, value in _SETTINGS.items())
        started = self._pg_ctl("start", "-l", str(self.logfile), "-o", f"-p {self.port} {options}")
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {started.stdout}{started.stderr}\n{self.log()}")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server: `immediate` is a crash (recovery on the next start), `fast` a clean stop."""
        if not self.running:
            return
        stopped = self._pg_ctl("stop", "-m", mode)
        if stopped.returncode != 0:
            self._kill()

    def create_database(self) -> str:
        """Create a fresh, empty database and return its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by create_database, ending its sessions; best effort."""
        name = url.rsplit("/", 1)[1]
        try:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass  # the server may be down after an outage test; the directory goes anyway

    def destroy(self) -> None:
        """Stop the server at once and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def _kill(self) -> None:
        pidfile = self.datadir / "postmaster.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError, IndexError):
                pass

    def _pg_ctl(self, action: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", action, "-w", "-t", "60", "-D", str(self.datadir), *args, check=False)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session; fails (never skips) without the binaries."""
    try:
        bindir = find_bindir()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh database on the session's server (restarted if a test left it down)."""
    postgres_server.start()
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)
