"""`batch-trigger backfill`: trigger the slots of a range that have no succeeded run, oldest first.

The slots come from the job's schedule as the service reads it (`GET /v1/jobs`), or from `--every`
or `--slot`. Each slot is looked up in the ledger first: one with a succeeded run is left alone,
one with a run in progress is waited for, one whose runs all failed or were skipped is run again
(`force`), so a second backfill of the same range finds nothing to do.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.config import Settings
from service.schedules import Schedule, ScheduleError
from service.slots import format_slot, parse_slot
from service.web.auth import mint_token

#: A range with more slots than this is refused: narrow it (a minutely job over a year is 525,600).
MAX_SLOTS = 10_000


@dataclass(frozen=True)
class Slot:
    """One slot of the range and what the ledger holds for it."""

    slot: datetime
    state: str  # "succeeded", "running", "missing" (no run) or "retry" (only runs that did not succeed)


def add_command(commands: Any) -> None:
    """Register `backfill` on the main parser's subparsers."""
    backfill = commands.add_parser("backfill", help="trigger a range's slots that have no succeeded run")
    backfill.add_argument("job")
    backfill.add_argument("--from", dest="start", required=True, type=_time_arg, help="first slot (RFC 3339)")
    backfill.add_argument("--to", dest="end", required=True, type=_time_arg, help="last slot (RFC 3339)")
    backfill.add_argument("--every", help="a schedule expression, for a job without a schedule")
    backfill.add_argument("--slot", action="append", type=_time_arg, default=[], help="one slot (repeatable)")
    backfill.add_argument("--dry-run", action="store_true", help="list what would run; run nothing")
    backfill.add_argument("--concurrency", type=int, default=1, help="runs in flight at once (default 1)")
    backfill.add_argument("--wait-timeout", type=float, default=3600, metavar="SECONDS")
    backfill.add_argument("--url", help="service base URL (default: $BATCH_TRIGGER_URL)")
    backfill.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The command: plan the range, print it, trigger what is missing; 0 when every slot succeeded."""
    from service.cli.schedules import fetch_jobs, service_url

    if args.concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    settings = Settings.from_env()
    url = service_url(args, settings)
    job = next((j for j in fetch_jobs(url, settings) if j["name"] == args.job), None)
    if job is None:
        raise ValueError(f"the service has no job named {args.job!r}")
    if job.get("paused"):
        raise ValueError(f"{args.job} is paused: its firings would be skipped; resume it first")
    slots = _slots(args, job)
    found = [_look_up(url, settings, args.job, slot) for slot in slots]
    todo = [s for s in found if s.state != "succeeded"]
    for entry in found:
        verb = "would trigger" if args.dry_run and entry in todo else "trigger" if entry in todo else "skip"
        print(f"{format_slot(entry.slot)}  {entry.state:<9}  {verb}")
    print(f"{len(found)} slot(s) in range, {len(found) - len(todo)} already succeeded, {len(todo)} to run")
    if args.dry_run or not todo:
        return 0
    with ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(lambda s: _run_slot(url, settings, args, s), todo))
    failed = [r for r in results if r.get("status") != "succeeded"]
    print(f"backfill: {len(results) - len(failed)} succeeded, {len(failed)} did not")
    return 1 if failed else 0


def _slots(args: argparse.Namespace, job: dict[str, Any]) -> list[datetime]:
    if args.start > args.end:
        raise ValueError("--from is after --to")
    if args.slot:
        return sorted(s for s in set(args.slot) if args.start <= s <= args.end)
    text = args.every or job.get("schedule")
    if not text:
        raise ValueError(f"{args.job} has no schedule: name its slots with --every EXPR or --slot T")
    try:
        schedule = Schedule.parse(text, job.get("timezone") or "UTC")
    except ScheduleError as exc:
        raise ValueError(str(exc)) from None
    slots = schedule.slots_between(args.start, args.end, limit=MAX_SLOTS + 1)
    if len(slots) > MAX_SLOTS:
        raise ValueError(f"more than {MAX_SLOTS} slots in that range: narrow --from/--to")
    return slots


def _look_up(url: str, settings: Settings, job: str, slot: datetime) -> Slot:
    from service.cli import client

    runs = client.list_runs(url, mint_token(settings, "read"), job=job, slot=format_slot(slot), limit=100)
    statuses = {run["status"] for run in runs}
    if "succeeded" in statuses:
        return Slot(slot, "succeeded")
    if statuses & {"accepted", "running"}:
        return Slot(slot, "running")
    return Slot(slot, "retry" if runs else "missing")


def _run_slot(url: str, settings: Settings, args: argparse.Namespace, entry: Slot) -> dict[str, Any]:
    """Trigger one slot (forced only when earlier runs of it did not succeed) and wait for its end."""
    from service.cli import client

    token = mint_token(settings, args.job, slot=entry.slot, force=entry.state == "retry")
    answer = client.trigger(url, args.job, token)
    if answer.status not in (200, 202) or "id" not in answer.body:
        print(f"{format_slot(entry.slot)}  refused: HTTP {answer.status} {json.dumps(answer.body)[:200]}")
        return {"status": f"http {answer.status}"}
    run = client.wait_for_run(url, answer.body["id"], lambda: mint_token(settings, "read"), args.wait_timeout)
    print(f"{format_slot(entry.slot)}  run {run['id']}  {run['status']}", file=sys.stdout, flush=True)
    return run



def _time_arg(text: str) -> datetime:
    try:
        return parse_slot(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
