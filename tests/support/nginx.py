"""A real nginx as a round-robin load balancer on loopback, in front of a fleet of instances."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.dev.devserver import free_port

NGINX = "/usr/sbin/nginx"
_INSTALL_HINT = "install it (Debian/Ubuntu: apt-get install nginx, or run `bash .ci/system-deps` as root)"
# One tab-separated line per answer the client got, with every upstream nginx tried on the way:
# tests read it to prove what the load balancer did, not only what the client saw.
_LOG_FORMAT = "$status\\t$request_method\\t$request_uri\\t$upstream_addr\\t$upstream_status"

_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    log_format fleet "{log_format}";
    access_log {root}/access.log fleet;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    upstream fleet {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://fleet;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            # A draining instance answers 503 before it claims anything, and a dead one refuses
            # the connection: both are safe to pass to the next instance, POSTs included
            # (non_idempotent), because the ledger deduplicates the slot anyway.
            proxy_next_upstream error timeout http_503 non_idempotent;
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Answer:
    """One line of the access log: what the client got, and which upstreams answered what."""

    status: int
    method: str
    uri: str
    upstreams: tuple[str, ...]
    upstream_statuses: tuple[str, ...]

    def tried(self, upstream: str, status: str | None = None) -> bool:
        """True if nginx sent this request to `upstream` (and it answered `status`, when given)."""
        return any(
            addr == upstream and (status is None or code == status)
            for addr, code in zip(self.upstreams, self.upstream_statuses, strict=False)
        )


class Nginx:
    """nginx balancing round-robin over `upstreams` ("127.0.0.1:PORT"); stopped by PID."""

    def __init__(self, upstreams: Sequence[str], binary: str | None = None) -> None:
        found = binary or (NGINX if Path(NGINX).is_file() else shutil.which("nginx"))
        if not found or not Path(found).is_file():
            raise FileNotFoundError(f"nginx not found ({binary or NGINX}, nor on PATH); {_INSTALL_HINT}")
        self.binary = found
        self.upstreams = list(upstreams)
        self.root = Path(tempfile.mkdtemp(prefix="batch-trigger-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = self.root / "access.log"
        self.process: subprocess.Popen[bytes] | None = None
        for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.root / "tmp" / name).mkdir(parents=True)
        # max_fails=0: never take an instance out of rotation for a while after a failure; each
        # request still moves on to the next instance, so every test sees the same behaviour.
        servers = "\n".join(f"        server {address} max_fails=0;" for address in self.upstreams)
        conf = _CONF.format(root=self.root, port=self.port, servers=servers, log_format=_LOG_FORMAT)
        (self.root / "nginx.conf").write_text(conf)

    def start(self, timeout: float = 10.0) -> Nginx:
        """Start nginx in the foreground of its own process and wait until it accepts connections."""
        command = [self.binary, "-p", str(self.root), "-e", str(self.root / "error.log"),
                   "-c", str(self.root / "nginx.conf"), "-g", "daemon off;"]  # fmt: skip
        out = open(self.root / "stderr.log", "ab")
        self.process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
        out.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen on {self.url} within {timeout} s: {self.log()}")

    def stop(self) -> None:
        """Stop nginx (SIGTERM to the master: its fast shutdown), kill it if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def destroy(self) -> None:
        """Stop nginx and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def answers(self, uri_prefix: str = "") -> list[Answer]:
        """Every answer logged so far whose URI starts with `uri_prefix`, oldest first."""
        text = self.access_log.read_text(errors="replace") if self.access_log.exists() else ""
        found = []
        for line in text.splitlines():
            status, method, uri, addrs, codes = line.split("\t")
            if uri.startswith(uri_prefix):
                found.append(Answer(int(status), method, uri, _split(addrs), _split(codes)))
        return found

    def log(self) -> str:
        """nginx's error log and stderr so far (for failure messages)."""
        parts = [p.read_text(errors="replace") for p in (self.root / "error.log", self.root / "stderr.log")
                 if p.exists()]  # fmt: skip
        return "\n".join(parts)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _split(field: str) -> tuple[str, ...]:
    # nginx separates the upstreams of one request with ", " (and groups after an internal
    # redirect with " : "); "-" means none was tried.
    if field == "-":
        return ()
    return tuple(part.strip() for part in field.replace(" : ", ", ").split(", "))
