"""The `batch-trigger` command: mint tokens, trigger runs, list history, run the demo."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from typing import Any

from service.config import Settings
from service.errors import ConfigError
from service.slots import format_slot, logical_date, parse_slot, slot_for_date, utcnow
from service.web.auth import DRAIN_SUBJECT, READ_SUBJECT, mint_drain_token, mint_token


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"batch-trigger: configuration error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"batch-trigger: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-trigger", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    token = commands.add_parser(
        "token",
        help="print a short-lived token for curl: JOB triggers (and reads) a job;"
        " 'read' reads every job; 'drain --instance ID' drains one instance",
    )
    _slot_arguments(token)
    token.add_argument("--instance", help="with 'drain': the INSTANCE_ID of the instance to drain")
    token.set_defaults(func=_token)

    trigger = commands.add_parser("trigger", help="mint a token and POST it to the service")
    _slot_arguments(trigger)
    trigger.add_argument("--url", help="service base URL (default: $BATCH_TRIGGER_URL)")
    trigger.add_argument("--wait", action="store_true", help="wait for the run to finish")
    trigger.add_argument("--wait-timeout", type=float, default=3600, metavar="SECONDS")
    trigger.set_defaults(func=_trigger)

    runs = commands.add_parser("runs", help="list run history, newest first")
    runs.add_argument("--job")
    runs.add_argument("--status")
    runs.add_argument("--slot", type=_slot_arg, help="only runs of this slot (RFC 3339)")
    runs.add_argument("--before", type=_slot_arg, help="only runs created before this time (paging)")
    runs.add_argument("--limit", type=int, default=20)
    runs.add_argument("--url", help="service base URL (default: $BATCH_TRIGGER_URL)")
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    runs.set_defaults(func=_runs)

    logs = commands.add_parser("logs", help="print a run's captured output (stdout, stderr, traceback)")
    logs.add_argument("run_id", metavar="RUN_ID", help="the run's id (the ID column of `runs`)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--url", help="service base URL (default: $BATCH_TRIGGER_URL)")
    logs.set_defaults(func=_logs)

    keeper = commands.add_parser(
        "keeper",
        help="run the launcher and the keeper in the foreground (when not served by service.gunicorn_conf)",
    )
    keeper.set_defaults(func=_keeper)

    demo = commands.add_parser("demo", help="run the whole flow locally on SQLite")
    demo.set_defaults(func=_demo)

    from service.cli import backfill, schedules

    schedules.add_commands(commands)
    backfill.add_command(commands)
    return parser


def _slot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", help="job name, e.g. daily")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--date", type=_date_arg, help="logical date YYYY-MM-DD (local midnight)")
    when.add_argument("--slot", type=_slot_arg, help="exact slot, RFC 3339 (e.g. 2026-11-22T15:00:00Z)")
    parser.add_argument("--force", action="store_true", help="re-run a slot that already ran")
    parser.add_argument("--params", type=_params_arg, default=None, help="JSON object passed to the job")


def _slot_arg(text: str) -> datetime:
    try:
        return parse_slot(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"date must be YYYY-MM-DD, got {text!r}") from None


def _params_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--params must be a JSON object") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params must be a JSON object")
    return value


def _slot(args: argparse.Namespace, settings: Settings) -> datetime:
    if args.slot is not None:
        slot: datetime = args.slot
        return slot
    day = args.date or logical_date(utcnow(), settings.timezone)
    return slot_for_date(day, settings.timezone)


def _mint(args: argparse.Namespace, settings: Settings) -> str:
    return mint_token(settings, args.job, slot=_slot(args, settings), force=args.force, params=args.params)


def _token(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.job == DRAIN_SUBJECT:
        if not args.instance:
            raise ValueError("a drain token names the instance it drains: add --instance INSTANCE_ID")
        print(mint_drain_token(settings, args.instance))
    elif args.instance:
        raise ValueError("--instance goes with 'token drain' only")
    elif args.job == READ_SUBJECT:
        print(mint_token(settings, READ_SUBJECT))
    else:
        print(_mint(args, settings))
    return 0


def _trigger(args: argparse.Namespace) -> int:
    from service.cli import client

    settings = Settings.from_env()
    url = (args.url or settings.app_url).rstrip("/")
    answer = client.trigger(url, args.job, _mint(args, settings))
    print(json.dumps({"http_status": answer.status, **answer.body}, indent=2))
    if answer.status not in (200, 202):
        return 1
    if not args.wait:
        return 0
    run = client.wait_for_run(url, answer.body["id"], lambda: mint_token(settings, "read"), args.wait_timeout)
    print(json.dumps(run, indent=2))
    return 0 if run.get("status") == "succeeded" else 1


def _runs(args: argparse.Namespace) -> int:
    from service.cli import client

    settings = Settings.from_env()
    url = (args.url or settings.app_url).rstrip("/")
    runs = client.list_runs(
        url,
        mint_token(settings, "read"),
        job=args.job,
        status=args.status,
        slot=format_slot(args.slot) if args.slot else None,
        before=format_slot(args.before) if args.before else None,
        limit=args.limit,
    )
    if args.json:
        print(json.dumps(runs, indent=2))
    else:
        print(format_table(runs))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from service.cli import client

    settings = Settings.from_env()
    url = (args.url or settings.app_url).rstrip("/")
    for text in client.follow_log(url, args.run_id, lambda: mint_token(settings, "read"), args.follow):
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def format_table(runs: list[dict[str, Any]]) -> str:
    """Runs as an aligned text table for people: the id leads to `batch-trigger logs ID`."""
    columns = ("id", "job", "slot", "attempt", "status", "duration", "trigger", "instance", "error")
    rows = [
        [str(value if value is not None else "-")[:60] for value in (_cell(run, c) for c in columns)]
        for run in runs
    ]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines) if runs else "no runs"


def _cell(run: dict[str, Any], column: str) -> Any:
    if column != "duration":
        return run.get(column)
    if not run.get("started_at"):
        return None
    start = parse_slot(run["started_at"])
    end = parse_slot(run["finished_at"]) if run.get("finished_at") else utcnow()
    return _duration((end - start).total_seconds()) + ("" if run.get("finished_at") else "…")


def _duration(seconds: float) -> str:
    """A duration as people read it: 0.4s, 12s, 3m05s, 2h01m."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _keeper(args: argparse.Namespace) -> int:
    """The launcher (every batch of this instance) and the keeper's sweeps, until SIGTERM or SIGINT."""
    import signal
    import threading

    from service.logs import configure_logging
    from service.ops.keeper import run_forever
    from service.runs.supervisor import LauncherProcess

    settings = Settings.from_env()
    configure_logging(settings.log_level, instance=settings.instance_id)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    launcher = LauncherProcess()
    launcher.start()

    def should_stop() -> bool:
        # Asked between sweeps several times a second: a launcher that died is back within seconds.
        if not stop.is_set():
            launcher.keep_alive()
        return stop.is_set()

    try:
        run_forever(settings, should_stop)
    finally:
        # Its batches are stopped and recorded `interrupted`, and run again by a live instance.
        launcher.stop(settings.kill_grace_seconds + 15)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from service.dev.demo import run_demo

    return run_demo()
