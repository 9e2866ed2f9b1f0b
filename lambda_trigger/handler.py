"""AWS Lambda entry point `lambda_trigger.handler.handler`, with its per-container state.

Lambda reuses a container for many invocations, so settings, the secret, the signer and the
Slack client are built on the first invocation and kept; nothing is read at import time.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from lambda_trigger.alerts import FAILURE, Alerter
from lambda_trigger.aws_secrets import SecretStore
from lambda_trigger.settings import ConfigurationError, Settings, SlackSettings
from lambda_trigger.trigger import LambdaContext, Trigger

log = logging.getLogger("lambda_trigger")

_trigger: Trigger | None = None


def handler(event: object, context: LambdaContext | None = None) -> dict[str, Any]:
    """Trigger the job named by `event` once for its slot; raise if that cannot be done."""
    return container().handle(event, context)


def container() -> Trigger:
    """This container's `Trigger`, built from the environment on first use."""
    global _trigger
    if _trigger is None:
        _trigger = Trigger(settings_from_env())
    return _trigger


def settings_from_env() -> Settings:
    """The function's settings; a bad environment is logged and alerted before it raises."""
    try:
        settings = Settings.from_env(os.environ)
    except ConfigurationError as exc:
        log.error("config.invalid error=%s", exc)
        _alert_bad_configuration(exc)
        raise
    log.setLevel(settings.log_level)  # "lambda_trigger": every module of the package
    return settings


def reset_container() -> None:
    """Forget the per-container state, as a fresh Lambda container would (tests, the demo)."""
    global _trigger
    _trigger = None


def _alert_bad_configuration(exc: ConfigurationError) -> None:
    # Settings failed as a whole, but Slack's part may still be usable: say so where people look.
    try:
        slack = SlackSettings.from_env(os.environ)
    except ConfigurationError:
        return
    fields = {"error": exc, "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")}
    Alerter(slack, SecretStore()).send(FAILURE, "batch-trigger: Lambda misconfigured", fields)
