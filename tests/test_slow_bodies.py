"""Request bodies that arrive in pieces, under the shipped gunicorn configuration: a chunked body or
one held back for "100 Continue" is buffered by the worker's poll loop, so a client that never
finishes it holds no worker; a body whose framing is broken is a JSON 400, never a 500."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.web.connections import MAX_BUFFERED_BODY
from tests.support.live import LiveService, healthz_answers, scrape_metrics

WORKERS = 2
READ_SECONDS = 2.0
TRIGGER = b"POST /v1/jobs/count/runs HTTP/1.1\r\nHost: x\r\n"
CHUNKED_HEAD = TRIGGER + b"Transfer-Encoding: chunked\r\n"
EXPECTING_HEAD = TRIGGER + b"Expect: 100-continue\r\nContent-Length: 2\r\n"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[LiveService]:
    """Two sync workers, as small as an instance gets; clients get 2 s to send a request."""
    with LiveService(tmp_path, workers=WORKERS, REQUEST_READ_SECONDS=str(READ_SECONDS)) as live:
        yield live


def _connect(service: LiveService, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=15)
    sock.sendall(data)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _final(answer: bytes) -> tuple[int, dict[str, object]]:
    """The final answer's status and JSON body, past any interim "100 Continue"."""
    while answer.startswith(b"HTTP/1.1 100 "):
        answer = answer.partition(b"\r\n\r\n")[2]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    return int(head.split(b" ")[1]), json.loads(body)


def _auth(token: str) -> bytes:
    return f"Authorization: Bearer {token}\r\n".encode()


UNFINISHED = {
    # The plain sync worker read each body in the app, blocked, until gunicorn's timeout killed it.
    "a chunked body never finished": (CHUNKED_HEAD + b"\r\n1\r\na\r\n", b""),
    # The plain sync worker served it at once and blocked on the body; now the poll loop answers
    # "100 Continue" itself and buffers the body as it comes.
    "a body held back for 100 Continue": (EXPECTING_HEAD + b"\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"),
}


@pytest.mark.parametrize("case", sorted(UNFINISHED))
def test_clients_that_never_finish_their_body_hold_no_worker(instance: LiveService, case: str) -> None:
    """Two such clients per worker, without a token: /healthz still answers, and each client is
    answered 408 once its time to send the request is up."""
    request, interim = UNFINISHED[case]
    held = [_connect(instance, request) for _ in range(2 * WORKERS)]
    try:
        if interim:
            assert [sock.recv(4096) for sock in held] == [interim] * len(held)
        assert healthz_answers(instance, time.monotonic() + 10)
        for sock in held:
            status, body = _final(_answer(sock))
            assert (status, body["error"]) == (408, "request_timeout")
    finally:
        for sock in held:
            sock.close()


def test_a_body_sent_after_100_continue_is_served_with_one_interim_answer(instance: LiveService) -> None:
    with _connect(instance, EXPECTING_HEAD + _auth(instance.mint("count")) + b"\r\n") as sock:
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"{}")
        answer = _answer(sock)
    assert not answer.startswith(b"HTTP/1.1 100 "), "a second 100 Continue was sent"
    status, run = _final(answer)
    assert status == 202 and run["job"] == "count"


def test_a_chunked_trigger_is_served_once_its_last_chunk_arrives(instance: LiveService) -> None:
    head = CHUNKED_HEAD + _auth(instance.mint("count")) + b"\r\n"
    with _connect(instance, head + b"1\r\n{\r\n") as sock:
        time.sleep(0.3)  # the rest comes later, in a second segment (not a measurement)
        sock.sendall(b"1;ext=1\r\n}\r\n0\r\n\r\n")
        status, run = _final(_answer(sock))
    assert status == 202 and run["job"] == "count"


BROKEN = {
    "chunk size not hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk longer than its size": b"3\r\nabcXX0\r\n\r\n",
    "chunk size line past 8 KiB": b"1;" + b"e" * 9000 + b"\r\na\r\n0\r\n\r\n",
    # gunicorn took this size and waited for its exabytes (holding the worker until the deadline).
    "chunk size past 15 hex digits": b"ffffffffffffffff\r\nabc",
    # Framing the worker passes and gunicorn's parser refuses: the app answers, not the worker.
    "a trailer gunicorn refuses": b"2\r\n{}\r\n0\r\nTrailer: x\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_chunked_body_with_broken_framing_is_a_json_400(instance: LiveService, case: str) -> None:
    with _connect(instance, CHUNKED_HEAD + b"\r\n" + BROKEN[case]) as sock:
        status, body = _final(_answer(sock))
    assert (status, body["error"]) == (400, "malformed"), body
    assert _answers_500(instance) == 0


def _answers_500(service: LiveService) -> float:
    found = scrape_metrics(service).items()
    return sum(value for name, value in found if name.startswith('batch_trigger_http_answers_total{code="5'))


def test_a_chunked_body_past_what_the_worker_buffers_is_refused_413(instance: LiveService) -> None:
    """A chunked body has no length to refuse it by: past MAX_BUFFERED_BODY the worker refuses it
    itself, instead of handing the app a body it would wait for (chunk extensions pad the framing,
    so the app's 64 KiB of body need not be there yet)."""
    padded = b"1;" + b"e" * 8000 + b"\r\na\r\n"
    with _connect(instance, CHUNKED_HEAD + b"\r\n" + padded * (MAX_BUFFERED_BODY // len(padded) + 2)) as sock:
        status, body = _final(_answer(sock))
    assert (status, body["error"]) == (413, "too_large"), body
