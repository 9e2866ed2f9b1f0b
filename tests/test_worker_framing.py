"""The buffering worker's framing against gunicorn's own parser: a request the worker judges whole
is parsed, body and all, from the bytes it buffered — the sync worker it hands the request to
never waits on the client (which is what let a slow client hold a worker) — and a request is
never judged whole before its last byte arrived, however the bytes were split on the wire."""

from __future__ import annotations

import itertools
import socket
from typing import Any

from gunicorn.config import Config  # type: ignore[import-untyped]
from gunicorn.http import get_parser  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from service.web.connections import MAX_BUFFERED_BODY, Pending, Stage

FAST = settings(max_examples=300, deadline=None)
HEAD = b"POST /v1/jobs/count/runs HTTP/1.1\r\nHost: x\r\n"


class MoreWanted(Exception):
    """The parser asked for a byte the worker had not buffered."""


class Buffered:
    """A client socket holding only what the worker buffered: the sync worker's view of it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int, *flags: int) -> bytes:
        if not self.data:
            raise MoreWanted()
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def send(self, data: bytes, *flags: int) -> int:
        return len(data)  # "100 Continue"


def _pending() -> Pending:
    sock = socket.socket()
    sock.close()  # never used: stage() reads only what was buffered
    return Pending(sock, ("127.0.0.1", 1), sock, deadline=0.0)


def _stages(segments: list[bytes]) -> list[Stage]:
    """The worker's judgement after each segment arrives."""
    pending, found = _pending(), []
    for segment in segments:
        pending.data += segment
        found.append(pending.stage())
    return found


def _parse(data: bytes) -> bytes:
    """The body gunicorn reads from `data` alone (MoreWanted if it needs more)."""
    request: Any = next(iter(get_parser(Config(), Buffered(data), ("127.0.0.1", 1))))
    return bytes(request.body.read())


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> bytes:
    """`body` in chunks of random sizes, some with extensions, then a last chunk and trailers."""
    out, at = b"", 0
    while at < len(body):
        size = draw(st.integers(1, len(body) - at))
        extension = draw(st.sampled_from([b"", b";a=1", b";name", b' ;q="x y"']))
        out += b"%x%s\r\n%s\r\n" % (size, extension, body[at : at + size])
        at += size
    trailers = draw(st.sampled_from([b"", b"X-Checksum: 1\r\n"]))
    return out + b"0\r\n" + trailers + b"\r\n"


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A whole request (Content-Length, chunked or no body; maybe `Expect: 100-continue`) and its body."""
    body = draw(st.binary(max_size=300))
    expect = draw(st.sampled_from([b"", b"Expect: 100-continue\r\n"]))
    framing = draw(st.sampled_from(["length", "chunked", "none"]))
    if framing == "none":
        return HEAD + expect + b"\r\n", b""
    if framing == "length":
        return HEAD + expect + b"Content-Length: %d\r\n\r\n" % len(body) + body, body
    return HEAD + expect + b"Transfer-Encoding: chunked\r\n\r\n" + draw(chunked(body)), body


def _split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=8))))
    bounds = [0, *(cut for cut in cuts if cut < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@FAST
@given(st.data())
def test_a_request_is_whole_at_its_last_byte_and_gunicorn_reads_it_from_the_buffer(
    data: st.DataObject,
) -> None:
    raw, body = data.draw(requests())
    stages = _stages(_split(data.draw, raw))
    assert stages[-1] == Stage.WHOLE
    assert all(stage == Stage.ARRIVING for stage in stages[:-1]), stages
    assert _parse(raw) == body


@FAST
@given(
    framing=st.sampled_from([b"Transfer-Encoding: chunked\r\n", b"Content-Length: 40\r\n"]),
    tail=st.binary(max_size=200),
)
def test_whatever_follows_a_head_the_worker_hands_over_nothing_gunicorn_waits_for(
    framing: bytes, tail: bytes
) -> None:
    """Random bytes as the body: judged whole, gunicorn parses or refuses them from the buffer;
    refused by the worker or still arriving, nothing is handed over."""
    raw = HEAD + framing + b"\r\n" + tail
    if _stages([raw])[-1] != Stage.WHOLE:
        return
    try:
        _parse(raw)
    except MoreWanted:
        raise AssertionError(f"handed over a request gunicorn waits on: {raw!r}") from None
    except Exception:  # noqa: S110 - gunicorn refused it from the buffer: answered at once
        pass


def test_a_chunked_body_past_the_buffer_is_refused_not_handed_over() -> None:
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"a" * 64 * 1024)
    assert _stages([HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 17]) == [Stage.BODY_TOO_LARGE]
    assert 17 * 64 * 1024 > MAX_BUFFERED_BODY
