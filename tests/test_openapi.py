"""openapi.yaml against the live service: no 500 and no answer outside the spec, with and without tokens."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case

from service.config import Settings
from service.web.auth import mint_drain_token, mint_token
from tests.support.live import LiveService, unique_slot
from tests.support.slack import SlackReceiver

OPENAPI = Path(__file__).resolve().parents[1] / "openapi.yaml"
SECRET = "openapi-test-secret-0123456789abcdef0123"
# Registered in the live service (tests.jobs and the shipped jobs), so that triggers get past 404
# to 202, 200, 409 and 403. `slow` forbids overlap and runs 3 s, so other slots of it answer 409.
REGISTERED = ("count", "slow", "parallel", "boom", "daily", "monthly")
CONFIG = {
    "generation": {"max-examples": 80, "mode": "all"},
    "phases": {"stateful": {"enabled": False}},
    "request-timeout": 10,
}


class FreshTokens:
    """Credentials per case: mostly a freshly minted valid token, sometimes none or another job's."""

    def __init__(self, secret: str) -> None:
        # Cases of the examples phase are built when pytest collects, before any service runs:
        # tokens are minted from the secret the live service is then started with.
        self.settings = Settings.from_env({"TRIGGER_SECRET": secret})
        # A slot several triggers share, so duplicates (200) are explored as well as new runs (202).
        self.shared_slot = datetime(2031, 6, 1, tzinfo=UTC) + timedelta(minutes=len(REGISTERED))

    def header(self, case: Case) -> str | None:
        """The Authorization value for this case (None: send none, the token_missing path)."""
        # Chosen from the case's own data, so a failing example replays with the same credentials.
        roll = zlib.crc32(repr((case.method, case.path_parameters, case.query, case.body)).encode()) % 20
        if roll == 0:
            return None
        if case.operation.path == "/v1/instance/drain":
            # Never this instance's own drain token: a drained service would answer every later
            # trigger 503. Another instance's (403), one without `instance` (401), a read token (403).
            tokens = (
                lambda: mint_drain_token(self.settings, "i-another"),
                lambda: mint_token(self.settings, "drain"),
                lambda: mint_token(self.settings, "read"),
            )
            return f"Bearer {tokens[roll % 3]()}"
        if case.method != "POST":
            # Mostly `read`; sometimes a job's token (its own runs only) or this instance's drain
            # token (its /v1/instance only): the other scopes' 403s are explored too.
            if roll == 1:
                return f"Bearer {mint_token(self.settings, 'count', lifetime=300)}"
            if roll == 2:
                return f"Bearer {mint_drain_token(self.settings, 'test-1')}"
            return f"Bearer {mint_token(self.settings, 'read', lifetime=300)}"
        job = str((case.path_parameters or {}).get("job", ""))
        if roll == 1:
            job = "count" if job != "count" else "parallel"  # another job's token: 403
        slot = self.shared_slot if roll % 3 == 0 else unique_slot()
        return f"Bearer {mint_token(self.settings, job, slot=slot, lifetime=300)}"


TOKENS = FreshTokens(SECRET)
schema = schemathesis.openapi.from_path(OPENAPI, config=schemathesis.Config.from_dict(CONFIG))


# No caching (refresh_interval=None): every case gets its own single-use token.
@schema.auth(refresh_interval=None)
class _FreshToken:
    def get(self, case: Case, context: Any) -> str | None:
        return TOKENS.header(case)

    def set(self, case: Case, data: str | None, context: Any) -> None:
        case.headers = dict(case.headers or {})
        case.headers.pop("Authorization", None)
        if data is not None:
            case.headers["Authorization"] = data


@schema.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    """Triggers name registered jobs half of the time, so answers beyond 404 are explored."""
    if context.operation is not None and context.operation.path == "/v1/jobs/{job}/runs":
        return st.one_of(strategy, st.fixed_dictionaries({"job": st.sampled_from(REGISTERED)}))
    return strategy


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, slack: SlackReceiver) -> Iterator[LiveService]:
    """The service under gunicorn on a fresh SQLite ledger, holding the secret the cases are signed with."""
    with LiveService(tmp_path_factory.mktemp("openapi"), slack.url, TRIGGER_SECRET=SECRET) as service:
        yield service


@schema.parametrize()
def test_every_answer_conforms(case: Case, live: LiveService) -> None:
    """No 500, and every status code, header and body is the one openapi.yaml documents."""
    response = case.call_and_validate(base_url=live.url)
    assert response.status_code < 500
