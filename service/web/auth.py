"""Trigger tokens: verify a bearer JWT into claims, and mint one (for the CLI and tests)."""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import jwt

from service.config import HMAC_ALGORITHMS, Secret, Settings
from service.errors import ConfigError, TokenExpired, TokenInvalid, TokenMissing
from service.slots import format_slot, parse_slot

MAX_LIFETIME_SECONDS = 300
_TRIGGER_CLAIMS = ["exp", "iat", "aud", "sub", "jti", "slot"]
_READ_CLAIMS = ["exp", "iat", "aud"]
#: Token subjects that name no job (jobs of these names are refused at registration).
READ_SUBJECT, DRAIN_SUBJECT = "read", "drain"
#: A drain token takes an instance out of service: it is short-lived.
DRAIN_LIFETIME_SECONDS = 60
_NUMERIC_CLAIMS = ("exp", "iat", "nbf")


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
    #: A drain token's target: the INSTANCE_ID it may drain.
    instance: str | None = None
    #: The last moment the token still verifies (`exp` + the verifier's leeway): a used `jti`
    #: must be remembered until then, or the token could be replayed inside the leeway.
    usable_until: float = 0.0

    @property
    def remember_until(self) -> datetime:
        """`usable_until` as an aware UTC datetime, for the ledger's record of used tokens."""
        return datetime.fromtimestamp(self.usable_until, UTC)


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
        # pyjwt reads a time claim with int(), so "exp": "99999999999" or true would pass it.
        times = {name: _number(payload, name) for name in _NUMERIC_CLAIMS if name in payload}
        lifetime = times["exp"] - times["iat"]
        if lifetime > MAX_LIFETIME_SECONDS:
            raise TokenInvalid(f"token lifetime {lifetime:.0f} s exceeds {MAX_LIFETIME_SECONDS} s")
        return _claims(payload, trigger, usable_until=times["exp"] + self._leeway)

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
            # pyjwt compared int(exp): a string exp in the past is malformed, not merely expired.
            self._refuse_time_claims_out_of_shape(token, key, algorithm)
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
            raise TokenInvalid(f"token rejected: {_reason(exc)}") from None
        except jwt.InvalidKeyError:
            # The header's alg does not fit the kid's key type (an RS256 header on an EC key):
            # pyjwt raises this outside InvalidTokenError.
            raise TokenInvalid(f"key id does not hold a key for {algorithm}") from None
        except jwt.PyJWTError as exc:
            raise TokenInvalid(f"token rejected: {_reason(exc)}") from None
        except RecursionError:  # a signed payload nested past the JSON parser's depth
            raise TokenInvalid("token claims are nested too deeply") from None

    def _refuse_time_claims_out_of_shape(self, token: str, key: str, algorithm: str) -> None:
        """Raise TokenInvalid when a verified token's time claims are not numbers."""
        options: Any = {"verify_exp": False, "verify_aud": False, "verify_nbf": False, "verify_iat": False}
        try:
            payload = jwt.decode(token, key, algorithms=[algorithm], options=options)
        except (jwt.PyJWTError, RecursionError):  # it verified a moment ago; expired is the answer
            return
        for name in _NUMERIC_CLAIMS:
            if name in payload:
                _number(payload, name)


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


def _number(payload: dict[str, Any], name: str) -> float:
    """A time claim as seconds since the epoch: a finite JSON number, never a string or a bool."""
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalid(f"token {name!r} must be a number of seconds since the epoch")
    try:
        seconds = float(value)
    except OverflowError:  # an integer of hundreds of digits
        seconds = math.inf
    if not math.isfinite(seconds):
        raise TokenInvalid(f"token {name!r} is out of range")
    return seconds


def _claims(payload: dict[str, Any], trigger: bool, usable_until: float) -> Claims:
    sub = _text(payload, "sub")
    jti = payload.get("jti")
    if jti is not None and (not isinstance(jti, str) or not 8 <= len(jti) <= 128 or not _storable(jti)):
        raise TokenInvalid("token 'jti' must be a unique string of 8-128 characters")
    read = Claims(
        sub=sub,
        expires_at=float(payload["exp"]),
        jti=jti,
        iss=_text(payload, "iss"),
        instance=_text(payload, "instance"),
        usable_until=usable_until,
    )
    if not trigger:
        return read
    try:
        slot = parse_slot(payload["slot"])
    except ValueError as exc:
        raise TokenInvalid(f"token 'slot' is not usable: {exc}") from None
    params, force = payload.get("params", {}), payload.get("force", False)
    if not isinstance(params, dict):
        raise TokenInvalid("token 'params' must be a JSON object")
    if not _storable(params):
        # Both ledgers must store what they accept: PostgreSQL refuses NUL in text and JSON,
        # and neither driver can encode a lone surrogate (U+D800) or store NaN as JSON.
        raise TokenInvalid("token 'params' holds a value no ledger can store (NUL, a lone surrogate, NaN)")
    if not isinstance(force, bool):
        raise TokenInvalid("token 'force' must be true or false")
    return replace(read, slot=slot, event_id=_text(payload, "event_id"), force=force, params=params)


def _text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 200 or not _storable(value):
        raise TokenInvalid(f"token {name!r} must be a string of at most 200 characters")
    return value


def _storable(value: Any, depth: int = 0) -> bool:
    """True when both ledgers can store the JSON value as it is (and it is not absurdly deep)."""
    if isinstance(value, str):
        return "\x00" not in value and (value.isascii() or _utf8(value))
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > 32:
        return False
    if isinstance(value, dict):
        return all(_storable(k, depth + 1) and _storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(item, depth + 1) for item in value)
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    """Sign a short-lived token for `job` (or `read`) with the settings' signing key.

    The signing key is `TRIGGER_KID` or the only key. A token whose `sub` is a job triggers that
    job (with `slot`) and reads its runs; `sub` = `read` reads every job's runs.
    """
    claims = _base_claims(settings, job, issuer, lifetime)
    if slot is not None:
        claims["slot"] = format_slot(slot)
    if force:
        claims["force"] = True
    if params:
        claims["params"] = params
    if event_id:
        claims["event_id"] = event_id
    return _sign(settings, claims)


def mint_drain_token(
    settings: Settings, instance: str, *, issuer: str = "cli", lifetime: int = DRAIN_LIFETIME_SECONDS
) -> str:
    """Sign a single-use token that drains the instance whose INSTANCE_ID is `instance`.

    The same claims the scale-in Lambda mints: `sub` = `drain`, a fresh `jti`, `instance`,
    `iat`, `exp`, `aud`. Any other instance answers it `403 instance_mismatch`.
    """
    if not instance:
        raise ValueError("a drain token names the INSTANCE_ID it drains")
    claims = _base_claims(settings, DRAIN_SUBJECT, issuer, min(lifetime, DRAIN_LIFETIME_SECONDS))
    return _sign(settings, claims | {"instance": instance})


def _base_claims(settings: Settings, subject: str, issuer: str, lifetime: int) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": issuer,
        "aud": settings.audience,
        "sub": subject,
        "iat": now,
        "exp": now + min(lifetime, MAX_LIFETIME_SECONDS),
        "jti": uuid.uuid4().hex,
    }


def _sign(settings: Settings, claims: dict[str, Any]) -> str:
    kid = settings.signing_kid or ("default" if "default" in settings.keys else next(iter(settings.keys)))
    secret: Secret = settings.keys[kid]
    algorithm = next((a for a in settings.algorithms if a in HMAC_ALGORITHMS), None)
    if algorithm is None or secret.reveal().lstrip().startswith("-----BEGIN"):
        raise ConfigError("minting needs an HMAC key and an HS* algorithm in TRIGGER_ALGORITHMS")
    headers = {"kid": kid} if kid != "default" else None
    return jwt.encode(claims, secret.reveal(), algorithm=algorithm, headers=headers)


def _reason(exc: Exception) -> str:
    """pyjwt's own words for a refusal ("Unsupported critical extension: x"), short: they may quote
    the token's header, never a key."""
    text = " ".join(str(exc).split())
    return f"{text[:100]}..." if len(text) > 100 else text or type(exc).__name__
