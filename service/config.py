"""Settings from the environment, read once at start; bad values fail with one clear line."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.errors import ConfigError

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MIN_SECRET_LENGTH = 32
LEDGER_SCHEMES = ("sqlite", "postgresql", "postgres")


class Secret:
    """A value that never shows itself in reprs, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself, for the one place that must use it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    keys: Mapping[str, Secret]
    ledger_url: str = "sqlite:///batch-trigger.db"
    algorithms: tuple[str, ...] = ("HS256",)
    audience: str = "batch-trigger"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    batch_modules: tuple[str, ...] = ()
    slack_webhook_url: Secret | None = None
    instance_id: str = field(default_factory=socket.gethostname)
    lease_seconds: int = 60
    heartbeat_seconds: int = 15
    drain_grace_seconds: int = 30
    drain_notice_seconds: int = 10
    kill_grace_seconds: int = 10
    run_dir: str | None = None
    retention_days: int = 90
    batch_nice: int = 10
    artefact_dir: str = "artefacts"
    token_leeway_seconds: int = 30
    signing_kid: str | None = None
    app_url: str = "http://127.0.0.1:8000"
    log_level: int = logging.INFO
    #: PostgreSQL: the launcher's session proves its instance alive (off behind transaction pooling).
    launcher_lock: bool = True
    #: PostgreSQL connections the instance's web workers, keeper and batches share (the launcher
    #: holds one more); 0: no budget. The shipped gunicorn configuration sets WEB_CONCURRENCY.
    connection_permits: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from an environment mapping (default: `os.environ`)."""
        env = os.environ if environ is None else environ
        algorithms = _algorithms(env.get("TRIGGER_ALGORITHMS", "HS256"))
        keys = _keyring(env)
        settings = cls(
            keys=keys,
            ledger_url=_ledger_url(env.get("LEDGER_URL", "sqlite:///batch-trigger.db")),
            algorithms=algorithms,
            audience=env.get("TRIGGER_AUDIENCE", "batch-trigger").strip() or "batch-trigger",
            timezone=_timezone(env.get("BATCH_TIMEZONE", "UTC")),
            batch_modules=tuple(m.strip() for m in env.get("BATCH_MODULES", "").split(",") if m.strip()),
            slack_webhook_url=_optional_secret(env.get("SLACK_WEBHOOK_URL")),
            instance_id=env.get("INSTANCE_ID", "").strip() or socket.gethostname(),
            lease_seconds=_seconds(env, "LEASE_SECONDS", 60),
            heartbeat_seconds=_seconds(env, "HEARTBEAT_SECONDS", 15),
            drain_grace_seconds=_seconds(env, "DRAIN_GRACE_SECONDS", 30, minimum=0),
            drain_notice_seconds=_seconds(env, "DRAIN_NOTICE_SECONDS", 10, minimum=0),
            kill_grace_seconds=_seconds(env, "KILL_GRACE_SECONDS", 10),
            run_dir=env.get("RUN_DIR") or None,
            retention_days=_integer(env, "RETENTION_DAYS", 90, minimum=0, maximum=36500),
            batch_nice=_integer(env, "BATCH_NICE", 10, minimum=0, maximum=19),
            artefact_dir=env.get("ARTEFACT_DIR", "artefacts"),
            token_leeway_seconds=_integer(env, "TOKEN_LEEWAY_SECONDS", 30, minimum=0, maximum=30),
            signing_kid=env.get("TRIGGER_KID") or None,
            app_url=env.get("BATCH_TRIGGER_URL", "http://127.0.0.1:8000").rstrip("/"),
            log_level=_log_level(env.get("LOG_LEVEL")),
            launcher_lock=_switch(env, "LAUNCHER_LOCK", True),
            connection_permits=_integer(env, "LEDGER_CONNECTION_PERMITS", 0, minimum=0, maximum=1000),
        )
        if settings.heartbeat_seconds >= settings.lease_seconds:
            raise ConfigError(
                f"HEARTBEAT_SECONDS ({settings.heartbeat_seconds}) must be shorter than "
                f"LEASE_SECONDS ({settings.lease_seconds}), or leases expire between heartbeats"
            )
        if settings.signing_kid is not None and settings.signing_kid not in keys:
            raise ConfigError(f"TRIGGER_KID {settings.signing_kid!r} names no key in TRIGGER_KEYS")
        return settings


def _keyring(env: Mapping[str, str]) -> dict[str, Secret]:
    raw_keys, secret = env.get("TRIGGER_KEYS"), env.get("TRIGGER_SECRET")
    if env.get("TRIGGER_SECRET_ARN") and not (raw_keys or secret):
        from service.aws_secrets import read_secret  # boto3 only when an ARN is configured

        secret = read_secret(env["TRIGGER_SECRET_ARN"])
    if raw_keys:
        try:
            parsed = json.loads(raw_keys)
        except ValueError:
            raise ConfigError('TRIGGER_KEYS must be a JSON object {"kid": "key", ...}') from None
        if not isinstance(parsed, dict) or not parsed:
            raise ConfigError('TRIGGER_KEYS must be a non-empty JSON object {"kid": "key", ...}')
        keys = {}
        for kid, value in parsed.items():
            if not isinstance(value, str):
                raise ConfigError(f"TRIGGER_KEYS[{kid!r}] must be a string")
            keys[str(kid)] = _key(value, f"TRIGGER_KEYS[{kid!r}]")
        return keys
    if secret:
        return {"default": _key(secret, "TRIGGER_SECRET")}
    raise ConfigError("no trigger key: set TRIGGER_SECRET (or TRIGGER_KEYS, or TRIGGER_SECRET_ARN)")


def _key(value: str, name: str) -> Secret:
    if not value.lstrip().startswith("-----BEGIN") and len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{name} is too short: an HMAC secret needs {MIN_SECRET_LENGTH}+ characters")
    return Secret(value)


def _algorithms(raw: str) -> tuple[str, ...]:
    names = tuple(a.strip() for a in raw.split(",") if a.strip())
    known = HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS
    unknown = [a for a in names if a not in known]
    if not names or unknown:
        raise ConfigError(
            f"TRIGGER_ALGORITHMS has unsupported {unknown or 'nothing'}; choose from {sorted(known)}"
        )
    return names


def _ledger_url(url: str) -> str:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in LEDGER_SCHEMES:
        raise ConfigError(
            f"LEDGER_URL scheme {scheme or url!r} is not supported; use sqlite:///path or postgresql://..."
        )
    return url


def _timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"BATCH_TIMEZONE {name!r} is not an IANA time zone (e.g. Asia/Tokyo)") from None


def _log_level(name: str | None) -> int:
    from service.logs import level_from_name

    try:
        return level_from_name(name)
    except ValueError:
        raise ConfigError(f"LOG_LEVEL {name!r} is not a level (DEBUG, INFO, WARNING, ERROR)") from None


def _optional_secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


def _seconds(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    return _integer(env, name, default, minimum=minimum, maximum=7 * 24 * 3600)
