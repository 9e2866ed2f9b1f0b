"""The alert outbox against a real socket server that accepts and never answers (until released).

Whether a caller waited on Slack is read from the order of events, not from a clock: every
`send` returned while the stand-in still held the first request unanswered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from service.alerts import Alerts
from service.config import Secret
from service.ledger import Pause
from service.outbox import Outbox
from service.slots import utcnow
from tests.support.silent_slack import SilentSlack

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def silent() -> Iterator[SilentSlack]:
    """A Slack stand-in that holds every request until the test releases it."""
    with SilentSlack() as server:
        yield server


def section(text: str) -> list[dict[str, object]]:
    """A one-section Block Kit message."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


def test_it_queues_alerts_without_waiting_and_sends_them_in_order(silent: SilentSlack) -> None:
    alerts = Alerts(Secret(silent.url), TOKYO, "i-1", queued=True)
    assert all(alerts.send(f"alert {n}", section(f"alert {n}")) for n in range(1, 6))
    # Every send returned, yet Slack has at most the first message, and has answered nothing.
    assert len(silent.received) <= 1 and silent.answered == []
    silent.release()
    assert alerts.outbox.flush(timeout=30) == 0
    assert [body["text"] for body in silent.answered] == [f"alert {n}" for n in range(1, 6)]


def test_it_logs_an_alert_it_cannot_queue(silent: SilentSlack, caplog: pytest.LogCaptureFixture) -> None:
    alerts = Alerts(Secret(silent.url), TOKYO, "i-1")
    outbox = Outbox(alerts.deliver, capacity=2)
    assert outbox.put("first", section("first"))
    silent.wait_received(1, timeout=10)  # the sender holds the first; two more fit in the queue
    assert outbox.put("second", section("second")) and outbox.put("third", section("third"))
    with caplog.at_level(logging.ERROR, logger="batch_trigger.alerts"):
        assert outbox.put("fourth: the queue is full", section("fourth")) is False
    assert "slack alert dropped" in caplog.text and "fourth: the queue is full" in caplog.text
    silent.release()
    assert outbox.flush(timeout=30) == 0
    assert [body["text"] for body in silent.answered] == ["first", "second", "third"]


def test_it_logs_each_alert_still_queued_when_the_process_stops(
    silent: SilentSlack, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = Alerts(Secret(silent.url), TOKYO, "i-1", queued=True)
    for n in range(1, 4):
        alerts.send(f"alert {n}", section(f"alert {n}"))
    silent.wait_received(1, timeout=10)
    with caplog.at_level(logging.ERROR, logger="batch_trigger.alerts"):
        left = alerts.outbox.close(timeout=0.2)
    assert left == 3  # one held by Slack (unconfirmed), two never taken from the queue
    unsent = [r.getMessage() for r in caplog.records if "(the process is stopping)" in r.getMessage()]
    assert unsent == [
        "slack alert not confirmed (the process is stopping): alert 1",
        "slack alert not sent (the process is stopping): alert 2",
        "slack alert not sent (the process is stopping): alert 3",
    ]


def test_it_sends_web_request_alerts_through_the_outbox_in_order(silent: SilentSlack) -> None:
    alerts = Alerts(Secret(silent.url), TOKYO, "i-1")  # not queued: only the background kind is
    for n in range(1, 4):
        alerts.paused(Pause("daily", utcnow(), "cli", f"reason {n}", None))
    assert len(silent.received) <= 1
    silent.release()
    assert alerts.outbox.flush(timeout=30) == 0
    assert [body["text"].rsplit(": ", 1)[-1] for body in silent.answered] == [
        f"reason {n}" for n in (1, 2, 3)
    ]
