"""The baseline: a bare Flask JSON endpoint on the trigger's path, served by the same gunicorn config."""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue


def create_app() -> Flask:
    """A Flask app whose POST answers a small JSON document and nothing more."""
    app = Flask("bare")

    @app.post("/v1/jobs/<job>/runs")
    def trigger(job: str) -> ResponseReturnValue:
        """Echo the job name; no token check, no ledger, no batch."""
        request.get_data()
        return jsonify(job=job, status="accepted", authorized=bool(request.headers.get("Authorization"))), 202

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        """The same liveness answer as the service's."""
        return jsonify(status="ok")

    return app


app = create_app()
