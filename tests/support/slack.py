"""The Slack stand-in for tests: a real local HTTP server (shipped with the package)."""

from __future__ import annotations

from service.dev.slack_receiver import SlackReceiver

__all__ = ["SlackReceiver"]
