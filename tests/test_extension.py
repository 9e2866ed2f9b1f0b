"""batch-trigger inside a user's own Flask app, under real gunicorn."""

from __future__ import annotations

from pathlib import Path

from service.cli import client
from tests.support.live import LiveService


def test_it_serves_the_host_apps_routes_and_ours_side_by_side(tmp_path: Path) -> None:
    with LiveService(tmp_path, app="tests.host_app:app") as service:
        assert client.request("GET", f"{service.url}/").body == {"app": "shop"}
        assert client.request("GET", f"{service.url}/healthz").body == {"app": "shop", "status": "fine"}
        assert client.request("GET", f"{service.url}/batch/readyz").status == 200
        answer = client.request("POST", f"{service.url}/batch/v1/jobs/count/runs", service.mint("count"), b"")
        assert answer.status == 202
        assert answer.headers["Location"] == f"/batch/v1/runs/{answer.body['id']}"
        run = client.request("GET", f"{service.url}/batch/v1/runs/{answer.body['id']}", service.read_token())
        assert run.status == 200
        ended = client.wait_for_run(f"{service.url}/batch", answer.body["id"], service.read_token, 30)
        assert ended["status"] == "succeeded"
        assert [line.split()[0] for line in service.executions("count")] == [answer.body["id"]]
        jobs = client.request("GET", f"{service.url}/batch/v1/jobs", service.read_token()).body["jobs"]
        assert {"daily", "monthly", "count"} <= {j["name"] for j in jobs}
