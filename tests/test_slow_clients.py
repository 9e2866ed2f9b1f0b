"""Slow clients under the shipped gunicorn configuration: headers trickling in starve no worker."""

from __future__ import annotations

import os
import selectors
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli import client
from service.dev.devserver import ServiceProcess
from service.web.worker import MAX_PENDING, SLOW_AFTER
from tests.support.live import LiveService, healthz_answers


class Trickle:
    """A slowloris client: it opens a request and sends its headers one byte at a time, forever."""

    def __init__(self, port: int, every: float = 0.5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.every, self.answer, self.stop, self.sent = every, b"", threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 10_000
        try:
            for byte in head:
                if self.stop.wait(self.every):
                    return
                self.sock.sendall(bytes([byte]))
                self.sent += 1
        except OSError:  # the server answered and closed: read what it said
            pass
        finally:
            self._read_answer()

    def _read_answer(self) -> None:
        try:
            self.sock.settimeout(1)
            while chunk := self.sock.recv(4096):
                self.answer += chunk
        except OSError:
            pass

    def close(self) -> None:
        """Stop sending and close the connection."""
        self.stop.set()
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[LiveService]:
    """Two sync workers, as small as an instance gets; clients get 2 s to send a request."""
    with LiveService(tmp_path, workers=2, REQUEST_READ_SECONDS="2") as live:
        yield live


def test_it_answers_healthz_while_slow_clients_trickle_headers(instance: LiveService) -> None:
    trickles = [Trickle(instance.port) for _ in range(6)]  # three per worker
    try:
        deadline = time.monotonic() + 10
        while min(trickle.sent for trickle in trickles) < 2:  # each has started its request
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(3):
            assert healthz_answers(instance, time.monotonic() + 10)
        assert instance.post("count", instance.mint("count")).status == 202  # a POST with a body too
    finally:
        for trickle in trickles:
            trickle.close()


def test_it_answers_408_with_the_json_error_to_a_client_too_slow_to_send_its_request(
    instance: LiveService,
) -> None:
    trickle = Trickle(instance.port)
    trickle.thread.join(timeout=15)
    assert not trickle.thread.is_alive(), "the server never closed the slow connection"
    head, _, body = trickle.answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head and b"\r\nCache-Control: no-store\r\n" in head
    assert b'"error": "request_timeout"' in body
    trickle.close()


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def _answers(socks: list[socket.socket], timeout: float) -> list[bytes]:
    """Every connection's answer, read as they come, each closed once answered."""
    answers = {sock.fileno(): b"" for sock in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(1.0):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(4096)
                except OSError:
                    chunk = b""
                if chunk:
                    answers[key.fd] += chunk
                else:
                    selector.unregister(sock)
                    sock.close()
    return list(answers.values())


def test_a_burst_past_what_a_worker_buffers_is_served_not_refused(tmp_path: Path) -> None:
    """More connections at once than one worker buffers (MAX_PENDING), each then sending a whole
    request: the ones past it wait in the kernel's backlog and are served, none is answered 408
    (a worker that took the whole backlog used to refuse the oldest, as it would a slow client)."""
    with LiveService(tmp_path, workers=1) as live:
        socks = [
            socket.create_connection(("127.0.0.1", live.port), timeout=30) for _ in range(MAX_PENDING + 100)
        ]
        try:
            for sock in socks:  # every connection open (and accepted, or queued) before any request
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            statuses = [answer[9:12] for answer in _answers(socks, timeout=120)]
        finally:
            for sock in socks:
                sock.close()
    assert set(statuses) == {b"200"}, sorted(set(statuses))


def test_slow_clients_filling_a_worker_make_room_for_a_new_one(tmp_path: Path) -> None:
    """A worker full of clients that have sent nothing for SLOW_AFTER seconds answers the oldest
    408 to take a new connection: slow clients cannot lock a worker out until they time out."""
    with LiveService(tmp_path, workers=1, REQUEST_READ_SECONDS="60") as live:
        idle = [socket.create_connection(("127.0.0.1", live.port), timeout=30) for _ in range(MAX_PENDING)]
        try:
            time.sleep(SLOW_AFTER + 0.5)  # let them age past SLOW_AFTER (a precondition, not a measurement)
            answer = client.request("GET", f"{live.url}/healthz", timeout=20)
            assert answer.status == 200
            idle[0].settimeout(10)
            assert _answer(idle[0]).startswith(b"HTTP/1.1 408")  # the oldest made room
        finally:
            for sock in idle:
                sock.close()


def _server_socket_inode(server_port: int, client: socket.socket) -> str:
    """The inode of the server's end of `client`'s connection (/proc/net/tcp), "0" once orphaned."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port:
            return fields[9]
    return "0"


def _held(live: ServiceProcess, inode: str) -> bool:
    """Whether a process of the instance still holds the socket `inode` open."""
    for pid in live.members():
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return True
            except OSError:
                continue
    return False


def test_a_client_keeping_its_connection_open_after_its_answer_holds_no_worker(tmp_path: Path) -> None:
    """After its answer a connection closes gracefully (RFC 9112 section 9.6: FIN first, then what
    the client still sends is read until it closes). A client that never closes its side used to
    hold the sync worker in that wait for LINGER_SECONDS per request; the worker's poll loop now
    drains it beside the next requests, and closes it after LINGER_SECONDS."""
    with LiveService(tmp_path, workers=1) as live:
        keeper = socket.create_connection(("127.0.0.1", live.port), timeout=30)
        try:
            keeper.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _answer(keeper).startswith(b"HTTP/1.1 200")  # read to the server's FIN; not closed
            inode = _server_socket_inode(live.port, keeper)
            assert inode != "0" and _held(live, inode)  # the worker lingers on it
            # The only worker answers the next client while the first still lingers, open.
            assert client.request("GET", f"{live.url}/healthz", timeout=20).status == 200
            assert _held(live, inode), "the next client was answered only after the worker stopped lingering"
            keeper.sendall(b"late bytes are read and dropped")
            deadline = time.monotonic() + 20
            while _held(live, inode):  # closed after LINGER_SECONDS, the client still silent
                assert time.monotonic() < deadline, "the lingering connection was never closed"
                time.sleep(0.1)
        finally:
            keeper.close()


def test_lingering_connections_are_released_once_their_clients_close(tmp_path: Path) -> None:
    """Connections the worker lingers on (one per answered client still open) leave no socket
    behind once their clients close: each is read to its end in the poll loop, then closed."""
    with LiveService(tmp_path, workers=1) as live:
        socks = [socket.create_connection(("127.0.0.1", live.port), timeout=30) for _ in range(20)]
        inodes = []
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            inodes.append(_server_socket_inode(live.port, sock))
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + 20
        while any(_held(live, inode) for inode in inodes if inode != "0"):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_a_tls_listener_serves_and_warns_that_it_buffers_nothing(tmp_path: Path) -> None:
    """gunicorn serving TLS itself (`certfile`): the worker serves as gunicorn's sync worker, and
    says at start that slow clients are not buffered there."""
    cert, key = _self_signed(tmp_path)
    live = LiveService(tmp_path, workers=1, GUNICORN_CMD_ARGS=f"--certfile {cert} --keyfile {key}")
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with open(live.work / "tls.log", "wb") as log:  # the child keeps its own copy of the file
        live.process = subprocess.Popen(live.command, env=live.env, stdout=log, stderr=log)
    try:
        deadline, status = time.monotonic() + 20, None
        while status is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{live.port}/healthz", timeout=2, context=context
                ) as answer:
                    status = answer.status
            except OSError:
                time.sleep(0.1)
        assert status == 200
        assert "slow clients are not buffered" in (live.work / "tls.log").read_text()
    finally:
        live.stop()
