"""lambda_trigger.tokens and settings: the claims the service expects, and loud bad config."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from freezegun import freeze_time

from lambda_trigger.events import Firing
from lambda_trigger.settings import ConfigurationError, Settings
from lambda_trigger.tokens import Signer
from tests.lambda_support.lambda_env import SECRET

FIRING = Firing("daily", "2026-11-22T15:00:00Z", "89d1a02d-5ec7-412e-82f5-13505f849b41", "Daily")


@freeze_time("2026-11-22T15:00:02Z")
def test_it_mints_the_claims_the_service_expects() -> None:
    token = Signer(SECRET).mint(FIRING)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="batch-trigger")
    assert claims.pop("jti")
    assert claims == {
        "iss": "lambda",
        "aud": "batch-trigger",
        "sub": "daily",
        "iat": 1795359602,  # 2026-11-22T15:00:02Z
        "exp": 1795359602 + 60,
        "slot": "2026-11-22T15:00:00Z",
        "event_id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
    }
    assert "kid" not in jwt.get_unverified_header(token)


def test_it_mints_a_fresh_jti_for_every_token() -> None:
    signer = Signer(SECRET)
    jtis = {jwt.decode(signer.mint(FIRING), options={"verify_signature": False})["jti"] for _ in range(20)}
    assert len(jtis) == 20


def test_it_names_the_key_and_audience_it_is_configured_with() -> None:
    token = Signer(SECRET, kid="2026-11", audience="billing-batches").mint(
        Firing("monthly", "2026-11-30T15:00:00Z")
    )
    assert jwt.get_unverified_header(token)["kid"] == "2026-11"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="billing-batches")
    assert "event_id" not in claims


def test_it_signs_with_an_asymmetric_key_so_the_service_can_hold_only_the_public_one() -> None:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    token = Signer(pem, algorithm="EdDSA").mint(FIRING)
    assert jwt.decode(token, private.public_key(), algorithms=["EdDSA"], audience="batch-trigger")


def test_it_never_shows_the_key_in_a_repr() -> None:
    settings = Settings.from_env({"APP_URL": "http://lb", "TRIGGER_SECRET": SECRET})
    assert SECRET not in repr(Signer(SECRET)) and SECRET not in repr(settings)


def test_it_reads_defaults_and_overrides_from_the_environment() -> None:
    defaults = Settings.from_env({"APP_URL": "https://lb.example/", "TRIGGER_SECRET": SECRET})
    assert (defaults.app_url, defaults.audience, defaults.token_lifetime) == (
        "https://lb.example",
        "batch-trigger",
        60,
    )
    settings = Settings.from_env(
        {
            "APP_URL": "https://lb.example",
            "TRIGGER_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:trigger-AbCdEf",
            "RULE_JOBS": '{"myapp-prod-Daily": "daily"}',
            "TOKEN_LIFETIME_SECONDS": "300",
            "ATTEMPT_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert settings.rule_jobs == {"myapp-prod-Daily": "daily"}
    assert (settings.token_lifetime, settings.attempt_timeout) == (300, 2.5)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"TRIGGER_SECRET": SECRET}, "APP_URL is required"),
        ({"APP_URL": "lb.example", "TRIGGER_SECRET": SECRET}, "APP_URL must be"),
        ({"APP_URL": "http://lb"}, "exactly one of TRIGGER_SECRET"),
        ({"APP_URL": "http://lb", "TRIGGER_SECRET_ARN": "my-secret"}, "secret ARN"),
        ({"APP_URL": "http://lb", "TRIGGER_SECRET": SECRET, "RULE_JOBS": "{"}, "RULE_JOBS"),
        ({"APP_URL": "http://lb", "TRIGGER_SECRET": SECRET, "RULE_JOBS": '{"A": 1}'}, "RULE_JOBS"),
        (
            {"APP_URL": "http://lb", "TRIGGER_SECRET": SECRET, "TOKEN_LIFETIME_SECONDS": "301"},
            "TOKEN_LIFETIME_SECONDS",
        ),
        ({"APP_URL": "http://lb", "TRIGGER_SECRET": SECRET, "DEADLINE_SECONDS": "soon"}, "DEADLINE_SECONDS"),
        (
            {"APP_URL": "http://lb", "TRIGGER_SECRET": SECRET, "TRIGGER_ALGORITHM": "none"},
            "TRIGGER_ALGORITHM",
        ),
        (
            {"APP_URL": "http://lb", "TRIGGER_SECRET": SECRET, "SLACK_WEBHOOK_URL": "hooks"},
            "SLACK_WEBHOOK_URL",
        ),
    ],
)
def test_it_fails_loudly_on_bad_configuration(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        Settings.from_env(env)


@freeze_time("2026-11-22T15:00:02Z")
def test_it_mints_a_single_use_drain_token_for_one_instance() -> None:
    signer = Signer(SECRET, lifetime=300)
    tokens = [signer.mint_drain("web-a") for _ in range(3)]
    claims = [jwt.decode(token, SECRET, algorithms=["HS256"], audience="batch-trigger") for token in tokens]
    assert len({c.pop("jti") for c in claims}) == 3
    assert claims[0] == {
        "iss": "lambda",
        "aud": "batch-trigger",
        "sub": "drain",
        "instance": "web-a",
        "iat": 1795359602,
        "exp": 1795359602 + 60,  # short, whatever TOKEN_LIFETIME_SECONDS says
    }
    with pytest.raises(ValueError, match="INSTANCE_ID"):
        signer.mint_drain("")


def test_it_mints_read_tokens_with_a_fresh_jti() -> None:
    signer = Signer(SECRET)
    claims = [jwt.decode(signer.mint_read(), options={"verify_signature": False}) for _ in range(2)]
    assert [c["sub"] for c in claims] == ["read", "read"] and claims[0]["jti"] != claims[1]["jti"]
    assert "instance" not in claims[0] and "slot" not in claims[0]


@pytest.mark.parametrize("job", ["drain", "read", "daily\n", "Daily"])
def test_it_never_mints_a_trigger_token_for_a_reserved_or_malformed_job(job: str) -> None:
    with pytest.raises(ValueError, match=r"job"):
        Signer(SECRET).mint(Firing(job, "2026-11-22T15:00:00Z"))


@pytest.mark.parametrize(
    ("app_url", "shown"),
    [
        ("https://deploy:hunter2@lb.example/batch", "'https://***@lb.example/batch'"),
        ("https://lb.example/batch?api_key=hunter2", "'https://lb.example/batch?***'"),
        ("https://lb.example/batch#hunter2", "'https://lb.example/batch#***'"),
        ("https://deploy:hun/ter2@lb.example/?k=hunter2", "'https://***@lb.example/?***'"),
        ("deploy:hunter2@lb.example", "'***@lb.example'"),
    ],
)
def test_it_refuses_app_url_credentials_without_repeating_them(app_url: str, shown: str) -> None:
    with pytest.raises(ConfigurationError, match="APP_URL") as refused:
        Settings.from_env({"APP_URL": app_url, "TRIGGER_SECRET": SECRET})
    assert shown in str(refused.value)
    assert "hunter2" not in str(refused.value) and "ter2" not in str(refused.value)
