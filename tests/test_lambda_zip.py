"""The deployable zip: built as `make lambda-zip` builds it, unpacked, run by a clean Python."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.lambda_support.lambda_env import REPO, load_event
from tests.support.live import LiveService
from tests.support.slack import SlackReceiver

# What the Lambda runtime does, minus AWS: put the task root on the path, import the handler
# by name, call it with an event and a context. `-I -S` keeps every site-packages away.
BOOTSTRAP = """
import json, sys
sys.path.insert(0, sys.argv[1])
import lambda_trigger.handler as entry

class Context:
    aws_request_id = "zip-test"
    def get_remaining_time_in_millis(self):
        return 30000

report = {"result": entry.handler(json.loads(sys.argv[2]), Context())}
try:
    entry.handler(json.loads(sys.argv[3]), Context())
except Exception as exc:
    report["failure"] = type(exc).__name__
import jwt, slack_sdk
report["from"] = sorted({jwt.__file__.split("/jwt/")[0], slack_sdk.__file__.split("/slack_sdk/")[0]})
try:
    import boto3
    report["boto3"] = boto3.__file__
except ImportError:
    report["boto3"] = None
report["service"] = "service" in sys.modules
print(json.dumps(report))
"""


def build(output: Path) -> Path:
    """Run the build script exactly as the Makefile target does."""
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "build_lambda_zip.py"), "--output", str(output)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return output


def test_it_builds_a_zip_of_the_handler_and_its_dependencies_without_boto3(tmp_path: Path) -> None:
    with zipfile.ZipFile(build(tmp_path / "lambda.zip")) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"lambda_trigger", "jwt", "slack_sdk"}
    assert "lambda_trigger/handler.py" in names
    # Bytecode for exactly the sources shipped: Lambda's read-only task root could not cache it.
    sources = [name for name in names if name.endswith(".py")]
    assert sorted(name for name in names if name.endswith(".pyc")) == sorted(
        importlib.util.cache_from_source(name) for name in sources
    )


def test_it_runs_from_the_unpacked_zip_in_a_clean_python(
    tmp_path: Path, service: LiveService, slack: SlackReceiver
) -> None:
    task_root = tmp_path / "task"
    task_root.mkdir()
    with zipfile.ZipFile(build(tmp_path / "lambda.zip")) as archive:
        archive.extractall(task_root)
    env = {"APP_URL": service.url, "TRIGGER_SECRET": service.secret, "SLACK_WEBHOOK_URL": slack.url}
    before = len(slack.messages)
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            BOOTSTRAP,
            str(task_root),
            json.dumps(load_event("scheduled-monthly")),
            json.dumps(load_event("unknown-rule")),
        ],
        env=env,
        cwd=task_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["result"]["job"] == "monthly" and report["result"]["duplicate"] is False
    assert report["failure"] == "TriggerFailed"
    assert report["from"] == [str(task_root)] and report["boto3"] is None
    assert report["service"] is False
    assert "unknown_job" in slack.wait_for(before + 1)[before]["text"]
    assert service.wait_final(report["result"]["run_id"])["status"] == "succeeded"
