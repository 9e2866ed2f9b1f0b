"""The Flask extension: mounts batch-trigger's endpoints into any Flask app (`init_app` style)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Flask

from service.alerts import Alerts
from service.config import Settings
from service.errors import Draining, LedgerUnavailable
from service.jobs import Registry, load_jobs
from service.ledger import Ledger, budget, open_ledger
from service.ops.drain import arbiter_pid, raise_marker, worker_is_draining
from service.ops.metrics import metrics
from service.runs.claim_and_launch import ClaimAndLaunch
from service.runs.handoff import instance_dir
from service.web.api import blueprint
from service.web.auth import TokenVerifier

if TYPE_CHECKING:
    from werkzeug.routing import Rule

log = logging.getLogger("batch_trigger")
#: The trigger route, whose answers `batch_trigger_trigger_answers_total{code}` counts.
TRIGGER_ENDPOINT = "batch_trigger.trigger"


class BatchTrigger:
    """batch-trigger inside a Flask app: `BatchTrigger(app)` or `ext.init_app(app)`."""

    settings: Settings
    registry: Registry
    ledger: Ledger
    verifier: TokenVerifier
    alerts: Alerts
    launching: ClaimAndLaunch

    def __init__(
        self, app: Flask | None = None, *, settings: Settings | None = None, url_prefix: str = ""
    ) -> None:
        self._settings = settings
        self.url_prefix = url_prefix
        self._draining = False
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, settings: Settings | None = None) -> None:
        """Read settings (environment unless given), load jobs, and register the endpoints."""
        self.settings = settings or self._settings or Settings.from_env()
        self.registry = load_jobs(self.settings.batch_modules, self.settings.timezone)
        self.ledger = open_ledger(self.settings.ledger_url)
        here = instance_dir(self.settings.run_dir, self.settings.instance_id)
        self.ledger.share_connections(budget.for_instance(here, self.settings.connection_permits))
        try:
            self.ledger.ensure_schema()
        except LedgerUnavailable as exc:
            # Start anyway: /readyz reports the outage and claims answer 503 until it ends.
            log.error("ledger not ready at start: %s", exc)
        finally:
            # Connect again on the first request that needs the ledger: a worker that never
            # serves one holds no database connection (README, Running a fleet).
            self.ledger.close()
        self.verifier = TokenVerifier(self.settings)
        self.alerts = Alerts(
            self.settings.slack_webhook_url, self.settings.timezone, self.settings.instance_id
        )
        self.launching = ClaimAndLaunch(
            self.ledger, self.registry, self.settings.instance_id, self.settings.run_dir
        )
        app.extensions["batch_trigger"] = self
        # Another process of the instance waits for a connection: let ours go after the request.
        app.teardown_request(lambda _exc: budget.let_go_where_wanted())
        app.register_blueprint(blueprint, url_prefix=self.url_prefix or None)

    @property
    def draining(self) -> bool:
        """True once this instance stopped taking new claims (SIGTERM under gunicorn, or `drain()`)."""
        return self._draining or worker_is_draining(self.settings.run_dir)

    def drain(self) -> None:
        """Stop taking new claims on this instance: every worker under gunicorn, else this process."""
        self._draining = True
        arbiter = arbiter_pid()
        if arbiter is not None:
            raise_marker(arbiter, self.settings.run_dir)

    def refuse_when_draining(self) -> None:
        """Raise Draining once this instance stopped taking new claims."""
        if self.draining:
            raise Draining("this instance is shutting down; retry, another instance will answer")

    def count_answer(self, endpoint: str | None, rule: Rule | None, status: int) -> None:
        """Count an answer by route and HTTP status; the trigger route's also by status alone."""
        counters = metrics()
        if endpoint == TRIGGER_ENDPOINT:
            counters.trigger_answers.labels(str(status)).inc()
        # The route's pattern, never the path itself: one label value per route, whatever is asked.
        counters.http_answers.labels(rule.rule if rule is not None else "unmatched", str(status)).inc()
