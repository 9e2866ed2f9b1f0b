"""Single use lasts as long as a token verifies: a used `jti` is remembered until `exp` + leeway.

In the in-process tier on both ledgers, with freezegun moving the clock past `exp` but inside the
verifier's 30 s leeway, and pruning forced on every token check.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from freezegun import freeze_time

from service.errors import TokenReplayed
from service.ledger import Ledger
from service.web.auth import TokenVerifier
from tests.support.inprocess import InProcess, error_of

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def test_it_remembers_a_used_drain_token_until_it_no_longer_verifies(tmp_path: Path, ledger_url: str) -> None:
    with freeze_time(T0) as clock:
        app = InProcess(tmp_path, LEDGER_URL=ledger_url)
        ledger: Ledger = app.app.extensions["batch_trigger"].ledger
        ledger.prune_probability = 1.0  # every token check prunes what it may
        token = app.signed(sub="drain", instance="test-1", exp=int(T0.timestamp()) + 10)
        assert app.post("/v1/instance/drain", token).status_code == 200
        clock.tick(timedelta(seconds=25))  # past exp, inside the leeway: the token still verifies
        ledger.consume_token("another-token-id", T0 + timedelta(minutes=5), T0 + timedelta(seconds=25))
        assert error_of(app.post("/v1/instance/drain", token)) == (401, "token_replayed")
        clock.tick(timedelta(seconds=20))  # past exp + leeway: the token no longer verifies at all
        assert error_of(app.post("/v1/instance/drain", token)) == (401, "token_expired")


def test_it_keeps_a_used_token_record_until_its_time_and_prunes_it_after(ledger: Ledger) -> None:
    until = T0 + timedelta(seconds=90)
    ledger.prune_probability = 1.0
    ledger.consume_token("jti-kept-then-pruned", until, T0)
    ledger.consume_token("jti-prunes-before", T0 + timedelta(hours=1), until - timedelta(seconds=1))
    try:
        ledger.consume_token("jti-kept-then-pruned", until, until - timedelta(seconds=1))
        raise AssertionError("a used token was forgotten before its time")
    except TokenReplayed:
        pass
    ledger.consume_token("jti-prunes-after", T0 + timedelta(hours=1), until + timedelta(seconds=1))
    ledger.consume_token("jti-kept-then-pruned", until + timedelta(seconds=90), until + timedelta(seconds=1))


def test_it_records_exp_plus_the_leeway_as_the_time_a_token_is_remembered(inprocess: InProcess) -> None:
    now = int(time.time())
    claims = {"aud": "batch-trigger", "sub": "read", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, inprocess.secret, algorithm="HS256")
    verified = TokenVerifier(inprocess.settings).verify(f"Bearer {token}", trigger=False)
    assert verified.remember_until == datetime.fromtimestamp(now + 60 + 30, UTC)
