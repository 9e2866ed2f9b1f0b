"""Fixtures: a Slack stand-in and the service under real gunicorn on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live import LiveService
from tests.support.slack import SlackReceiver

pytest_plugins = ["tests.support.postgres", "tests.support.ledgers", "tests.support.inprocess"]


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackReceiver]:
    """A real local HTTP server standing in for Slack's incoming webhook."""
    with SlackReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, slack: SlackReceiver) -> Iterator[LiveService]:
    """The service under gunicorn (3 workers) on a fresh SQLite ledger, with the test jobs."""
    live = LiveService(tmp_path_factory.mktemp("service"), slack.url)
    with live:
        yield live


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A scratch directory for one test."""
    return tmp_path
