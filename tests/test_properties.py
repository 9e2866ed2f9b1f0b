"""Property tests: no token, claim set, event or request body makes the code raise outside its domain."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lambda_trigger.events import UnreadableEvent, read_event
from service.config import Settings
from service.errors import ServiceError
from service.web.auth import Claims, TokenVerifier
from tests.support.inprocess import InProcess
from tests.support.live import LiveService

SECRET = "property-test-secret-0123456789abcdef01"
VERIFIER = TokenVerifier(Settings.from_env({"TRIGGER_SECRET": SECRET}))
RULE_JOBS = {"Daily": "daily", "Odd": "Not A Job"}
CODES = {"token_missing", "token_invalid", "token_expired", "token_replayed"}
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
FAST = settings(max_examples=300, deadline=None)
LIVE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# JSON as Python's json module (and so pyjwt) reads it: NaN and Infinity included.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
# What a WSGI server hands the app as a header value: latin-1 text without line breaks.
header_text = st.text(st.characters(max_codepoint=0xFF, blacklist_characters="\r\n"), max_size=200)
# RFC 3339-looking times across the whole datetime range, with any offset (the edges overflow UTC).
any_time = st.datetimes(timezones=st.timezones() | st.just(None)).map(lambda d: d.isoformat())
EDGE = "0001-01-01T00:00:00+01:00"  # a valid RFC 3339 time that is before 0001-01-01 in UTC
slot_values = st.one_of(any_time, st.sampled_from(["2030-01-01T00:00:00Z", EDGE]), json_values)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: Any, payload: Any, key: str = SECRET) -> str:
    """A JWT with any JSON header and payload and a correct HS256 signature, built by hand."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    """Claims near a valid trigger token, each of them possibly missing or replaced by any JSON."""
    now = int(time.time())
    valid: dict[str, Any] = {
        "aud": "batch-trigger",
        "sub": "count",
        "iat": now,
        "exp": now + 60,
        "jti": draw(st.text(min_size=8, max_size=40)),
        "slot": draw(slot_values),
    }
    extras = {"iss": "cli", "event_id": "e-1", "force": True, "params": {"k": 1}, "nbf": now}
    claims: dict[str, Any] = {}
    for name, value in (valid | extras).items():
        choice = draw(st.integers(0, 9))
        if choice < 6 and name in valid:
            claims[name] = value
        elif choice < 8:
            claims[name] = draw(json_values)
        elif choice == 8 and name in extras:
            claims[name] = value
    return claims


tokens = st.one_of(
    st.builds(signed, st.just({"alg": "HS256", "typ": "JWT"}), claim_sets()),
    st.builds(
        signed,
        st.dictionaries(
            st.sampled_from(["alg", "kid", "typ", "crit", "b64"]) | st.text(max_size=4), json_values
        )
        | json_values,
        claim_sets() | json_values,
    ),
    st.lists(st.text(BASE64URL + "=+/%", max_size=40), min_size=1, max_size=4).map(".".join),
)
authorizations = st.one_of(
    st.builds("{}{}".format, st.sampled_from(["Bearer ", "bearer ", " Bearer  "]), tokens),
    header_text,
    st.none(),
)


def verify(authorization: str | None, trigger: bool) -> Claims | ServiceError:
    """The verifier's answer: claims, or the domain error it raised (anything else propagates)."""
    try:
        return VERIFIER.verify(authorization, trigger=trigger)
    except ServiceError as exc:
        return exc


@FAST
@given(authorizations, st.booleans())
@example(
    f"Bearer {signed({'alg': 'HS256'}, {'aud': 'batch-trigger', 'sub': 'count', 'iat': 1, 'exp': 2})}", True
)
def test_any_authorization_header_gives_claims_or_a_token_error(
    authorization: str | None, trigger: bool
) -> None:
    """Any header value, any signed claim set: claims, or a 401 domain error, never another exception."""
    answer = verify(authorization, trigger)
    if isinstance(answer, ServiceError):
        assert answer.code in CODES and answer.status == 401
    elif trigger:
        assert answer.slot is not None and answer.jti is not None and isinstance(answer.params, dict)


@FAST
@given(claim_sets())
@example({"aud": "batch-trigger", "sub": "count", "iat": int(time.time()), "exp": int(time.time()) + 60,
          "jti": "j" * 16, "slot": EDGE})  # fmt: skip
def test_signed_claims_at_the_edges_of_time_are_token_errors(claims: dict[str, Any]) -> None:
    """A correctly signed token with odd claims (a slot beyond UTC's range, ...) is a 401, not a crash."""
    answer = verify(f"Bearer {signed({'alg': 'HS256', 'typ': 'JWT'}, claims)}", trigger=True)
    assert isinstance(answer, Claims) or answer.status == 401


@st.composite
def events(draw: st.DrawFn) -> Any:
    """EventBridge-, Scheduler- and manual-shaped payloads, each field possibly any JSON."""
    rule = draw(st.sampled_from(["Daily", "Odd", "Weekly-Report", "bus/Daily"]) | st.text(max_size=12))
    fields = {
        "resources": st.one_of(st.just([f"arn:aws:events:us-east-1:123456789012:rule/{rule}"]), json_values),
        "time": slot_values,
        "id": st.text(max_size=220) | json_values,
        "job": st.sampled_from(["daily", "Daily", ""]) | json_values,
        "slot": slot_values,
        "event_id": st.text(max_size=220) | json_values,
    }
    return draw(st.fixed_dictionaries({}, optional=fields) | json_values)


@FAST
@given(events())
@example({"job": "daily", "slot": EDGE})
@example({"job": "daily", "slot": "9999-12-31T23:59:59-01:00"})
def test_read_event_raises_only_unreadable_event(event: Any) -> None:
    """Any event yields a firing with an RFC 3339 UTC slot, or UnreadableEvent, nothing else."""
    try:
        firing = read_event(event, RULE_JOBS)
    except UnreadableEvent:
        return
    assert firing.slot.endswith("Z") and firing.job


EDGE_SLOT = {
    "aud": "batch-trigger",
    "sub": "count",
    "jti": "edge-of-time-1",
    "slot": "0001-01-01T00:00:00+01:00",
}


@LIVE
@given(
    job=st.sampled_from(["count", "slow", "nope"])
    | st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    claims=st.none() | claim_sets(),
    authorization=authorizations,
    content_type=st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x"])
    | header_text,
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
)
@example(job="count", claims=EDGE_SLOT, authorization=None, content_type="application/json", body=b"{}")
def test_live_trigger_never_answers_5xx(
    service: LiveService,
    job: str,
    claims: dict[str, Any] | None,
    authorization: str | None,
    content_type: str,
    body: bytes,
) -> None:
    """Arbitrary bodies, headers, job names and (validly signed) claims never get a 5xx from the service."""
    if claims is not None:
        # Signed with the service's own key, so the claims themselves are what gets tested.
        now = int(time.time())
        claims = {"iat": now, "exp": now + 60} | claims
        authorization = f"Bearer {signed({'alg': 'HS256', 'typ': 'JWT'}, claims, service.secret)}"
    address = urlsplit(service.url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
    headers = {"Content-Type": content_type.strip() or "application/json", "Content-Length": str(len(body))}
    if authorization is not None:
        headers["Authorization"] = authorization.strip()
    try:
        connection.request("POST", f"/v1/jobs/{quote(job, safe='')}/runs", body=body, headers=headers)
        status = connection.getresponse().status
    finally:
        connection.close()
    assert status < 500


@LIVE
@given(
    query=st.dictionaries(
        st.sampled_from(["job", "status", "slot", "before", "limit"]) | st.text(max_size=5),
        st.one_of(
            slot_values.map(str), st.sampled_from(["succeeded", "0", "1000", "-1"]), st.text(max_size=30)
        ),
        max_size=4,
    )
)
@example(query={"slot": EDGE})
@example(query={"before": EDGE})
def test_live_history_never_answers_5xx(service: LiveService, query: dict[str, str]) -> None:
    """Any query string on GET /v1/runs (with a valid read token) answers 200 or 400, never a 5xx."""
    answer = service.get(f"/v1/runs?{urlencode(query)}")
    assert answer.status in (200, 400)


# The in-process tier: every route of the real app on a real SQLite file, any request shape.
ROUTES = [
    ("POST", "/v1/jobs/{job}/runs"),
    ("POST", "/v1/jobs/{job}/pause"),
    ("POST", "/v1/jobs/{job}/resume"),
    ("GET", "/v1/runs/{run_id}"),
    ("GET", "/v1/runs/{run_id}/log"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/instance"),
    ("POST", "/v1/instance/drain"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]
# What a path parameter may hold after percent-decoding: names, NUL, surrogate-free Unicode, huge.
path_values = st.sampled_from(["count", "slow", "read", "drain", "nope", "0" * 32, "\x00", "x" * 300])
path_values |= st.text(max_size=20)
query_values = st.one_of(
    slot_values.map(str),
    st.sampled_from(["succeeded", "0", "50", "1000", "\u00b2", "\u0661", "-1", "\x00", "9" * 30]),
    st.text(max_size=30),
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 6000).map(lambda depth: b"[" * depth),
    st.integers(1, 6000).map(lambda depth: b'{"a":' * depth),
)


@st.composite
def app_tokens(draw: st.DrawFn, secret: str) -> str:
    """Tokens signed with the app's own key: any subject, any claims near a valid one."""
    claims = draw(claim_sets())
    claims["sub"] = draw(st.sampled_from(["read", "drain", "count", "slow", "nope"]) | json_values)
    if draw(st.booleans()):
        claims["instance"] = draw(st.sampled_from(["test-1", "i-other"]) | json_values)
    return signed({"alg": "HS256", "typ": "JWT"}, claims, secret)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> InProcess:
    """One app for every example: state left by one example (runs, a drain) is part of the input."""
    return InProcess(tmp_path_factory.mktemp("properties"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@example(data=None)
def test_any_request_to_any_route_answers_below_500_in_json(app: InProcess, data: Any) -> None:
    """Any method, route, path value, query, header and body: no 5xx (but 503 draining); errors in JSON."""
    if data is None:  # the first finding: a body nested past the JSON parser's depth, no token
        method, path, headers, body = "POST", "/v1/jobs/count/runs", {}, b"[" * 5000
    else:
        other_methods = st.tuples(st.sampled_from(["PUT", "DELETE", "PATCH"]), st.just("/v1/runs"))
        method, template = data.draw(st.sampled_from(ROUTES) | other_methods)
        values = {name: quote(data.draw(path_values), safe="") for name in ("job", "run_id")}
        query = data.draw(
            st.dictionaries(
                st.sampled_from(["job", "status", "slot", "before", "limit", "offset"]) | st.text(max_size=5),
                query_values,
                max_size=4,
            )
        )
        path = template.format(**values) + (f"?{urlencode(query)}" if query else "")
        token = data.draw(st.none() | app_tokens(app.secret) | tokens | header_text)
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers["Content-Type"] = data.draw(st.sampled_from(["application/json", "text/plain"]) | header_text)
        body = data.draw(bodies)
    answer = app.client.open(path, method=method, headers=headers, data=body)
    error = answer.get_json(silent=True) if answer.status_code >= 400 else None
    if answer.status_code >= 500:
        assert answer.status_code == 503 and error
        assert error.get("error") in ("draining", "ledger_unavailable")
    if answer.status_code >= 400:
        assert isinstance(error, dict) and set(error) >= {"error", "message"}, answer.get_data()[:200]
