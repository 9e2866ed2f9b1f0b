"""Delivering one trigger over HTTP: per-attempt timeout, backoff with full jitter, a deadline."""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from lambda_trigger.settings import redact_url

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # answers are small JSON documents; never buffer more than this
MIN_ATTEMPT = 0.25  # seconds: an attempt with less time than this left is not worth starting
USER_AGENT = "batch-trigger-lambda/0.1"


class Answer(NamedTuple):
    """What one attempt got back: an HTTP status and JSON body, or no answer at all."""

    # NamedTuples, not dataclasses, on the Lambda's cold path: importing dataclasses (and the
    # inspect module it needs) costs more than the rest of a cold start's own code (BENCHMARKS.md).
    status: int | None  # None: connection refused/reset, timeout, ...
    body: dict[str, Any] = {}  # noqa: RUF012 - a NamedTuple default, never mutated
    summary: str = ""  # one line for logs and alerts, e.g. "HTTP 404 unknown_job: ..."
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        """Whether another attempt may get a different answer (no answer, 408, 429, 5xx).

        408: the server gave up waiting for the request (a stalled network, an instance full of
        slow clients) and never read it whole; RFC 9110 lets the client send it again.
        """
        return self.status is None or self.status in (408, 429) or self.status >= 500


class Delivery(NamedTuple):
    """The final answer of a delivery and how many attempts it took."""

    answer: Answer
    attempts: int
    elapsed: float
    out_of_time: bool  # True when the deadline, not the answer, ended the retries


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a GET and lose the token's intent."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def request_once(method: str, url: str, token: str, timeout: float) -> Answer:
    """One request (POST sends `{}`) with the bearer token; never raises for transport errors."""
    request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked in settings
        url,
        data=b"{}" if method == "POST" else None,
        method=method,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return _answer(response.status, response.headers, response.read(MAX_BODY), token)
    except urllib.error.HTTPError as exc:
        with exc:
            return _answer(exc.code, exc.headers, exc.read(MAX_BODY), token)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            return Answer(None, summary=f"no answer within {timeout:.3g} s")
        return Answer(None, summary=f"no answer: {type(reason).__name__}: {reason}")


def deliver(
    url: str,
    mint: Callable[[], str],
    *,
    budget: float,
    attempt_timeout: float,
    backoff_base: float,
    backoff_max: float,
    label: str = "",
    method: str = "POST",
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Request (POST) until a final answer or until `budget` seconds are spent; a fresh token per attempt."""
    start = time.monotonic()
    deadline = start + budget
    attempts = 0
    while True:
        attempts += 1
        timeout = min(attempt_timeout, max(deadline - time.monotonic(), MIN_ATTEMPT))
        answer = request_once(method, url, mint(), timeout)
        if not answer.retryable:
            return Delivery(answer, attempts, time.monotonic() - start, out_of_time=False)
        pause = _pause(attempts, answer, backoff_base, backoff_max)
        left = deadline - time.monotonic()
        if left - pause < MIN_ATTEMPT:
            log.warning("trigger.give_up %s attempts=%d answer=%r", label, attempts, answer.summary)
            return Delivery(answer, attempts, time.monotonic() - start, out_of_time=True)
        log.warning(
            "trigger.retry %s attempt=%d answer=%r pause=%.2fs", label, attempts, answer.summary, pause
        )
        sleep(pause)


def _pause(attempts: int, answer: Answer, base: float, cap: float) -> float:
    # "Full jitter": a uniform pause up to the exponential step spreads out retries from many
    # invocations at once. https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
    step = min(cap, base * 2 ** (attempts - 1))
    jittered = random.uniform(0, step)  # noqa: S311 - spreading retries, not cryptography
    # A server that says when to come back is believed; the deadline check decides if we can.
    return max(jittered, answer.retry_after) if answer.retry_after is not None else jittered


def _answer(status: int, headers: Any, raw: bytes, token: str) -> Answer:
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        parsed = {}
    body = parsed if isinstance(parsed, dict) else {}
    detail = " ".join(str(body[k]) for k in ("error", "message") if k in body) or text.strip()
    if 300 <= status < 400:
        # Redacted: a redirect (e.g. to a sign-in page) may carry credentials or a key in its URL.
        detail = f"redirect to {redact_url(str(headers.get('Location')))}: set APP_URL to the final URL"
    # Defence in depth: whatever the server echoes, the token never reaches a log or Slack.
    detail = detail.replace(token, "[token]")[:300]
    summary = f"HTTP {status} {detail}".rstrip()
    return Answer(status, body, summary, _retry_after(headers.get("Retry-After")))


def _retry_after(value: str | None) -> float | None:
    # Retry-After is either delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
