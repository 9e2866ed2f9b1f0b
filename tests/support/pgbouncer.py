"""A throwaway PgBouncer in transaction pooling in front of the test PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.postgres import PostgresServer, _free_port, _unprivileged_user

_INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install pgbouncer; .ci/system-deps does)"


def find_pgbouncer() -> str:
    """The pgbouncer binary: on PATH, else Debian's /usr/sbin."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        raise FileNotFoundError(f"pgbouncer not found; {_INSTALL_HINT}")
    return found


class PgBouncer:
    """PgBouncer on a free loopback port, `pool_size` server sessions per database shared by every client."""

    def __init__(self, server: PostgresServer, pool_size: int = 2) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="batch-trigger-pgbouncer-"))
        self.port = _free_port()
        # PgBouncer refuses to run as root, as PostgreSQL does.
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        (self.root / "users.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        if self.user is not None:
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, server_url: str) -> str:
        """The same database as `server_url`, reached through this PgBouncer."""
        database = server_url.rsplit("/", 1)[1]
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 20) -> PgBouncer:
        """Start PgBouncer and wait until it accepts connections."""
        command = [find_pgbouncer(), str(self.root / "pgbouncer.ini")]
        if self.user is not None:
            command = ["runuser", "-u", self.user.pw_name, "--", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {timeout} s: {self.log()}")

    def stop(self) -> None:
        """Stop PgBouncer (SIGINT: at once) and delete its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """PgBouncer's log so far (for failure messages)."""
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
