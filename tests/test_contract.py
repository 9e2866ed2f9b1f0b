"""The contract the Lambda and the service share: tokens one mints, the other accepts."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lambda_trigger.events import Firing
from lambda_trigger.tokens import Signer
from service.config import Settings
from service.errors import TokenInvalid
from service.slots import format_slot
from service.web.auth import TokenVerifier

FIRING = Firing("daily", "2026-11-22T15:00:00Z", "89d1a02d-5ec7-412e-82f5-13505f849b41", "Daily")
OLD, NEW = "o" * 40, "n" * 40


def test_it_accepts_a_token_the_lambda_minted() -> None:
    verifier = TokenVerifier(Settings.from_env({"TRIGGER_SECRET": OLD}))
    claims = verifier.verify(f"Bearer {Signer(OLD).mint(FIRING)}", trigger=True)
    assert (claims.sub, claims.iss, claims.event_id) == ("daily", "lambda", FIRING.event_id)
    assert claims.slot is not None and format_slot(claims.slot) == "2026-11-22T15:00:00Z"


def test_it_rotates_keys_without_downtime_through_the_keyring() -> None:
    keyring = {"TRIGGER_KEYS": json.dumps({"2026-10": OLD, "2026-11": NEW})}
    verifier = TokenVerifier(Settings.from_env(keyring))
    for kid, secret in (("2026-10", OLD), ("2026-11", NEW)):
        assert verifier.verify(f"Bearer {Signer(secret, kid=kid).mint(FIRING)}", trigger=True).sub == "daily"
    retired = TokenVerifier(Settings.from_env({"TRIGGER_KEYS": json.dumps({"2026-11": NEW})}))
    with pytest.raises(TokenInvalid, match="unknown key id"):
        retired.verify(f"Bearer {Signer(OLD, kid='2026-10').mint(FIRING)}", trigger=True)


def test_it_verifies_eddsa_holding_only_the_public_key() -> None:
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings.from_env(
        {"TRIGGER_KEYS": json.dumps({"ed1": public_pem}), "TRIGGER_ALGORITHMS": "EdDSA"}
    )
    token = Signer(private_pem, algorithm="EdDSA", kid="ed1").mint(FIRING)
    assert TokenVerifier(settings).verify(f"Bearer {token}", trigger=True).sub == "daily"


def test_it_refuses_an_hmac_token_signed_with_the_public_key_as_secret() -> None:
    # The classic algorithm-confusion attack: HS256 "signed" with the public key's PEM text.
    public_pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings.from_env(
        {"TRIGGER_KEYS": json.dumps({"ed1": public_pem}), "TRIGGER_ALGORITHMS": "EdDSA,HS256"}
    )
    import jwt

    forged = jwt.encode({"sub": "daily"}, "x" * 40, algorithm="HS256", headers={"kid": "ed1"})
    with pytest.raises(TokenInvalid):
        TokenVerifier(settings).verify(f"Bearer {forged}", trigger=True)


def test_it_keeps_secrets_out_of_the_settings_repr() -> None:
    settings = Settings.from_env(
        {"TRIGGER_SECRET": OLD, "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/s3cr3t"}
    )
    assert OLD not in repr(settings) and "s3cr3t" not in repr(settings)
