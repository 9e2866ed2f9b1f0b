"""batch-trigger's Lambda: EventBridge firing → signed POST to the service, Slack on failure."""

from __future__ import annotations

import importlib
from typing import Any

# Re-exported lazily: importing the handler must not load the broadcast and lifecycle modules.
_EXPORTS = {
    "BroadcastIncomplete": "lambda_trigger.broadcast",
    "ConfigurationError": "lambda_trigger.settings",
    "Firing": "lambda_trigger.events",
    "SecretUnavailable": "lambda_trigger.aws_secrets",
    "Settings": "lambda_trigger.settings",
    "SlackSettings": "lambda_trigger.settings",
    "Trigger": "lambda_trigger.trigger",
    "TriggerFailed": "lambda_trigger.trigger",
    "UnreadableEvent": "lambda_trigger.events",
    "read_event": "lambda_trigger.events",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lambda_trigger' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
