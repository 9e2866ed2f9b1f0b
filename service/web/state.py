"""What the routes need of the extension's state: a Protocol, so the blueprint never imports it back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from flask import current_app

if TYPE_CHECKING:
    from werkzeug.routing import Rule

    from service.alerts import Alerts
    from service.config import Settings
    from service.jobs import Registry
    from service.ledger import Ledger
    from service.runs.claim_and_launch import ClaimAndLaunch
    from service.web.auth import TokenVerifier


class TriggerState(Protocol):
    """The running service as the routes see it (`service.web.extension.BatchTrigger` is one)."""

    settings: Settings
    registry: Registry
    ledger: Ledger
    verifier: TokenVerifier
    alerts: Alerts
    launching: ClaimAndLaunch

    @property
    def draining(self) -> bool:
        """True once this instance stopped taking new claims."""

    def drain(self) -> None:
        """Stop taking new claims on this instance."""

    def refuse_when_draining(self) -> None:
        """Raise Draining once this instance stopped taking new claims."""

    def count_answer(self, endpoint: str | None, rule: Rule | None, status: int) -> None:
        """Count an answer by route and HTTP status."""


def current_state() -> TriggerState:
    """The batch-trigger state of the app serving this request."""
    state: TriggerState = current_app.extensions["batch_trigger"]
    return state
