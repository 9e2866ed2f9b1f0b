"""A small HTTP client for the service's API (used by the CLI and the demo)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

FINAL_STATUSES = frozenset({"succeeded", "failed", "timed_out", "interrupted", "skipped", "abandoned"})


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status code and parsed JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would send the token on to wherever it points (another host
    included) and turn a POST into a GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _open(req: urllib.request.Request, timeout: float) -> Any:
    """Open `req`; a redirect is refused in one line that says where it pointed."""
    try:
        return _opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if not 300 <= exc.code < 400:
            raise
        raise OSError(
            f"{_bare(req.full_url)} answered {exc.code}, a redirect to {_bare(exc.headers.get('Location'))}:"
            " set --url (or BATCH_TRIGGER_URL) to the service's own address; the token is not sent on"
        ) from None


def _bare(url: str | None) -> str:
    """`url` without credentials, query or fragment, for a message."""
    parts = urlsplit(url or "")
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a port number
        port = ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}" if parts.hostname else parts.path or "?"


def request(
    method: str, url: str, token: str | None = None, body: bytes | None = None, timeout: float = 10.0
) -> Answer:
    """Send one request; HTTP errors are answers too, connection errors raise OSError."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - operator's URL
    try:
        with _open(req, timeout) as resp:
            return Answer(resp.status, _json(resp.read()), dict(resp.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _json(exc.read()), dict(exc.headers))


def trigger(base_url: str, job: str, token: str) -> Answer:
    """POST a trigger token for `job`."""
    return request("POST", f"{base_url}/v1/jobs/{job}/runs", token, b"{}")


def wait_for_run(base_url: str, run_id: str, token_factory: Any, timeout: float = 3600) -> dict[str, Any]:
    """Poll a run until it reaches a final status (or `timeout` seconds pass); return it."""
    end = time.monotonic() + timeout
    delay = 0.1
    while True:
        answer = request("GET", f"{base_url}/v1/runs/{run_id}", token_factory())
        if answer.status != 200:
            raise OSError(f"GET /v1/runs/{run_id} answered {answer.status}: {answer.body}")
        if answer.body.get("status") in FINAL_STATUSES or time.monotonic() > end:
            return answer.body
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def list_runs(base_url: str, token: str, **filters: Any) -> list[dict[str, Any]]:
    """GET /v1/runs with filters (job, status, limit)."""
    query = urlencode({k: v for k, v in filters.items() if v is not None})
    answer = request("GET", f"{base_url}/v1/runs?{query}", token)
    if answer.status != 200:
        raise OSError(f"GET /v1/runs answered {answer.status}: {answer.body.get('message', answer.body)}")
    runs: list[dict[str, Any]] = answer.body["runs"]
    return runs


@dataclass(frozen=True)
class LogPage:
    """One read of a run's log."""

    text: str
    next_offset: int
    ended: bool


def read_log(base_url: str, run_id: str, token: str, offset: int = 0, timeout: float = 30.0) -> LogPage:
    """GET /v1/runs/{id}/log from `offset`; OSError when the service refuses."""
    req = urllib.request.Request(  # noqa: S310 - the operator's URL
        f"{base_url}/v1/runs/{run_id}/log?offset={offset}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with _open(req, timeout) as resp:
            return LogPage(
                resp.read().decode("utf-8", "replace"),
                int(resp.headers.get("X-Log-Offset", offset)),
                resp.headers.get("X-Run-Ended") == "true",
            )
    except urllib.error.HTTPError as exc:
        body = _json(exc.read())
        raise OSError(f"GET /v1/runs/{run_id}/log answered {exc.code}: {body.get('message', body)}") from None


def follow_log(
    base_url: str, run_id: str, token_factory: Callable[[], str], follow: bool, poll: float = 1.0
) -> Iterator[str]:
    """The run's log in pieces; with `follow`, keep reading until the run has ended."""
    offset = 0
    while True:
        page = read_log(base_url, run_id, token_factory(), offset)
        if page.text:
            yield page.text
        offset = page.next_offset
        # The run was read before its log: a page that says "ended" holds the log's end.
        if not follow or page.ended:
            return
        time.sleep(poll)


def _json(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {"raw": data[:200].decode("utf-8", "replace")}
    return parsed if isinstance(parsed, dict) else {"value": parsed}
