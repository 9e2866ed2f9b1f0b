"""WSGI entry point: `gunicorn -c python:service.gunicorn_conf service.wsgi:app`."""

from __future__ import annotations

from service.web.factory import create_app

app = create_app()
