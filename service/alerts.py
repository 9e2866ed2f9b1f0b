"""Slack alerts through an incoming webhook; a failing or silent Slack never fails or blocks a run."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from service.config import Secret
from service.ledger import Pause, Run
from service.outbox import Outbox
from service.slots import format_slot, local_text

log = logging.getLogger("batch_trigger.alerts")
SEND_TIMEOUT_SECONDS = 5
SEND_RETRIES = 2
ERROR_EXCERPT = 1500
#: Block Kit's limit on a section's text (https://api.slack.com/reference/block-kit/blocks#section).
SECTION_LIMIT = 3000
_ICONS = {
    "failed": ":x:",
    "timed_out": ":hourglass:",
    "abandoned": ":ghost:",
    "interrupted": ":warning:",
    "skipped": ":warning:",
}


class Alerts:
    """Posts run alerts to Slack; without a webhook URL it only logs them.

    `queued`: every alert goes through the outbox (bounded, in order, one sender thread), so the
    caller never waits on Slack: what the keeper uses. Otherwise `send` and the methods built on
    it wait for Slack's answer, and only the web request's alerts go through the outbox.
    """

    def __init__(
        self, webhook_url: Secret | None, timezone: ZoneInfo, instance: str, *, queued: bool = False
    ) -> None:
        self._url = webhook_url
        self._timezone = timezone
        self._instance = instance
        self._queued = queued
        self.outbox = Outbox(self.deliver)

    def run_ended(self, run: Run, excerpt: str = "") -> bool:
        """Alert that a run ended badly (failed, timed out, abandoned, interrupted); waits.

        `excerpt`: the last lines of the run's traceback (or output), shown in a code block.
        """
        return self.send(*self._message(run, f"job `{run.job}` {run.status.replace('_', ' ')}", excerpt))

    def recovered(self, run: Run, failed: Run) -> bool:
        """Tell the channel once that a job succeeds again after `failed`."""
        headline = f"job `{run.job}` recovered (the previous run {failed.status.replace('_', ' ')})"
        return self.send(*self._message(run, headline, icon=":white_check_mark:"))

    def succeeded(self, run: Run) -> bool:
        """A success notice, for jobs declared with notify="all"."""
        return self.send(*self._message(run, f"job `{run.job}` succeeded", icon=":white_check_mark:"))

    def run_ended_soon(self, run: Run) -> None:
        """Like `run_ended`, from a web request: sent on a background thread."""
        self._in_background(run, f"job `{run.job}` {run.status.replace('_', ' ')}")

    def overlap(self, run: Run) -> None:
        """Alert that a firing was skipped because another slot of the job still runs."""
        self._in_background(run, f"job `{run.job}` skipped: the previous run is still going")

    def missed(self, job: str, slot: datetime, due_since: timedelta) -> bool:
        """Alert that an expected slot has no successful run: nothing arrived, or nothing succeeded."""
        slot_text = format_slot(slot)
        local = local_text(slot, self._timezone)
        rerun = f"batch-trigger trigger {job} --slot {slot_text}"
        minutes = int(due_since.total_seconds() // 60)
        headline = f"job `{job}` missed its {slot_text} run"
        text = f":alarm_clock: batch-trigger: {headline} ({minutes} min past due, no successful run)"
        fields = {
            "Job": f"`{job}`",
            "Slot (UTC)": slot_text,
            "Slot (local)": local,
            "Past due": f"{minutes} min",
        }
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": f"batch-trigger: {job} missed a run"}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields.items()],
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "No successful run is recorded for this slot: check the schedule, the Lambda"
                    " and earlier alerts for this job.",
                },
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Run it: `{rerun}`"}]},
        ]
        return self.send(f"{text}\nrun it: {rerun}", blocks)

    def paused(self, pause: Pause) -> None:
        """Tell the channel that a job was paused fleet-wide: by whom, why, until when (in the background)."""
        until = f", until {format_slot(pause.until)}" if pause.until else ", until resumed"
        reason = slack_escape(pause.reason or "no reason given")
        headline = f"job `{pause.job}` paused by {slack_escape(pause.paused_by)}{until}"
        self._notice(":double_vertical_bar:", headline, reason, f"batch-trigger resume {pause.job}")

    def resumed(self, job: str, by: str, pause: Pause) -> None:
        """Tell the channel that a paused job fires again (`by` a person, or its `until` came)."""
        headline = f"job `{job}` resumed by {slack_escape(by)}"
        since = f"paused since {format_slot(pause.paused_at)} by {slack_escape(pause.paused_by)}"
        self._notice(":arrow_forward:", headline, since, "batch-trigger jobs")

    def _notice(self, icon: str, headline: str, detail: str, hint: str) -> None:
        """A short notice: a headline, one line of detail, a command to go on with."""
        text = f"{icon} *batch-trigger: {headline}*\n{detail}"
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"`{hint}`"}]},
        ]
        text = f"{icon} batch-trigger: {headline}: {detail}"
        self._enqueue(text, blocks)

    def send(self, text: str, blocks: list[dict[str, Any]]) -> bool:
        """Post one message (queued: hand it to the outbox); False, with a log line, when that failed."""
        if self._queued:
            return self._enqueue(text, blocks)
        log.warning("alert: %s", text.splitlines()[0])
        return self.deliver(text, blocks)

    def deliver(self, text: str, blocks: list[dict[str, Any]]) -> bool:
        """Post one message now, with bounded retries; False (and a log line) when Slack failed."""
        if self._url is None:
            return False
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            RateLimitErrorRetryHandler,
            ServerErrorRetryHandler,
        )
        from slack_sdk.webhook import WebhookClient

        client = WebhookClient(
            self._url.reveal(),
            timeout=SEND_TIMEOUT_SECONDS,
            retry_handlers=[
                ConnectionErrorRetryHandler(max_retry_count=SEND_RETRIES),
                RateLimitErrorRetryHandler(max_retry_count=SEND_RETRIES),
                ServerErrorRetryHandler(max_retry_count=SEND_RETRIES),
            ],
        )
        try:
            answer = client.send(text=text, blocks=blocks)
        except Exception as exc:  # the webhook URL is a secret: name the failure, not the URL
            log.error("slack alert not delivered: %s", type(exc).__name__)
            return False
        if answer.status_code != 200:
            log.error("slack alert not delivered: HTTP %s", answer.status_code)
            return False
        return True

    def _in_background(self, run: Run, headline: str) -> None:
        self._enqueue(*self._message(run, headline))

    def _enqueue(self, text: str, blocks: list[dict[str, Any]]) -> bool:
        log.warning("alert: %s", text.splitlines()[0])
        return self._url is None or self.outbox.put(text, blocks)

    def _message(
        self, run: Run, headline: str, excerpt: str = "", icon: str | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        """A Block Kit message: what happened, to which slot (UTC and local), why, and how to re-run it."""
        slot = format_slot(run.slot)
        local = local_text(run.slot, self._timezone)
        rerun = f"batch-trigger trigger {run.job} --slot {slot} --force"
        logs = f"batch-trigger logs {run.id}"
        icon = icon or _ICONS.get(run.status, ":warning:")
        instance = run.instance or self._instance
        text = f"{icon} batch-trigger: {headline} (slot {slot}, attempt {run.attempt}, instance {instance})"
        fields = {
            "Job": f"`{run.job}`",
            "Status": f"`{run.status}`",
            "Slot (UTC)": slot,
            "Slot (local)": local,
            "Attempt": str(run.attempt),
            "Instance": instance,
        }
        # plain_text shows backticks literally: the header names the job without them.
        header = f"batch-trigger: {headline}".replace("`", "")[:150]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields.items()],
            },
        ]
        if run.error and run.status != "succeeded":
            blocks.append(_code_section("Error", run.error[:ERROR_EXCERPT]))
        if excerpt.strip():
            blocks.append(_code_section("Last lines of the log", excerpt))
        context = f"Re-run: `{rerun}` · Log: `{logs}`"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
        if run.status == "succeeded":
            return f"{text}\nlog: {logs}", blocks
        return f"{text}\nre-run: {rerun}\nlog: {logs}", blocks


def slack_escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reads as control characters.

    https://api.slack.com/reference/surfaces/formatting#escaping
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code_section(title: str, body: str) -> dict[str, Any]:
    """A section with `body` in a code block, escaped, cut from the front to fit (the end says why)."""
    # A fence inside the body would end the code block early.
    lines = body.replace("```", "\'\'\'").strip("\n").splitlines()
    room = SECTION_LIMIT - len(f"*{title}*\n``````")
    escaped = slack_escape("\n".join(lines))
    while len(escaped) > room and len(lines) > 1:
        lines.pop(0)
        escaped = "…\n" + slack_escape("\n".join(lines))
    if len(escaped) > room:  # one line longer than the section: keep as much of its end as fits
        tail, size = lines[-1], 0
        start = len(tail)
        while start > 0 and size + len(slack_escape(tail[start - 1])) <= room - 1:
            start -= 1
            size += len(slack_escape(tail[start]))
        escaped = "…" + slack_escape(tail[start:])
    return {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n```{escaped}```"}}
