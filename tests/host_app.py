"""A user's existing Flask app that adopts batch-trigger as an extension (served in tests)."""

from __future__ import annotations

from flask import Flask

from service import BatchTrigger

batch = BatchTrigger(url_prefix="/batch")


def create_app() -> Flask:
    """The host app: its own routes, plus batch-trigger's under /batch."""
    app = Flask(__name__)

    @app.get("/")
    def home() -> dict[str, str]:
        return {"app": "shop"}

    @app.get("/healthz")
    def own_health() -> dict[str, str]:
        return {"app": "shop", "status": "fine"}

    batch.init_app(app)
    return app


app = create_app()
