"""gunicorn settings shipped with the package: `gunicorn -c python:service.gunicorn_conf ...`."""

from __future__ import annotations

import os
import sys
from typing import Any

bind = [os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")]
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "sync"
timeout = 30
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# gunicorn 27 opens a control socket under $HOME by default. The service needs no runtime
# control channel, and in the container the non-root user has no writable home: turn it off.
control_socket_disable = True


def _check_configuration() -> None:
    """Bad settings stop start-up with one line, before gunicorn prints anything."""
    from service.config import Settings
    from service.errors import ConfigError
    from service.jobs import load_jobs

    try:
        load_jobs(Settings.from_env().batch_modules)
    except ConfigError as exc:
        print(f"batch-trigger: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


# gunicorn reads this module once, in the arbiter, before it logs or binds anything.
_check_configuration()


def when_ready(server: Any) -> None:
    """Install the SIGTERM drain and start this instance's keeper (lease sweeps, recovery)."""
    from service import drain, keeper
    from service.config import Settings

    settings = Settings.from_env()
    drain.install(server, settings)
    pid = keeper.start_beside_arbiter(
        settings, lambda arbiter: drain.marker(arbiter, settings.run_dir).exists()
    )
    server.log.info("keeper started (pid %s)", pid)
