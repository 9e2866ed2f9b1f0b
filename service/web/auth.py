"""Trigger tokens: verify a bearer JWT into claims, and mint one (for the CLI and tests)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt

from service.config import HMAC_ALGORITHMS, Secret, Settings
from service.errors import ConfigError, TokenExpired, TokenInvalid, TokenMissing
from service.slots import format_slot, parse_slot

MAX_LIFETIME_SECONDS = 300
_TRIGGER_CLAIMS = ["exp", "iat", "aud", "sub", "jti", "slot"]
_READ_CLAIMS = ["exp", "iat", "aud"]


@dataclass(frozen=True)
class Claims:
    """What a verified token says; trigger fields are None on read-only tokens."""

    sub: str | None
    expires_at: float
    slot: datetime | None = None
    jti: str | None = None
    iss: str | None = None
    event_id: str | None = None
    force: bool = False
    params: dict[str, Any] = field(default_factory=dict)


class TokenVerifier:
    """Checks bearer tokens against the keyring and the algorithm allowlist of the settings."""

    def __init__(self, settings: Settings) -> None:
        self._keys = settings.keys
        self._algorithms = settings.algorithms
        self._audience = settings.audience
        self._leeway = settings.token_leeway_seconds

    def verify(self, authorization: str | None, *, trigger: bool) -> Claims:
        """Verify an `Authorization` header value; `trigger` also requires sub, jti and slot."""
        token = _bearer(authorization)
        header = _header(token)
        algorithm = header.get("alg")
        # The allowlist comes from configuration, never from the token: this refuses `none`
        # and algorithm-confusion attempts before any key is touched.
        if algorithm not in self._algorithms:
            raise TokenInvalid(f"algorithm {str(algorithm)[:20]!r} is not allowed")
        key = self._key_for(header.get("kid"), str(algorithm))
        payload = self._decode(token, key, str(algorithm), trigger)
        lifetime = float(payload["exp"]) - float(payload["iat"])
        if lifetime > MAX_LIFETIME_SECONDS:
            raise TokenInvalid(f"token lifetime {lifetime:.0f} s exceeds {MAX_LIFETIME_SECONDS} s")
        return _claims(payload, trigger)

    def _key_for(self, kid: object, algorithm: str) -> str:
        if kid is not None:
            secret = self._keys.get(str(kid)) if isinstance(kid, str) else None
            if secret is None:
                raise TokenInvalid("token names an unknown key id (kid)")
        elif len(self._keys) == 1:
            secret = next(iter(self._keys.values()))
        elif "default" in self._keys:
            secret = self._keys["default"]
        else:
            raise TokenInvalid("token needs a key id (kid): several keys are configured")
        value = secret.reveal()
        if (algorithm in HMAC_ALGORITHMS) == value.lstrip().startswith("-----BEGIN"):
            raise TokenInvalid(f"key id does not hold a key for {algorithm}")
        return value

    def _decode(self, token: str, key: str, algorithm: str, trigger: bool) -> dict[str, Any]:
        options: Any = {"require": _TRIGGER_CLAIMS if trigger else _READ_CLAIMS}
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                leeway=self._leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("token is issued in the future") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid(f"token audience is not {self._audience!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalid(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("token signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"token rejected: {type(exc).__name__}") from None


def _header(token: str) -> dict[str, Any]:
    """The token's JOSE header, read only to pick the key; `jwt.decode` verifies it all again."""
    # Read by hand: pyjwt's get_unverified_header parses more than the header and shows up in
    # the duplicate-answer profile (BENCHMARKS.md).
    try:
        segment = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):
        raise TokenInvalid("token is not a well-formed JWT") from None
    if not isinstance(header, dict) or token.count(".") != 2:
        raise TokenInvalid("token is not a well-formed JWT")
    return header


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise TokenMissing("an Authorization: Bearer <token> header is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenMissing("the Authorization header must read 'Bearer <token>'")
    return token.strip()


def _claims(payload: dict[str, Any], trigger: bool) -> Claims:
    sub = payload.get("sub")
    if sub is not None and not isinstance(sub, str):
        raise TokenInvalid("token 'sub' must be a job name")
    if not trigger:
        return Claims(sub=sub, expires_at=float(payload["exp"]), iss=_text(payload, "iss"))
    try:
        slot = parse_slot(payload["slot"])
    except ValueError as exc:
        raise TokenInvalid(f"token 'slot' is not usable: {exc}") from None
    jti, params, force = payload["jti"], payload.get("params", {}), payload.get("force", False)
    if not isinstance(jti, str) or not 8 <= len(jti) <= 128:
        raise TokenInvalid("token 'jti' must be a unique string of 8-128 characters")
    if not isinstance(params, dict):
        raise TokenInvalid("token 'params' must be a JSON object")
    if not isinstance(force, bool):
        raise TokenInvalid("token 'force' must be true or false")
    return Claims(
        sub=sub,
        expires_at=float(payload["exp"]),
        slot=slot,
        jti=jti,
        iss=_text(payload, "iss"),
        event_id=_text(payload, "event_id"),
        force=force,
        params=params,
    )


def _text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise TokenInvalid(f"token {name!r} must be a string of at most 200 characters")
    return value


def mint_token(
    settings: Settings,
    job: str,
    *,
    slot: datetime | None = None,
    force: bool = False,
    params: dict[str, Any] | None = None,
    event_id: str | None = None,
    issuer: str = "cli",
    lifetime: int = 60,
) -> str:
    """Sign a short-lived token with the signing key of the settings (`TRIGGER_KID` or the only key)."""
    kid = settings.signing_kid or ("default" if "default" in settings.keys else next(iter(settings.keys)))
    secret: Secret = settings.keys[kid]
    algorithm = next((a for a in settings.algorithms if a in HMAC_ALGORITHMS), None)
    if algorithm is None or secret.reveal().lstrip().startswith("-----BEGIN"):
        raise ConfigError("minting needs an HMAC key and an HS* algorithm in TRIGGER_ALGORITHMS")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": settings.audience,
        "sub": job,
        "iat": now,
        "exp": now + min(lifetime, MAX_LIFETIME_SECONDS),
        "jti": uuid.uuid4().hex,
    }
    if slot is not None:
        claims["slot"] = format_slot(slot)
    if force:
        claims["force"] = True
    if params:
        claims["params"] = params
    if event_id:
        claims["event_id"] = event_id
    headers = {"kid": kid} if kid != "default" else None
    return jwt.encode(claims, secret.reveal(), algorithm=algorithm, headers=headers)
