"""gunicorn settings shipped with the package: `gunicorn -c python:service.gunicorn_conf ...`."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from service.ledger.budget import PERMITS_ENV
from service.ops.drain import ARBITER_ENV
from service.ops.metrics import prepare_multiprocess_dir

if TYPE_CHECKING:
    from service.config import Settings

bind = [os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")]
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
# The sync worker, except that it serves only requests that arrived whole: a client trickling
# its headers (slowloris) costs a buffer, not a worker, and is answered 408 after
# REQUEST_READ_SECONDS. Still one thread per worker (see service/web/worker.py).
worker_class = "service.web.worker.BufferingSyncWorker"
timeout = 30
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# gunicorn 27 opens a control socket under $HOME by default. The service needs no runtime
# control channel, and in the container the non-root user has no writable home: turn it off.
control_socket_disable = True


def _check_configuration() -> Settings:
    """Bad settings stop start-up with one line, before gunicorn prints anything."""
    from service.config import Settings
    from service.errors import ConfigError
    from service.jobs import load_jobs
    from service.web.worker import read_seconds

    try:
        settings = Settings.from_env()
        load_jobs(settings.batch_modules, settings.timezone)
        read_seconds()
    except ConfigError as exc:
        print(f"batch-trigger: configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    return settings


# The connection budget (service.ledger.budget): workers, keeper and batches share WEB_CONCURRENCY
# PostgreSQL connections; the launcher holds the one more.
os.environ.setdefault(PERMITS_ENV, str(workers))
# gunicorn reads this module once, in the arbiter, before it logs or binds anything; workers
# and the keeper inherit the metrics directory through the environment.
_SETTINGS = _check_configuration()
prepare_multiprocess_dir(_SETTINGS)
os.environ[ARBITER_ENV] = str(os.getpid())

# gunicorn's own logs as JSON lines too, through the service's formatter.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "service.logs.JsonFormatter"}},
    "handlers": {
        "error": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
    # LOG_LEVEL for every other logger too: job modules log at INFO by default, as the service does.
    "root": {"level": _SETTINGS.log_level, "handlers": ["error"]},
}


def when_ready(server: Any) -> None:
    """Install the SIGTERM drain; start this instance's launcher (every batch) and keeper (sweeps)."""
    from service.ops import drain, keeper
    from service.runs.supervisor import LauncherProcess

    settings = _SETTINGS  # read once, above, when gunicorn loaded this module
    drain.install(server, settings)
    launcher = LauncherProcess()
    server.log.info("launcher started (pid %s)", launcher.start())
    manage_workers = server.manage_workers

    def manage_workers_and_launcher() -> None:
        # The arbiter calls this about once a second: a launcher that died is back within
        # seconds (not while draining: the drain stops it on purpose).
        manage_workers()
        if not drain.marker(os.getpid(), settings.run_dir).exists():
            restarted = launcher.keep_alive()
            if restarted is not None:
                server.log.warning("launcher restarted (pid %s)", restarted)

    server.manage_workers = manage_workers_and_launcher
    pid = keeper.start_beside_arbiter(
        settings, lambda arbiter: drain.marker(arbiter, settings.run_dir).exists()
    )
    server.log.info("keeper started (pid %s)", pid)
