"""Starting the service with bad configuration: it must refuse, with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.dev.devserver import GUNICORN_COMMAND, free_port
from tests.support.live import REPO

#: The trigger secret the refused starts are given (it must never appear in what they print).
SECRET = "s" * 40


def refused_at_start(tmp_path: Path, **overrides: str) -> str:
    """Start gunicorn with `overrides` on working defaults; assert it exits 2 with one line; that line."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "TRIGGER_SECRET": SECRET,
        "LEDGER_URL": f"sqlite:///{tmp_path / 'l.db'}",
        "BIND": f"127.0.0.1:{free_port()}",
        "HOME": str(tmp_path),
        **overrides,
    }
    done = subprocess.run(
        [sys.executable, *GUNICORN_COMMAND], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("batch-trigger: configuration error: "), done.stderr
    return lines[0]
