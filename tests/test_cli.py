"""The `batch-trigger` CLI and the README's curl lines, run for real against the live service."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import jwt

from tests.support.live import REPO, LiveService

VENV_BIN = Path(sys.executable).parent


def _env(service: LiveService) -> dict[str, str]:
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TRIGGER_SECRET": service.secret,
        "BATCH_TIMEZONE": "Asia/Tokyo",
        "BATCH_TRIGGER_URL": service.url,
        "HOME": str(service.work),
    }


def _cli(service: LiveService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "batch-trigger"), *args],
        env=_env(service),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _readme_block(name: str) -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {name}:.*?-->\s*```bash\n(.*?)```\s*<!-- /{name} -->", readme, re.S)
    assert match, f"README has no {name} block"
    return match.group(1)


def _bash(service: LiveService, script: str) -> list[dict[str, object]]:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=_env(service),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_it_prints_a_token_for_the_logical_dates_midnight_slot(service: LiveService) -> None:
    done = _cli(service, "token", "daily", "--date", "2026-11-23", "--force")
    claims = jwt.decode(done.stdout.strip(), service.secret, algorithms=["HS256"], audience="batch-trigger")
    assert (claims["sub"], claims["slot"], claims["force"]) == ("daily", "2026-11-22T15:00:00Z", True)
    assert claims["exp"] - claims["iat"] <= 300 and claims["iss"] == "cli"


def test_it_runs_the_readmes_curl_retrigger_lines_verbatim(service: LiveService) -> None:
    first = _bash(service, _readme_block("retrigger"))
    assert first[0]["slot"] == "2026-11-22T15:00:00Z" and first[0]["status"] == "accepted"
    service.wait_final(str(first[0]["id"]))
    again = _bash(service, _readme_block("retrigger"))
    assert again[0]["duplicate"] is True and again[0]["id"] == first[0]["id"]
    forced = _bash(service, "export BATCH_TRIGGER_URL\n" + _readme_block("retrigger-force"))
    assert forced[0]["attempt"] == 2 and forced[0]["status"] == "accepted"


def test_it_triggers_and_waits_for_the_outcome(service: LiveService) -> None:
    done = _cli(
        service,
        "trigger",
        "count",
        "--slot",
        "2031-01-01T00:00:00Z",
        "--params",
        '{"seconds": 0.2}',
        "--wait",
    )
    assert done.returncode == 0, done.stderr
    assert '"status": "succeeded"' in done.stdout


def test_it_exits_nonzero_when_the_waited_run_fails(service: LiveService) -> None:
    done = _cli(service, "trigger", "boom", "--slot", "2031-01-02T00:00:00Z", "--wait")
    assert done.returncode == 1 and '"status": "failed"' in done.stdout


def test_it_lists_runs_as_a_table_and_as_json(service: LiveService) -> None:
    _cli(service, "trigger", "count", "--slot", "2031-01-03T00:00:00Z", "--wait")
    table = _cli(service, "runs", "--job", "count")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:6] == ["ID", "JOB", "SLOT", "ATTEMPT", "STATUS", "DURATION"]
    row = next(row.split() for row in rows if "2031-01-03T00:00:00Z" in row and "succeeded" in row)
    # The id leads to the run's log; the duration reads like 0.1s.
    assert re.fullmatch(r"[0-9a-f]{32}", row[0]) and re.fullmatch(r"\d+\.\ds", row[5])
    as_json = json.loads(_cli(service, "runs", "--json", "--status", "failed").stdout)
    assert as_json and {r["status"] for r in as_json} == {"failed"}


def test_it_explains_bad_input_in_one_line(service: LiveService) -> None:
    done = _cli(service, "trigger", "count", "--params", "[1]")
    assert done.returncode == 2 and done.stderr.strip().endswith("--params must be a JSON object")
    bad_slot = _cli(service, "token", "daily", "--slot", "yesterday")
    assert bad_slot.returncode == 2 and "slot must be an RFC 3339 timestamp" in bad_slot.stderr
    no_secret = subprocess.run(
        [str(VENV_BIN / "batch-trigger"), "token", "daily"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
        timeout=30,
    )
    assert no_secret.returncode == 2 and "configuration error: no trigger key" in no_secret.stderr


def test_it_refuses_a_service_it_cannot_reach_with_a_clear_error(service: LiveService) -> None:
    done = _cli(service, "trigger", "count", "--url", "http://127.0.0.1:9")
    assert done.returncode == 1 and done.stderr.startswith("batch-trigger: ")


def test_it_runs_the_demo_to_completion() -> None:
    done = subprocess.run(
        [str(VENV_BIN / "batch-trigger"), "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.rstrip().endswith("[demo] demo passed")
    assert out.count("NEW RUN") == 1 and out.count(" duplicate") == 3  # 3 deliveries + direct payload
    assert "HTTP 401 token_invalid" in out and "*rule*: Weekly" in out and "Slack received 1 alert" in out


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with a redirect to `redirect_to` (or 200) and records what it got."""

    redirect_to: str | None
    seen: list[str]

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path} {self.headers.get('Authorization', '')[:6]}")
        self.send_response(302 if self.redirect_to else 200)
        if self.redirect_to:
            self.send_header("Location", self.redirect_to + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def _serve(redirect_to: str | None) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    """A recording server on a free port, serving from a thread; what it saw."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"redirect_to": redirect_to, "seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_it_follows_no_redirect_and_sends_the_token_nowhere_else(service: LiveService) -> None:
    """An http:// URL answered with a redirect (an ALB's HTTP-to-HTTPS listener, a sign-in page):
    urllib would send the Authorization header on to wherever it points. The CLI stops and says
    where it pointed."""
    target, elsewhere = _serve(None)
    target_url = f"http://127.0.0.1:{target.server_port}"
    front, redirected = _serve(target_url)
    url = f"http://127.0.0.1:{front.server_port}"
    try:
        for args in (["runs"], ["trigger", "count"], ["logs", "abc"]):
            done = _cli(service, *args, "--url", url)
            assert done.returncode == 1, (args, done.stdout, done.stderr)
            assert f"answered 302, a redirect to {target_url}/v1/" in done.stderr, done.stderr
            assert "Bearer" not in done.stderr
    finally:
        for server in (front, target):
            server.shutdown()
            server.server_close()
    assert len(redirected) == 3 and all(line.endswith("Bearer") for line in redirected), redirected
    assert elsewhere == []
