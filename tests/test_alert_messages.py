"""Slack messages of ended runs, sent to a real local stand-in: escaped, within Block Kit's limits,
with the lines that re-run the slot and show its log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.alerts import SECTION_LIMIT, Alerts
from service.config import Secret
from service.ledger import Run, Status
from tests.support.slack import SlackReceiver

SLOT = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[SlackReceiver]:
    """A fresh Slack stand-in per test."""
    with SlackReceiver() as slack:
        yield slack


def _run(status: Status = Status.FAILED, error: str | None = "ValueError: <bad> & worse") -> Run:
    return Run(
        id="6f1c2d3e4a5b69788796a5b4c3d2e1f0",
        job="daily",
        slot=SLOT,
        attempt=1,
        status=status,
        trigger="schedule",
        created_at=SLOT,
        instance="i-1",
        finished_at=SLOT,
        error=error,
    )


def _sent(receiver: SlackReceiver, send: Any) -> dict[str, Any]:
    assert send(Alerts(Secret(receiver.url), ZoneInfo("Asia/Tokyo"), "i-1")) is True
    message: dict[str, Any] = receiver.wait_for(1)[-1]
    return message


def _sections(message: dict[str, Any]) -> dict[str, str]:
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]
    return {text.split("\n", 1)[0]: text for text in texts}


def test_it_shows_the_logs_last_lines_escaped_and_within_the_section_limit(receiver: SlackReceiver) -> None:
    frames = [
        f'  File "/app/jobs/daily.py", line {n}, in step_{n}\n    rows = load(<{n}> & more)'
        for n in range(400)
    ]
    excerpt = "\n".join(["Traceback (most recent call last):", *frames, "ValueError: <bad> & worse"])
    message = _sent(receiver, lambda alerts: alerts.run_ended(_run(), excerpt))
    sections = _sections(message)
    log = sections["*Last lines of the log*"]
    assert len(log) <= SECTION_LIMIT and all(len(text) <= SECTION_LIMIT for text in sections.values())
    assert log.startswith("*Last lines of the log*\n```…\n") and log.endswith(
        "ValueError: &lt;bad&gt; &amp; worse```"
    )
    assert "<" not in log and ">" not in log and "&lt;399&gt; &amp; more" in log
    assert sections["*Error*"] == "*Error*\n```ValueError: &lt;bad&gt; &amp; worse```"
    header = message["blocks"][0]["text"]
    assert header == {"type": "plain_text", "text": "batch-trigger: job daily failed"}
    context = json.dumps(message["blocks"][-1])
    assert "batch-trigger logs 6f1c2d3e4a5b69788796a5b4c3d2e1f0" in context
    assert "batch-trigger trigger daily --slot 2026-12-01T15:00:00Z --force" in context
    assert message["text"].splitlines()[-1] == "log: batch-trigger logs 6f1c2d3e4a5b69788796a5b4c3d2e1f0"


def test_it_keeps_the_end_of_one_line_longer_than_a_section(receiver: SlackReceiver) -> None:
    excerpt = "&" * 5000 + " the end"
    log = _sections(_sent(receiver, lambda alerts: alerts.run_ended(_run(), excerpt)))[
        "*Last lines of the log*"
    ]
    assert len(log) <= SECTION_LIMIT and log.endswith("&amp; the end```")
    body = log.split("```")[1]
    assert body.startswith("…&amp;") and body[1:].replace("&amp;", "") == " the end"


def test_it_leaves_the_code_block_out_when_there_is_nothing_to_show(receiver: SlackReceiver) -> None:
    message = _sent(receiver, lambda alerts: alerts.run_ended(_run(Status.ABANDONED, "lease expired"), ""))
    assert "*Last lines of the log*" not in _sections(message)


def test_it_words_recovered_and_success_notices_without_backticks_in_the_header(
    receiver: SlackReceiver,
) -> None:
    ok = _run(Status.SUCCEEDED, None)
    recovered = _sent(receiver, lambda alerts: alerts.recovered(ok, _run()))
    assert (
        recovered["blocks"][0]["text"]["text"]
        == "batch-trigger: job daily recovered (the previous run failed)"
    )
    assert recovered["text"].startswith(":white_check_mark:")
    success = _sent(receiver, lambda alerts: alerts.succeeded(ok))
    assert success["blocks"][0]["text"]["text"] == "batch-trigger: job daily succeeded"
    assert "re-run" not in success["text"] and "*Error*" not in _sections(success)
