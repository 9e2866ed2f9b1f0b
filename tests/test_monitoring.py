"""What people alert on: the shipped Prometheus rules and Grafana dashboard against the metrics
the service exports, and those metrics under gunicorn (label sets from start, counts in time)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.ops.metrics import metrics, render
from tests.support.live import REPO, LiveService, scrape_metrics

RULES = REPO / "deploy" / "prometheus" / "batch-trigger-rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "batch-trigger-rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "batch-trigger-dashboard.json"
METRIC = re.compile(r"\bbatch_trigger_[a-z_]+")
# The TYPE line names a counter with its _total already; a histogram's samples add these.
_SUFFIXES = {"histogram": ["_bucket", "_sum", "_count"]}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/system-deps installs it)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)


def _exported() -> set[str]:
    """Every sample name the service's /metrics can carry."""
    metrics()
    names = set()
    for line in render()[0].decode().splitlines():
        if line.startswith("# TYPE batch_trigger_"):
            _, _, name, kind = line.split()
            names |= {name + suffix for suffix in _SUFFIXES.get(kind, [""])}
    return names


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_it_ships_rules_that_promtool_checks_and_whose_tests_pass() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_it_alerts_on_failing_overdue_lost_and_ledger_errors() -> None:
    text = RULES.read_text()
    alerts = re.findall(r"- alert: (\w+)", text)
    assert alerts == [
        "BatchTriggerJobFailing",
        "BatchTriggerJobOverdue",
        "BatchTriggerLostRuns",
        "BatchTriggerLedgerErrors",
    ]


def test_it_names_only_metrics_the_service_exports_in_the_rules_and_dashboard() -> None:
    exported = _exported()
    used = set(METRIC.findall(RULES.read_text()))
    for expr in _dashboard_expressions():
        used |= set(METRIC.findall(expr))
    assert used <= exported, used - exported
    for needed in (
        "batch_trigger_last_success_timestamp_seconds",
        "batch_trigger_last_failure_timestamp_seconds",
        "batch_trigger_lost_runs_total",
        "batch_trigger_ledger_errors_total",
        "batch_trigger_runs_total",
    ):
        assert needed in used, needed


def test_it_loads_the_dashboard_with_a_panel_per_question() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "batch-trigger" and len({p["id"] for p in dashboard["panels"]}) == len(
        dashboard["panels"]
    )
    titles = " ".join(panel["title"] for panel in dashboard["panels"])
    for topic in ("last success", "Failing", "Lost runs", "Ledger errors", "duration"):
        assert topic.lower() in titles.lower(), topic


@pytest.fixture(scope="module")
def slow_sweeps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """An instance whose keeper sweeps only every 40-60 s: counts must not wait for a sweep."""
    with LiveService(
        tmp_path_factory.mktemp("monitoring"), workers=2, HEARTBEAT_SECONDS="50", LEASE_SECONDS="120"
    ) as live:
        yield live


def _until(service: LiveService, ready: object, timeout: float = 15.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        seen = scrape_metrics(service)
        if ready(seen) or time.monotonic() > deadline:  # type: ignore[operator]
            return seen
        time.sleep(0.25)


def test_it_exports_every_jobs_series_at_zero_from_the_start(slow_sweeps: LiveService) -> None:
    series = [
        'batch_trigger_runs_total{job="count",status="succeeded"}',
        'batch_trigger_runs_total{job="boom",status="failed"}',
        'batch_trigger_lost_runs_total{job="count",status="abandoned"}',
        'batch_trigger_last_success_timestamp_seconds{job="daily"}',
        'batch_trigger_last_failure_timestamp_seconds{job="monthly"}',
    ]
    seen = _until(slow_sweeps, lambda s: all(name in s for name in series))
    assert {name: seen.get(name) for name in series} == dict.fromkeys(series, 0.0)
    # The shipped jobs have schedules: the overdue rule knows how long each may go without a success.
    assert seen.get('batch_trigger_job_success_interval_seconds{job="daily"}', 0) > 86_400


def test_it_counts_a_run_and_its_end_time_within_seconds_of_its_end(slow_sweeps: LiveService) -> None:
    ok = slow_sweeps.wait_final(slow_sweeps.post("count", slow_sweeps.mint("count")).body["id"])
    bad = slow_sweeps.wait_final(slow_sweeps.post("boom", slow_sweeps.mint("boom")).body["id"])
    assert ok["status"] == "succeeded" and bad["status"] == "failed"
    wanted = {
        'batch_trigger_runs_total{job="count",status="succeeded"}': 1.0,
        'batch_trigger_runs_total{job="boom",status="failed"}': 1.0,
    }
    seen = _until(slow_sweeps, lambda s: all(s.get(k) == v for k, v in wanted.items()))
    assert {k: seen.get(k) for k in wanted} == wanted
    success = seen['batch_trigger_last_success_timestamp_seconds{job="count"}']
    failure = seen['batch_trigger_last_failure_timestamp_seconds{job="boom"}']
    assert success == pytest.approx(_epoch(ok["finished_at"])) and failure == pytest.approx(
        _epoch(bad["finished_at"])
    )


def _epoch(text: str) -> float:
    from service.slots import parse_slot

    return parse_slot(text).timestamp()


def test_it_installs_promtool_with_the_ci_system_packages() -> None:
    assert "prometheus" in (REPO / ".ci" / "system-deps").read_text()
    assert Path(shutil.which("promtool") or "").name == "promtool"
