"""No input gives a 500 (in-process tier): every bad body, query, path or token is a JSON 4xx, counted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from service.ledger import ClaimRequest
from service.slots import parse_slot, utcnow
from tests.support.inprocess import InProcess, error_of

NESTED = b"[" * 5000


def _trigger_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"aud": "batch-trigger", "sub": "count", "iat": now, "exp": now + 60}
    claims |= {"jti": uuid.uuid4().hex, "slot": "2031-02-03T04:05:06Z"}
    return {k: v for k, v in (claims | overrides).items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _by_hand(app: InProcess, payload: str) -> str:
    """An HS256 token around a payload written as JSON text (NaN, huge numbers, lone surrogates)."""
    header = _b64(json.dumps({"alg": "HS256"}).encode())
    signing_input = f"{header}.{_b64(payload.encode())}"
    signature = hmac.new(app.secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize("token", [False, True], ids=["no token", "valid token"])
def test_it_answers_400_to_a_body_nested_past_the_parsers_depth(inprocess: InProcess, token: bool) -> None:
    bearer = jwt.encode(_trigger_claims(), inprocess.secret, algorithm="HS256") if token else None
    before = inprocess.counted("batch_trigger_trigger_answers_total", code="400")
    assert error_of(inprocess.post("/v1/jobs/count/runs", bearer, NESTED)) == (400, "malformed")
    assert inprocess.counted("batch_trigger_trigger_answers_total", code="400") == before + 1


CLAIMS = {
    "exp as a string": {"exp": str(int(time.time()) + 60)},
    "exp as a string in the past": {"exp": str(int(time.time()) - 3600), "iat": int(time.time()) - 3660},
    "iat as a bool": {"iat": True},
    "nbf as a string": {"nbf": "0"},
    "slot in the basic format": {"slot": "20260605T000000Z"},
    "slot as an ISO week date": {"slot": "2026-W23-5T00:00:00Z"},
    "slot without seconds": {"slot": "2026-06-05T00:00Z"},
    "slot without an offset": {"slot": "2026-06-05T00:00:00"},
    "slot before 1970": {"slot": "1969-12-31T23:59:59Z"},
    "slot in year 999": {"slot": "0999-06-05T00:00:00Z"},
    "slot past 9999 in UTC": {"slot": "9999-12-31T23:59:59-00:01"},
    "slot with other digits": {"slot": "\uff12\uff10\uff12\uff16-06-05T00:00:00Z"},
    "params holding NUL": {"params": {"k": "a\x00b"}},
    "params holding a NUL key": {"params": {"a\x00": 1}},
    "event_id holding NUL": {"event_id": "e\x00"},
    "jti holding NUL": {"jti": "0123456789\x00"},
}


@pytest.mark.parametrize("case", sorted(CLAIMS))
def test_it_answers_401_token_invalid_to_claims_out_of_shape(inprocess: InProcess, case: str) -> None:
    token = jwt.encode(_trigger_claims(**CLAIMS[case]), inprocess.secret, algorithm="HS256")
    before = inprocess.counted("batch_trigger_trigger_answers_total", code="401")
    assert error_of(inprocess.post("/v1/jobs/count/runs", token)) == (401, "token_invalid")
    assert inprocess.counted("batch_trigger_trigger_answers_total", code="401") == before + 1


HAND_WRITTEN = {
    "exp a number of 400 digits": '"exp": 1' + "0" * 400,
    "exp NaN": '"exp": NaN',
    "params holding a lone surrogate": '"params": {"k": "\\ud800"}',
    "params holding NaN": '"params": {"k": NaN}',
    "claims nested past the parser's depth": '"params": ' + "[" * 5000 + "]" * 5000,
}


@pytest.mark.parametrize("case", sorted(HAND_WRITTEN))
def test_it_answers_401_token_invalid_to_claims_no_ledger_can_store(inprocess: InProcess, case: str) -> None:
    claims = json.dumps({k: v for k, v in _trigger_claims().items()})
    token = _by_hand(inprocess, claims[:-1] + ", " + HAND_WRITTEN[case] + "}")
    assert error_of(inprocess.post("/v1/jobs/count/runs", token)) == (401, "token_invalid")


def _public(key: Any) -> str:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def _private(key: Any) -> bytes:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


@pytest.mark.parametrize(
    ("kid", "alg"), [("rsa", "ES256"), ("ec", "RS256"), ("ed", "ES256"), ("rsa", "EdDSA"), ("ec", "EdDSA")]
)
def test_it_answers_401_when_the_alg_does_not_fit_the_kids_key(tmp_path: Path, kid: str, alg: str) -> None:
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "ed": ed25519.Ed25519PrivateKey.generate(),
    }
    app = InProcess(
        tmp_path,
        TRIGGER_KEYS=json.dumps({name: _public(key) for name, key in keys.items()}),
        TRIGGER_ALGORITHMS="RS256,ES256,EdDSA",
    )
    signer = {"ES256": "ec", "RS256": "rsa", "EdDSA": "ed"}[alg]
    token = jwt.encode(_trigger_claims(), _private(keys[signer]), algorithm=alg, headers={"kid": kid})
    assert error_of(app.post("/v1/jobs/count/runs", token)) == (401, "token_invalid")
    assert error_of(app.get("/v1/runs", token)) == (401, "token_invalid")


QUERIES = [
    "limit=%C2%B2",  # "²": str.isdigit() says yes, int() says no
    "limit=%D9%A1",  # ARABIC-INDIC DIGIT ONE
    "limit=99999999999999999999999",
    "limit=",
    "limit=-1",
    "limit=0",
    "before=yesterday",
    "before=2026-06-05T00:00:00",
    "before=0999-01-01T00:00:00Z",
    "slot=20260605T000000Z",
    "slot=2026-06-05T00:00:00%00",
    "job=count%00",
    "job=%F0%9F%92%A9",
    "job=Count",
    "status=%00",
    "status=done",
]


@pytest.mark.parametrize("query", QUERIES)
def test_it_answers_400_malformed_to_a_bad_history_query(inprocess: InProcess, query: str) -> None:
    before = inprocess.counted("batch_trigger_http_answers_total", route="/v1/runs", code="400")
    assert error_of(inprocess.get(f"/v1/runs?{query}", inprocess.read_token())) == (400, "malformed")
    assert inprocess.counted("batch_trigger_http_answers_total", route="/v1/runs", code="400") == before + 1


@pytest.mark.parametrize("run_id", ["%00", "%F0%9F%92%A9", "%FF%FE", "..%2F", "x" * 300])
def test_it_answers_404_to_a_run_id_of_any_shape(inprocess: InProcess, run_id: str) -> None:
    assert error_of(inprocess.get(f"/v1/runs/{run_id}", inprocess.read_token())) == (404, "not_found")


@pytest.mark.parametrize("job", ["%00", "%F0%9F%92%A9", "daily%0A", "Daily", "x" * 300])
def test_it_answers_a_trigger_of_any_job_name_with_a_4xx(inprocess: InProcess, job: str) -> None:
    token = jwt.encode(_trigger_claims(sub=job), inprocess.secret, algorithm="HS256")
    status, _ = error_of(inprocess.post(f"/v1/jobs/{job}/runs", token))
    assert 400 <= status < 500


def test_it_answers_json_to_paths_and_methods_it_does_not_know(inprocess: InProcess) -> None:
    assert error_of(inprocess.get("/v2/nothing")) == (404, "not_found")
    assert error_of(inprocess.client.delete("/v1/runs")) == (405, "method_not_allowed")
    counted = inprocess.counted("batch_trigger_http_answers_total", route="unmatched", code="404")
    assert counted >= 1


def test_it_counts_every_answer_of_the_trigger_route(inprocess: InProcess) -> None:
    before = inprocess.counted("batch_trigger_trigger_answers_total", code="401")
    inprocess.post("/v1/jobs/count/runs", None)
    inprocess.post("/v1/jobs/count/runs", "not-a-token")
    assert inprocess.counted("batch_trigger_trigger_answers_total", code="401") == before + 2


@pytest.mark.parametrize("offset", ["%C2%B2", "-1", "1e3", "9" * 16])
def test_it_answers_400_malformed_to_a_bad_log_offset(inprocess: InProcess, offset: str) -> None:
    ledger = inprocess.app.extensions["batch_trigger"].ledger
    slot = parse_slot("2031-01-01T00:00:00Z")
    ask = ClaimRequest(job="count", slot=slot, trigger="manual", instance="test-1")
    run = ledger.claim(ask, utcnow()).run
    answer = inprocess.get(f"/v1/runs/{run.id}/log?offset={offset}", inprocess.read_token())
    assert error_of(answer) == (400, "malformed")


def test_it_says_why_pyjwt_refused_a_token(inprocess: InProcess) -> None:
    """A refusal pyjwt words itself (an unsupported `crit` header) says so in the answer, not
    only the name of pyjwt's exception class; a long reason is cut short."""
    token = jwt.encode(_trigger_claims(), inprocess.secret, algorithm="HS256", headers={"crit": ["x" * 500]})
    answer = inprocess.post("/v1/jobs/count/runs", token)
    assert error_of(answer) == (401, "token_invalid")
    message = answer.get_json()["message"]
    assert message.startswith("token rejected: Unsupported critical extension: xxx")
    assert len(message) < 150
