"""docs/runbook.md's curl and CLI blocks, run verbatim with bash against the live service."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.support.live import REPO, LiveService

RUNBOOK = REPO / "docs" / "runbook.md"
VENV_BIN = Path(sys.executable).parent
# Every marked block, each run by a test below; a new one needs a test before it is listed.
EXERCISED = {
    "runbook-retrigger",
    "runbook-retrigger-force",
    "runbook-retrigger-slot",
    "runbook-backfill",
    "runbook-rotate-keyring",
    "runbook-rotate-check",
    "runbook-read",
    "runbook-drain",
}
_MARKED = re.compile(r"<!-- (runbook-[a-z-]+):[^>]*-->\s*```bash\n(.*?)```\s*<!-- /\1 -->", re.S)
_FENCE = re.compile(r"```bash\n(.*?)```", re.S)
# A command that reaches the service: such a line must sit in a block a test runs.
_TALKS_TO_SERVICE = re.compile(r"\bbatch-trigger (?:token|trigger|runs)\b|\bcurl\s")


def _blocks() -> dict[str, str]:
    return {name: textwrap.dedent(body) for name, body in _MARKED.findall(RUNBOOK.read_text())}


def _env(url: str, secret: str, **extra: str) -> dict[str, str]:
    """What the runbook's "Before you start" sets, pointed at a live service."""
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "TRIGGER_SECRET": secret,
        "BATCH_TIMEZONE": "Asia/Tokyo",
        "BATCH_TRIGGER_URL": url,
        "HOME": os.environ.get("HOME", "/tmp"),
        **extra,
    }


def _run(script: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _answers(output: str) -> list[Any]:
    """Each JSON value that starts a line (curl's one-line bodies, the CLI's indented ones)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(output):
        if output[at] in "{[" and (at == 0 or output[at - 1] == "\n"):
            value, at = decoder.raw_decode(output, at)
            found.append(value)
        else:
            at += 1
    return found


def _block(service: LiveService, name: str, **extra: str) -> list[Any]:
    return _answers(_run(_blocks()[name], _env(service.url, service.secret, **extra)))


def _settle(service: LiveService, job: str) -> None:
    """Wait until no run of `job` is accepted or running (the shipped jobs forbid overlap)."""
    for run in service.runs(job):
        if run["status"] in ("accepted", "running"):
            service.wait_final(run["id"])


def test_it_retriggers_a_date_then_answers_it_as_a_duplicate_and_forces_a_second_attempt(
    service: LiveService,
) -> None:
    [first] = _block(service, "runbook-retrigger")
    assert (first["job"], first["slot"], first["attempt"]) == ("daily", "2026-11-22T15:00:00Z", 1)
    assert first["status"] == "accepted" and "duplicate" not in first  # 202: a new run
    assert service.wait_final(first["id"])["status"] == "succeeded"
    [again] = _block(service, "runbook-retrigger")
    assert again["duplicate"] is True and again["id"] == first["id"]  # 200: nothing new started
    [forced] = _block(service, "runbook-retrigger-force")
    assert (forced["slot"], forced["attempt"], forced["status"]) == (first["slot"], 2, "accepted")
    assert "duplicate" not in forced and forced["id"] != first["id"]
    assert service.wait_final(forced["id"])["status"] == "succeeded"


def test_it_retriggers_an_exact_slot_and_waits_for_its_outcome(service: LiveService) -> None:
    posted, waited, final = _block(service, "runbook-retrigger-slot")
    assert (posted["job"], posted["slot"]) == ("monthly", "2026-11-30T15:00:00Z")
    assert posted["status"] == "accepted" and "duplicate" not in posted
    assert (waited["http_status"], waited["duplicate"], waited["id"]) == (200, True, posted["id"])
    assert (final["id"], final["status"]) == (posted["id"], "succeeded")


def test_it_backfills_three_days_one_after_another_and_only_once(service: LiveService) -> None:
    _settle(service, "daily")
    days = ["2026-11-30T15:00:00Z", "2026-12-01T15:00:00Z", "2026-12-02T15:00:00Z"]
    output = _run(_blocks()["runbook-backfill"], _env(service.url, service.secret))
    answers = _answers(output)
    posted, finals = answers[0::2], answers[1::2]
    assert [a["http_status"] for a in posted] == [202, 202, 202]
    assert [f["slot"] for f in finals] == days
    assert [f["status"] for f in finals] == ["succeeded"] * 3  # none skipped by the overlap policy
    assert all(day in output for day in days)  # the history table at the end lists them
    before = service.runs("daily")
    again = _answers(_run(_blocks()["runbook-backfill"], _env(service.url, service.secret)))
    assert [a["http_status"] for a in again[0::2]] == [200, 200, 200]
    assert [(r["id"], r["status"]) for r in service.runs("daily")] == [(r["id"], r["status"]) for r in before]
    ran = [r for r in before if r["slot"] in days]
    assert sorted((r["slot"], r["attempt"]) for r in ran) == [(day, 1) for day in days]


def test_it_checks_the_new_key_on_the_fleet_before_the_lambda_switches(
    service: LiveService, tmp_path: Path
) -> None:
    old, new = secrets.token_hex(32), secrets.token_hex(32)
    keyring_out = _run(_blocks()["runbook-rotate-keyring"] + 'printf "%s" "$KEYRING"\n',
                       _env(service.url, service.secret, OLD_SECRET=old, NEW_SECRET=new))
    keyring = json.loads(keyring_out)
    assert keyring == {"default": old, "k2": new}
    with LiveService(tmp_path, workers=2, TRIGGER_KEYS=keyring_out) as rotating:
        check = _run(_blocks()["runbook-rotate-check"], _env(rotating.url, old, NEW_SECRET=new))
        [accepted] = _answers(check)
        assert {"daily", "monthly"} <= {job["name"] for job in accepted["jobs"]}
        # Tokens without a kid, as the Lambda still sends them, verify with the `default` key.
        [run] = _answers(_run(_blocks()["runbook-retrigger"], _env(rotating.url, old)))
        assert run["status"] == "accepted"
        rotating.wait_final(run["id"])
    # A fleet that lacks the new key answers the same check 401.
    [refused] = _block(service, "runbook-rotate-check", NEW_SECRET=new)
    assert refused["error"] == "token_invalid"


def test_it_marks_every_runbook_block_that_talks_to_the_service() -> None:
    text = RUNBOOK.read_text()
    assert set(_blocks()) == EXERCISED
    marked = {body for _, body in _MARKED.findall(text)}
    for body in _FENCE.findall(text):
        commands = re.sub(r"(^|\s)#.*", "", body)
        if body not in marked:
            assert not _TALKS_TO_SERVICE.search(commands), f"untested service command in:\n{body}"


def test_it_reads_with_a_read_token_and_with_a_jobs_own_token(service: LiveService) -> None:
    everything, own = _block(service, "runbook-read")
    assert isinstance(everything["runs"], list) and isinstance(own["runs"], list)
    assert {run["job"] for run in own["runs"]} <= {"daily"}


def test_it_drains_the_instance_it_asks_once(tmp_path: Path) -> None:
    with LiveService(tmp_path, workers=2) as instance:
        [drained] = _block(instance, "runbook-drain", INSTANCE_URL=instance.url)
        assert (drained["instance"], drained["draining"]) == ("test-1", True)
        assert instance.post("count", instance.mint("count")).body["error"] == "draining"
