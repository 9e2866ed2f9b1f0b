"""slowhttptest, an attacker's tool, against a live instance in each of its slow-client modes: its
hundreds of connections starve no worker, `/healthz` answers throughout.

Slow headers (slowloris) and slow bodies (R-U-Dead-Yet) are buffered by the web worker until the
request is whole; slow reads (a tiny receive window, one byte read every few seconds) used to hold
a worker in gunicorn's graceful close for 2 s per connection, which took a two-worker instance
down (`service.web.worker`). slowhttptest comes from Debian's package (`.ci/system-deps`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from service.cli import client
from tests.support.live import LiveService

ATTACKS = {
    "slow headers": ["-H", "-i", "2"],
    "slow body": ["-B", "-i", "2", "-s", "100000"],
    "slow read": ["-X", "-k", "1", "-n", "3", "-w", "1", "-y", "3", "-z", "1"],
}
CONNECTIONS = 400


def _attack_connections(port: int) -> int:
    """Client-side TCP sockets connected to `port` on this host (/proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if int(line.split()[2].split(":")[1], 16) == port)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_slow_client_attack_starves_no_worker(tmp_path: Path, attack: str) -> None:
    tool = shutil.which("slowhttptest")
    assert tool, "slowhttptest is missing: `bash .ci/system-deps` (as root) installs it"
    with LiveService(tmp_path, workers=2) as live:
        url = f"{live.url}/healthz"
        # CONNECTIONS at 200 a second, for 15 s; its own probe's timeout 3 s (unused here).
        command = [tool, *ATTACKS[attack], "-u", url, "-c", str(CONNECTIONS), "-r", "200", "-l", "15"]
        command += ["-p", "3"]
        attacker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while _attack_connections(live.port) < CONNECTIONS // 2:  # the attack holds its connections
                assert attacker.poll() is None and time.monotonic() < deadline, "the attack never got going"
                time.sleep(0.1)
            statuses = []
            while attacker.poll() is None and len(statuses) < 25:
                try:
                    statuses.append(client.request("GET", url, timeout=5).status)
                except OSError as exc:  # no answer within 5 s: the workers are held
                    statuses.append(repr(exc))
                time.sleep(0.2)
        finally:
            attacker.kill()
            attacker.wait()
    assert len(statuses) >= 5, "the attack ended before it was probed"
    assert set(statuses) == {200}, statuses
