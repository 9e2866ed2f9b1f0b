"""Slack alerts via slack_sdk's webhook client: short timeout, bounded retries, never raises."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lambda_trigger.aws_secrets import SecretStore, SecretUnavailable
from lambda_trigger.settings import SlackSettings

if TYPE_CHECKING:
    from slack_sdk.webhook import WebhookClient

log = logging.getLogger(__name__)

WARNING = ":warning:"
FAILURE = ":rotating_light:"


class Alerter:
    """Posts alerts to one Slack incoming webhook, building its client on first use."""

    def __init__(self, settings: SlackSettings, secrets: SecretStore) -> None:
        self._settings = settings
        self._secrets = secrets
        self._client: WebhookClient | None = None

    def __repr__(self) -> str:
        configured = bool(self._settings.webhook_url or self._settings.webhook_secret_arn)
        return f"Alerter(configured={configured})"

    def send(self, icon: str, title: str, fields: Mapping[str, object]) -> bool:
        """Post `title` and `fields`; log instead of raising if Slack is unset or fails."""
        message = {"text": render(icon, title, fields)}
        try:
            client = self._webhook()
            if client is None:
                log.warning("alert.not_sent reason=no_slack_webhook title=%r", title)
                return False
            response = client.send_dict(message)
        # Deliberately broad: an alert is sent while something else already failed, and a
        # broken Slack must never replace that error with its own.
        except Exception as exc:
            log.error("alert.failed title=%r error=%s", title, self._redact(exc))
            return False
        if response.status_code != 200:
            log.error("alert.failed title=%r status=%s", title, response.status_code)
            return False
        log.info("alert.sent title=%r", title)
        return True

    def _webhook(self) -> WebhookClient | None:
        if self._client is None:
            url = self._settings.webhook_url
            if self._settings.webhook_secret_arn:
                url = self._secrets.get(self._settings.webhook_secret_arn).strip()
            if not url:
                return None
            self._client = _build_client(url, self._settings.timeout)
        return self._client

    def _redact(self, exc: Exception) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, SecretUnavailable):
            return text
        # The webhook URL is a credential; some errors (e.g. a malformed URL) quote it.
        url = self._client.url if self._client else self._settings.webhook_url
        return text.replace(url, "[webhook]") if url else text


def render(icon: str, title: str, fields: Mapping[str, object]) -> str:
    """Slack mrkdwn text: a bold title line, then one `name: value` line per non-empty field."""
    lines = [f"{icon} *{_escape(title)}*"]
    lines += [f"*{name}*: {_escape(str(value))}" for name, value in fields.items() if value != ""]
    return "\n".join(lines)


def _escape(text: str) -> str:
    # Slack's three control characters in message text: https://api.slack.com/reference/surfaces/formatting#escaping
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _build_client(url: str, timeout: float) -> WebhookClient:
    # Imported on the first alert only: most invocations never need slack_sdk.
    from slack_sdk.http_retry import ConnectionErrorRetryHandler
    from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
    from slack_sdk.webhook import WebhookClient

    # slack_sdk logs the webhook URL at INFO/DEBUG when it retries; its logger stays at WARNING.
    sdk_log = logging.getLogger(f"{__name__}.slack_sdk")
    sdk_log.setLevel(logging.WARNING)
    return WebhookClient(
        url,
        timeout=max(1, round(timeout)),
        logger=sdk_log,
        # One retry each for a dropped connection and a 500/503: bounded, so the alert fits
        # in the time the handler keeps in reserve for it.
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            ServerErrorRetryHandler(max_retry_count=1),
        ],
    )
