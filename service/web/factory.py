"""The standalone app: `create_app()` builds the Flask app that `service.wsgi` serves."""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from service.config import Settings
from service.logs import configure_logging
from service.web.api import http_error_body, protect
from service.web.extension import BatchTrigger


def create_app(settings: Settings | None = None) -> Flask:
    """Build the standalone service from settings (default: the environment)."""
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level, instance=settings.instance_id)
    app = Flask("batch_trigger")
    extension = BatchTrigger(app, settings=settings)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int, dict[str, str]]:
        # Only the standalone service answers paths and methods it does not know in JSON too; a
        # host app (BatchTrigger.init_app) keeps its own error pages.
        if request.url_rule is None:
            extension.count_answer(None, None, error.code or 500)
        return http_error_body(error)

    # The standalone service's own answers (unknown paths and methods, OPTIONS) carry the API's
    # headers too; a host app's pages are left as the host makes them.
    app.after_request(protect)
    return app
