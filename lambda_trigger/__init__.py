"""batch-trigger's Lambda: EventBridge firing → signed POST to the service, Slack on failure."""

from __future__ import annotations

from lambda_trigger.aws_secrets import SecretUnavailable
from lambda_trigger.broadcast import BroadcastIncomplete
from lambda_trigger.events import Firing, UnreadableEvent, read_event
from lambda_trigger.settings import ConfigurationError, Settings, SlackSettings
from lambda_trigger.trigger import Trigger, TriggerFailed

__all__ = [
    "BroadcastIncomplete",
    "ConfigurationError",
    "Firing",
    "SecretUnavailable",
    "Settings",
    "SlackSettings",
    "Trigger",
    "TriggerFailed",
    "UnreadableEvent",
    "read_event",
]
