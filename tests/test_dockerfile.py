"""The Dockerfile's commands are live: its CMD serves the installed package, its HEALTHCHECK probes it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from service.cli import client
from service.dev.devserver import free_port
from tests.support.live import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
VENV_BIN = Path(sys.executable).parent


def _instruction(name: str) -> str:
    lines = [line for line in DOCKERFILE.splitlines() if line.startswith(f"{name} ")]
    return lines[-1][len(name) + 1 :]


def _exec_form(text: str) -> list[str]:
    form: list[str] = json.loads(text[text.index("[") :])
    return form


def test_it_runs_as_a_non_root_user() -> None:
    user = _instruction("USER")
    assert user.split(":")[0] not in ("root", "0")


def test_it_serves_the_api_with_the_images_cmd_and_passes_its_healthcheck(tmp_path: Path) -> None:
    command = _exec_form(_instruction("CMD"))
    assert command[0] == "gunicorn"
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "PORT": str(port),
        # Tests bind loopback only; the image binds 0.0.0.0:$PORT.
        "BIND": f"127.0.0.1:{port}",
        "TRIGGER_SECRET": "x" * 40,
        "LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "ARTEFACT_DIR": str(tmp_path / "artefacts"),
        "RUN_DIR": str(tmp_path / "run"),
        "WEB_CONCURRENCY": "2",
        "DRAIN_NOTICE_SECONDS": "0",
    }
    # Run from a directory outside the repository: the command must work from the installed package.
    process = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                if client.request("GET", f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("the image's CMD did not serve /readyz")
        health = _exec_form(_instruction("HEALTHCHECK"))
        health[0] = sys.executable if health[0] == "python" else health[0]
        done = subprocess.run(health, env={**env, "PYTHONPATH": ""}, cwd=tmp_path, timeout=10)
        assert done.returncode == 0
        assert list(home.iterdir()) == [], "nothing may be written under $HOME (control socket)"
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def test_it_fails_the_healthcheck_when_nothing_answers(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "service.healthcheck"], env=env, capture_output=True, timeout=10
    )
    assert done.returncode == 1


def test_it_keeps_secrets_and_local_files_out_of_the_image_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= set(ignored)
    assert not re.search(r"(?i)secret\s*=", DOCKERFILE)
