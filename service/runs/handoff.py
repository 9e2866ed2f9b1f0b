"""The hand-off from web workers (and the keeper) to the instance's launcher: a Unix datagram socket.

A web worker that claimed a run sends its id and answers at once; it never forks. One datagram
is one run id. Should the send fail (the launcher is restarting, its queue is full), the run
stays `accepted` in the ledger and the launcher adopts it: at its start, and on every heartbeat.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from pathlib import Path

from service.runs import localruns

#: The longest run id we send; ids are 32 hex characters.
MAX_DATAGRAM = 256
# sun_path holds 108 bytes with its terminating NUL.
_PATH_LIMIT = 107


def instance_dir(run_dir: str | None, instance: str) -> Path:
    """This instance's runtime directory (launcher socket, lock, spool, running-batch files)."""
    return localruns.directory(run_dir, instance).parent


def socket_path(run_dir: str | None, instance: str) -> Path:
    """Where the instance's launcher listens."""
    return instance_dir(run_dir, instance) / "launcher.sock"


def address(run_dir: str | None, instance: str) -> str:
    """The socket's address: its path, or (a path past AF_UNIX's 108 bytes) a Linux abstract name."""
    path = str(socket_path(run_dir, instance).absolute())
    if len(path.encode()) < _PATH_LIMIT:
        return path
    # Abstract names have no file and no length problem; one per instance directory.
    return "\0batch-trigger-launcher-" + hashlib.sha256(path.encode()).hexdigest()[:40]


def send(run_dir: str | None, instance: str, run_id: str) -> bool:
    """Hand `run_id` to the launcher; False when it could not take it now (it adopts it later)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(run_id.encode()[:MAX_DATAGRAM], address(run_dir, instance))
    except OSError:
        return False
    return True


def listen(run_dir: str | None, instance: str) -> socket.socket:
    """Bind the launcher's socket (replacing a stale one left by a launcher that died)."""
    path = socket_path(run_dir, instance)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address(run_dir, instance))
    sock.setblocking(False)
    return sock


def receive(sock: socket.socket) -> list[str]:
    """Every run id waiting on the socket."""
    found: list[str] = []
    while True:
        try:
            data = sock.recv(MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return found
        text = data.decode("ascii", "replace").strip()
        if text:
            found.append(text)
