"""The trigger endpoint's contract under real gunicorn: every answer of the POST row."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.ledger import open_ledger
from service.slots import utcnow
from tests.support.live import LiveService, dumps, format_slot, unique_slot


def _claims(service: LiveService, job: str = "count", **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "test",
        "aud": "batch-trigger",
        "sub": job,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        "slot": format_slot(unique_slot()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(
    service: LiveService, claims: dict[str, object], key: str | None = None, alg: str = "HS256"
) -> str:
    return jwt.encode(claims, key or service.secret, algorithm=alg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _error(answer: object) -> str:
    return str(getattr(answer, "body", {}).get("error"))


def test_it_answers_202_with_the_run_and_its_location(service: LiveService) -> None:
    answer = service.post("count", service.mint("count"))
    assert answer.status == 202
    assert answer.body["status"] == "accepted" and answer.body["attempt"] == 1
    assert answer.headers["Location"] == f"/v1/runs/{answer.body['id']}"
    assert service.wait_final(answer.body["id"])["status"] == "succeeded"


def test_it_answers_200_duplicate_with_the_same_run_for_a_delivered_slot(service: LiveService) -> None:
    slot = unique_slot()
    first = service.post("count", service.mint("count", slot))
    again = service.post("count", service.mint("count", slot))
    assert (first.status, again.status) == (202, 200)
    assert again.body["duplicate"] is True and again.body["id"] == first.body["id"]


def test_it_treats_the_same_instant_in_another_offset_as_the_same_slot(service: LiveService) -> None:
    first = service.post("count", service.mint("count", "2031-05-01T00:00:00+09:00"))
    again = service.post("count", service.mint("count", "2031-04-30T15:00:00Z"))
    assert again.status == 200 and again.body["id"] == first.body["id"]
    assert first.body["slot"] == "2031-04-30T15:00:00Z"


def test_it_opens_the_next_attempt_on_force_once_the_slot_finished(service: LiveService) -> None:
    slot = unique_slot()
    first = service.post("count", service.mint("count", slot))
    service.wait_final(first.body["id"])
    forced = service.post("count", service.mint("count", slot, force=True))
    assert forced.status == 202 and forced.body["attempt"] == 2


def test_it_answers_409_overlap_and_records_a_skipped_run(service: LiveService, slack: object) -> None:
    running = service.post("slow", service.mint("slow", params={"seconds": 2}))
    assert running.status == 202
    other = service.post("slow", service.mint("slow"))
    assert other.status == 409 and _error(other) == "overlap"
    skipped = service.get(f"/v1/runs/{other.body['run']['id']}").body
    assert skipped["status"] == "skipped" and "overlap" in skipped["error"]
    assert service.wait_final(running.body["id"])["status"] == "succeeded"


def test_it_answers_a_skipped_slot_as_a_duplicate_later(service: LiveService) -> None:
    running = service.post("slow", service.mint("slow", params={"seconds": 1}))
    slot = unique_slot()
    assert service.post("slow", service.mint("slow", slot)).status == 409
    service.wait_final(running.body["id"])
    later = service.post("slow", service.mint("slow", slot))
    assert later.status == 200 and later.body["status"] == "skipped" and later.body["duplicate"] is True


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'"text"', b"{", b"[" * 5000])
def test_it_answers_400_malformed_for_a_body_that_is_not_a_json_object(
    service: LiveService, body: bytes
) -> None:
    answer = service.post("count", service.mint("count"), body)
    assert (answer.status, _error(answer)) == (400, "malformed")


def test_it_accepts_an_empty_body(service: LiveService) -> None:
    assert service.post("count", service.mint("count"), b"").status == 202


def test_it_answers_413_for_a_body_too_large(service: LiveService) -> None:
    answer = service.post("count", service.mint("count"), dumps({"pad": "x" * 70_000}))
    assert (answer.status, _error(answer)) == (413, "too_large")


def test_it_answers_403_when_the_token_is_for_another_job(service: LiveService) -> None:
    answer = service.post("count", service.mint("boom"))
    assert (answer.status, _error(answer)) == (403, "job_mismatch")


def test_it_answers_404_for_an_unknown_job(service: LiveService) -> None:
    answer = service.post("weekly", service.mint("weekly"))
    assert (answer.status, _error(answer)) == (404, "unknown_job")


def test_it_answers_401_token_missing_without_a_bearer_token(service: LiveService) -> None:
    assert _error(service.post("count", None)) == "token_missing"
    from service.cli import client

    answer = client.request("POST", f"{service.url}/v1/jobs/count/runs", None, b"{}")
    assert answer.status == 401


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


TOKEN_FAILURES = {
    "bad signature": lambda s: _signed(s, _claims(s), key="another-secret-that-is-long-enough-1234"),
    "alg none": lambda s: jwt.encode(_claims(s), None, algorithm="none"),
    "alg outside the allowlist (HS512)": lambda s: _signed(s, _claims(s), alg="HS512"),
    "alg outside the allowlist (RS256)": lambda s: jwt.encode(_claims(s), _rsa_pem(), algorithm="RS256"),
    "issued in the future": lambda s: _signed(
        s, _claims(s, iat=int(time.time()) + 120, exp=int(time.time()) + 180)
    ),
    "wrong audience": lambda s: _signed(s, _claims(s, aud="another-service")),
    "lifetime too long": lambda s: _signed(s, _claims(s, iat=int(time.time()), exp=int(time.time()) + 301)),
    "no slot": lambda s: _signed(s, _claims(s, slot=None)),
    "slot without offset": lambda s: _signed(s, _claims(s, slot="2026-11-22T15:00:00")),
    "no jti": lambda s: _signed(s, _claims(s, jti=None)),
    "unknown kid": lambda s: jwt.encode(_claims(s), s.secret, algorithm="HS256", headers={"kid": "old"}),
    "not a JWT": lambda s: "not.a.jwt",
    "params not an object": lambda s: _signed(s, _claims(s, params=[1])),
    "header nested past the parser's depth": lambda s: _b64(b"[" * 5000) + ".e30.sig",
    "slot beyond UTC's range": lambda s: _signed(s, _claims(s, slot="0001-01-01T00:00:00+01:00")),
    "slot in year 999": lambda s: _signed(s, _claims(s, slot="0999-06-05T00:00:00Z")),
    "slot in the basic format": lambda s: _signed(s, _claims(s, slot="20260605T000000Z")),
    "slot as an ISO week date": lambda s: _signed(s, _claims(s, slot="2026-W23-5T00:00:00Z")),
    "exp as a string": lambda s: _signed(s, _claims(s, exp=str(int(time.time()) + 60))),
}


@pytest.mark.parametrize("case", sorted(TOKEN_FAILURES))
def test_it_answers_401_token_invalid(service: LiveService, case: str) -> None:
    answer = service.post("count", TOKEN_FAILURES[case](service))
    assert (answer.status, _error(answer)) == (401, "token_invalid"), answer.body
    assert service.secret not in str(answer.body)


def test_it_answers_401_token_expired(service: LiveService) -> None:
    now = int(time.time())
    answer = service.post("count", _signed(service, _claims(service, iat=now - 200, exp=now - 60)))
    assert (answer.status, _error(answer)) == (401, "token_expired")


def test_it_accepts_a_token_within_the_clock_leeway(service: LiveService) -> None:
    now = int(time.time())
    answer = service.post("count", _signed(service, _claims(service, iat=now + 20, exp=now + 80)))
    assert answer.status == 202


def test_it_answers_401_token_replayed_for_a_second_use(service: LiveService) -> None:
    token = service.mint("count")
    assert service.post("count", token).status == 202
    answer = service.post("count", token)
    assert (answer.status, _error(answer)) == (401, "token_replayed")


def test_it_refuses_a_used_force_token_replayed_after_its_exp_inside_the_leeway(service: LiveService) -> None:
    slot = unique_slot()
    service.wait_final(service.post("count", service.mint("count", slot)).body["id"])
    now = int(time.time())
    token = _signed(service, _claims(service, slot=format_slot(slot), force=True, iat=now, exp=now + 2))
    forced = service.post("count", token)
    assert forced.status == 202 and forced.body["attempt"] == 2
    service.wait_final(forced.body["id"])
    while time.time() < now + 3:  # until the token's exp has passed; the 30 s leeway has not
        time.sleep(0.1)
    # Another request prunes the used-token records whose time is up (1 % of claims do).
    ledger = open_ledger(f"sqlite:///{service.ledger_path}")
    ledger.prune_probability = 1.0
    ledger.consume_token(uuid.uuid4().hex, utcnow() + timedelta(minutes=5), utcnow())
    replayed = service.post("count", token)
    assert (replayed.status, _error(replayed)) == (401, "token_replayed")
    attempts = [run["attempt"] for run in service.runs("count") if run["slot"] == format_slot(slot)]
    assert attempts == [2, 1]


def test_it_records_who_triggered_and_the_event(service: LiveService) -> None:
    answer = service.post("count", service.mint("count", issuer="lambda", event_id="evt-1", params={"k": 1}))
    run = service.wait_final(answer.body["id"])
    assert (run["trigger"], run["event_id"], run["params"], run["instance"]) == (
        "schedule",
        "evt-1",
        {"k": 1},
        "test-1",
    )
    manual = service.post("count", service.mint("count"))
    assert manual.body["trigger"] == "manual"


def test_it_lets_a_jobs_token_read_only_that_jobs_runs(service: LiveService) -> None:
    run = service.post("count", service.mint("count")).body
    own = service.mint("count")
    assert service.get(f"/v1/runs/{run['id']}", own).status == 200
    assert service.get("/v1/runs?job=count&limit=1", own).status == 200
    for path in ("/v1/runs", "/v1/runs?job=slow", "/v1/jobs", "/v1/instance"):
        answer = service.get(path, own)
        assert (answer.status, _error(answer)) == (403, "job_mismatch"), path
    other = service.get(f"/v1/runs/{run['id']}", service.mint("slow"))
    assert (other.status, _error(other)) == (403, "job_mismatch")
    assert service.get("/v1/runs?limit=%C2%B2").status == 400


def test_it_answers_401_when_a_tokens_alg_does_not_fit_its_kids_key(tmp_path: Path) -> None:
    """A mixed asymmetric keyring: an ES256 header on the RSA key's kid (pyjwt: InvalidKeyError)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public = {
        name: key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        for name, key in (("rsa", rsa_key), ("ec", ec_key))
    }
    keyring = {"TRIGGER_KEYS": json.dumps(public), "TRIGGER_ALGORITHMS": "RS256,ES256"}
    with LiveService(tmp_path, workers=1, **keyring) as mixed:
        ec_pem = ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        token = jwt.encode(_claims(mixed), ec_pem, algorithm="ES256", headers={"kid": "rsa"})
        answer = mixed.post("count", token)
        assert (answer.status, _error(answer)) == (401, "token_invalid")
        fitting = jwt.encode(_claims(mixed), ec_pem, algorithm="ES256", headers={"kid": "ec"})
        assert mixed.post("count", fitting).status == 202
