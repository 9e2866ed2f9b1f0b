"""The standalone app: `create_app()` builds the Flask app that `service.wsgi` serves."""

from __future__ import annotations

from flask import Flask

from service.config import Settings
from service.logs import configure_logging
from service.web.extension import BatchTrigger


def create_app(settings: Settings | None = None) -> Flask:
    """Build the standalone service from settings (default: the environment)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, instance=settings.instance_id)
    app = Flask("batch_trigger")
    BatchTrigger(app, settings=settings)
    return app
