"""Requests gunicorn refuses before the app sees them, under the shipped configuration: JSON 4xx, counted."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from service.cli import client
from tests.support.live import LiveService

RAW = {
    "request line too long": (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "header too large": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "too many headers": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
        431,
    ),
    # Each field within gunicorn's limits, the head unended past 64 KiB: refused by the worker.
    "head unended past 64 KiB": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (n, b"a" * 7000) for n in range(10)),
        431,
    ),
    "Content-Length not a number": (
        b"POST /v1/jobs/count/runs HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
        400,
    ),
    "NUL in a header": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "not HTTP": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
}


def _raw(service: LiveService, request: bytes) -> tuple[int, dict[str, object]]:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.mark.parametrize("case", sorted(RAW))
def test_it_answers_an_unparsable_request_with_a_json_4xx(service: LiveService, case: str) -> None:
    request, expected = RAW[case]
    before = _unparsed(service, expected)
    status, body = _raw(service, request)
    assert status == expected and set(body) == {"error", "message"}
    assert _unparsed(service, expected) == before + 1


def _unparsed(service: LiveService, status: int) -> float:
    """batch_trigger_http_answers_total{route="unparsed", code=status} in the instance's /metrics."""
    with urllib.request.urlopen(f"{service.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith("batch_trigger_http_answers_total{") and 'route="unparsed"' in line:
            if f'code="{status}"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_answer_forbids_sniffing_and_caching(service: LiveService) -> None:
    """Every answer, the app's, its errors' and the worker's own refusals, says nosniff and no-store:
    no browser reads a JSON error or a run's log as HTML, and no proxy or browser keeps runs, logs
    or token refusals."""
    reader = service.read_token()
    answers = {
        "health": client.request("GET", f"{service.url}/healthz"),
        "runs, read": client.request("GET", f"{service.url}/v1/runs", token=reader),
        "runs, no token": client.request("GET", f"{service.url}/v1/runs"),
        "unknown path": client.request("GET", f"{service.url}/nowhere"),
        "method not allowed": client.request("PUT", f"{service.url}/healthz"),
        "options": client.request("OPTIONS", f"{service.url}/v1/runs"),
    }
    statuses = {name: answer.status for name, answer in answers.items()}
    assert statuses == {
        "health": 200,
        "runs, read": 200,
        "runs, no token": 401,
        "unknown path": 404,
        "method not allowed": 405,
        "options": 200,
    }
    for name, answer in answers.items():
        headers = {key.lower(): value for key, value in answer.headers.items()}
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("cache-control") == "no-store", name
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(RAW["NUL in a header"][0])
        head = b""
        while chunk := sock.recv(65536):
            head += chunk
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head and b"\r\nCache-Control: no-store\r\n" in head
