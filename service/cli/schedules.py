"""`batch-trigger jobs`, `schedules plan|apply`, `pause`, `resume`: schedules as code, for operators."""

from __future__ import annotations

import argparse
import getpass
import json
import re
from datetime import datetime, timedelta
from typing import Any

from service.config import Settings
from service.slots import parse_slot, utcnow
from service.web.auth import mint_token

DURATION = re.compile(r"(\d{1,6})([mhd])")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def add_commands(commands: Any) -> None:
    """Register the commands on the main parser's subparsers."""
    jobs = commands.add_parser("jobs", help="list jobs: schedule, next due, last run and success, paused")
    jobs.add_argument("--json", action="store_true", help="print the service's JSON instead of a table")
    _url(jobs)
    jobs.set_defaults(func=_jobs)

    schedules = commands.add_parser("schedules", help="sync the jobs' schedules to EventBridge Scheduler")
    schedules.add_argument("action", choices=["plan", "apply"], help="plan: show changes; apply: make them")
    schedules.add_argument("--group", default="batch-trigger", help="schedule group (default: batch-trigger)")
    schedules.add_argument("--function-arn", help="trigger Lambda (default: $TRIGGER_FUNCTION_ARN)")
    schedules.add_argument("--role-arn", help="the Scheduler's role (default: $SCHEDULER_ROLE_ARN)")
    schedules.add_argument(
        "--dead-letter-arn", help="SQS queue for firings that fail (default: $SCHEDULE_DEAD_LETTER_ARN)"
    )
    schedules.set_defaults(func=_schedules)

    pause = commands.add_parser("pause", help="pause a job fleet-wide: its firings are recorded skipped")
    pause.add_argument("job")
    pause.add_argument("--until", type=until_arg, help="resume by itself then: RFC 3339, or 30m, 2h, 1d")
    pause.add_argument("--reason", default="", help="why, for the history and Slack")
    _url(pause)
    pause.set_defaults(func=_pause)

    resume = commands.add_parser("resume", help="lift a job's pause")
    resume.add_argument("job")
    _url(resume)
    resume.set_defaults(func=_resume)


def until_arg(text: str) -> datetime:
    """`--until`: an RFC 3339 time, or a duration from now (`30m`, `2h`, `1d`)."""
    match = DURATION.fullmatch(text.strip())
    if match:
        return utcnow() + timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        return parse_slot(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or a duration: 30m, 2h, 1d)") from None


def service_url(args: argparse.Namespace, settings: Settings) -> str:
    """`--url`, else BATCH_TRIGGER_URL, without a trailing slash."""
    return str(args.url or settings.app_url).rstrip("/")


def fetch_jobs(url: str, settings: Settings) -> list[dict[str, Any]]:
    """GET /v1/jobs with a read token."""
    from service.cli import client

    answer = client.request("GET", f"{url}/v1/jobs", mint_token(settings, "read"))
    if answer.status != 200:
        raise OSError(f"GET /v1/jobs answered {answer.status}: {answer.body.get('message', answer.body)}")
    jobs: list[dict[str, Any]] = answer.body["jobs"]
    return jobs


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="service base URL (default: $BATCH_TRIGGER_URL)")


def _jobs(args: argparse.Namespace) -> int:
    from service.schedules.overview import table

    settings = Settings.from_env()
    jobs = fetch_jobs(service_url(args, settings), settings)
    print(json.dumps(jobs, indent=2) if args.json else table(jobs))
    return 0


def _schedules(args: argparse.Namespace) -> int:
    import boto3

    from service.jobs import load_jobs
    from service.schedules.sync import Target, apply, desired, plan, read_group, render

    settings = Settings.from_env()
    target = Target.resolve(args.function_arn, args.role_arn, args.dead_letter_arn)
    registry = load_jobs(settings.batch_modules, settings.timezone)
    now = utcnow()
    scheduled = [(spec.name, spec.timetable(settings.timezone)) for spec in registry if spec.schedule]
    wanted = desired([(name, schedule) for name, schedule in scheduled if schedule is not None], target, now)
    client = boto3.client("scheduler")
    result = plan(args.group, wanted, read_group(client, args.group))
    print(render(result))
    if args.action == "apply" and not result.empty:
        apply(client, result, now)
        print(f"Apply complete: group {args.group!r} matches the registry.")
    return 0


def _pause(args: argparse.Namespace) -> int:
    body = {"reason": args.reason, "until": args.until.isoformat() if args.until else None}
    return _post(args, "pause", body)


def _resume(args: argparse.Namespace) -> int:
    return _post(args, "resume", {})


def _post(args: argparse.Namespace, action: str, body: dict[str, Any]) -> int:
    """POST /v1/jobs/JOB/{pause,resume} with a single-use token of the job, naming who asks."""
    from service.cli import client

    settings = Settings.from_env()
    # `iss` is who paused, in the ledger and on Slack: the operator's login on this machine.
    token = mint_token(settings, args.job, issuer=f"cli:{_who()}")
    url = f"{service_url(args, settings)}/v1/jobs/{args.job}/{action}"
    answer = client.request("POST", url, token, json.dumps(body).encode())
    print(json.dumps({"http_status": answer.status, **answer.body}, indent=2))
    return 0 if answer.status == 200 else 1


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "unknown"

