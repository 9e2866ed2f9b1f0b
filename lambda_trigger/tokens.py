"""Minting the short-lived, single-use trigger token the service expects.

HS256/384/512 tokens are signed with the standard library (`hmac`), so the cold path imports no
JWT library; asymmetric algorithms go through pyjwt (and `cryptography`), imported on first use.
The service verifies every token with pyjwt, and a test pins that the two agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

from lambda_trigger.contract import MAX_TOKEN_LIFETIME, check_job_name
from lambda_trigger.events import Firing
from lambda_trigger.settings import ConfigurationError

ISSUER = "lambda"  # recorded by the service as who triggered the run
DRAIN_LIFETIME = 60  # seconds at most: a drain token is used at once, and it takes an instance out


class Signer:
    """Signs trigger tokens with one key, an optional `kid` and a fixed algorithm."""

    __slots__ = ("algorithm", "audience", "key", "kid", "lifetime")

    def __init__(
        self,
        key: str,
        algorithm: str = "HS256",
        kid: str | None = None,
        audience: str = "batch-trigger",
        lifetime: int = 60,
    ) -> None:
        self.key, self.algorithm, self.kid = key, algorithm, kid
        self.audience, self.lifetime = audience, lifetime
        if not 0 < self.lifetime <= MAX_TOKEN_LIFETIME:
            raise ConfigurationError(f"token lifetime must be 1..{MAX_TOKEN_LIFETIME} s")
        if self.algorithm in _HMAC:
            return
        import jwt  # only for asymmetric keys

        try:
            # Fails here, once per container, when e.g. EdDSA is asked for without `cryptography`.
            jwt.get_algorithm_by_name(self.algorithm)
        except NotImplementedError:
            raise ConfigurationError(
                f"algorithm {self.algorithm} needs the 'cryptography' package in the deployment"
            ) from None

    def __repr__(self) -> str:
        # Never the key.
        return f"Signer(algorithm={self.algorithm!r}, kid={self.kid!r}, audience={self.audience!r})"

    def mint(self, firing: Firing) -> str:
        """Return a fresh token (new `jti`, `iat` now) that triggers `firing` once."""
        # Defence in depth: events are checked when read, but a trigger token must never carry
        # a reserved subject (`drain`, `read`), however its Firing was made.
        claims = self._claims(check_job_name(firing.job)) | {"slot": firing.slot}
        if firing.event_id:
            claims["event_id"] = firing.event_id
        return self._encode(claims)

    def mint_read(self) -> str:
        """Return a fresh token that reads every job's runs and any instance (`sub` = `read`)."""
        return self._encode(self._claims("read"))

    def mint_drain(self, instance: str) -> str:
        """Return a fresh single-use token that drains the instance whose INSTANCE_ID is `instance`.

        The service refuses it on any other instance (`403 instance_mismatch`), and it reads
        that instance's `/v1/instance` only.
        """
        if not instance:
            raise ValueError("a drain token names the INSTANCE_ID it drains")
        return self._encode(self._claims("drain", DRAIN_LIFETIME) | {"instance": instance})

    def _claims(self, subject: str, longest: int = MAX_TOKEN_LIFETIME) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": ISSUER,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + min(self.lifetime, longest),
            "jti": os.urandom(16).hex(),  # unique: the service uses each one up
        }

    def _encode(self, claims: dict[str, Any]) -> str:
        if self.algorithm not in _HMAC:
            import jwt

            headers = {"kid": self.kid} if self.kid else None
            return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers)
        header = {"alg": self.algorithm, "typ": "JWT"} | ({"kid": self.kid} if self.kid else {})
        signing_input = f"{_segment(header)}.{_segment(claims)}"
        signature = hmac.new(self.key.encode(), signing_input.encode(), _HMAC[self.algorithm]).digest()
        return f"{signing_input}.{_b64(signature)}"


_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
