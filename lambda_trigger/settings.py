"""Lambda configuration from the environment, parsed once per container and failing loudly."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import SplitResult, urlsplit

from lambda_trigger.contract import MAX_TOKEN_LIFETIME, check_job_name

DEFAULT_AUDIENCE = "batch-trigger"
# Algorithms the service may be configured to accept; asymmetric ones need `cryptography`.
ALGORITHMS = ("HS256", "HS384", "HS512", "EdDSA", "ES256", "RS256")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_TARGET_GROUP_ARN = re.compile(
    r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/[^/]+/[0-9a-f]+$"
)


class ConfigurationError(ValueError):
    """The Lambda's environment is missing a value or holds one it cannot use."""


class SlackSettings(NamedTuple):
    """Where alerts go: a webhook URL, or the ARN of a secret holding one (or neither)."""

    webhook_url: str | None = None  # the URL is a credential: never in the repr
    webhook_secret_arn: str | None = None
    timeout: float = 3.0

    def __repr__(self) -> str:
        url = "'********'" if self.webhook_url else "None"
        return f"SlackSettings(webhook_url={url}, webhook_secret_arn={self.webhook_secret_arn!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlackSettings:
        """Read `SLACK_WEBHOOK_URL` / `SLACK_WEBHOOK_SECRET_ARN` / `SLACK_TIMEOUT_SECONDS`."""
        url = _text(env, "SLACK_WEBHOOK_URL")
        arn = _arn(env, "SLACK_WEBHOOK_SECRET_ARN")
        if url and arn:
            raise ConfigurationError("set SLACK_WEBHOOK_URL or SLACK_WEBHOOK_SECRET_ARN, not both")
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError("SLACK_WEBHOOK_URL must be an http(s) URL")
        return cls(url, arn, _number(env, "SLACK_TIMEOUT_SECONDS", 3.0, 0.1, 30.0))


class FleetSettings(NamedTuple):
    """How to reach each instance directly: broadcast jobs and the scale-in lifecycle hook."""

    broadcast_jobs: frozenset[str] = frozenset()
    target_group_arn: str | None = None
    autoscaling_group: str | None = None
    scheme: str = "http"
    path_prefix: str = ""  # where the service is mounted on an instance, e.g. "/batch"
    instance_port: int | None = None
    lifecycle_max_wait: float = 600.0
    lifecycle_heartbeat: float = 60.0
    lifecycle_poll: float = 5.0
    reach_timeout: float = 10.0  # how long an instance may not answer before it counts as gone

    @property
    def region(self) -> str | None:
        """The target group's region, which the AWS clients use (None: the runtime's region)."""
        return self.target_group_arn.split(":")[3] if self.target_group_arn else None

    @classmethod
    def from_env(cls, env: Mapping[str, str], app_path: str = "") -> FleetSettings:
        """Read `BROADCAST_JOBS`, `TARGET_GROUP_ARN`, `AUTOSCALING_GROUP_NAME`, `TARGET_*`, `LIFECYCLE_*`.

        `app_path` is APP_URL's path: by default an instance serves the API under the same prefix.
        """
        listed = (_text(env, "BROADCAST_JOBS") or "").split(",")
        jobs = frozenset(name.strip() for name in listed if name.strip())
        for name in sorted(jobs):
            try:
                check_job_name(name)
            except ValueError as exc:
                raise ConfigurationError(f"BROADCAST_JOBS must list job names: {exc}") from None
        arn = _text(env, "TARGET_GROUP_ARN")
        if arn and not _TARGET_GROUP_ARN.match(arn):
            raise ConfigurationError(f"TARGET_GROUP_ARN must be an ELB target group ARN, not {arn!r}")
        if jobs and not arn:
            raise ConfigurationError("BROADCAST_JOBS needs TARGET_GROUP_ARN, whose targets are the fleet")
        scheme = (_text(env, "TARGET_SCHEME") or "http").lower()
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"TARGET_SCHEME must be http or https, not {scheme!r}")
        prefix = _text(env, "TARGET_PATH_PREFIX")
        prefix = app_path if prefix is None else prefix
        if prefix and (not prefix.startswith("/") or "?" in prefix or "#" in prefix):
            shown = redact_url(prefix)  # someone may have pasted a whole URL, credentials and all
            raise ConfigurationError(f"TARGET_PATH_PREFIX must be a path starting with '/', not {shown!r}")
        return cls(
            broadcast_jobs=jobs,
            target_group_arn=arn,
            autoscaling_group=_text(env, "AUTOSCALING_GROUP_NAME"),
            scheme=scheme,
            path_prefix=prefix.rstrip("/"),
            instance_port=_port(env, "INSTANCE_PORT"),
            lifecycle_max_wait=_number(env, "LIFECYCLE_MAX_WAIT_SECONDS", 600.0, 0.0, 900.0),
            lifecycle_heartbeat=_number(env, "LIFECYCLE_HEARTBEAT_SECONDS", 60.0, 0.1, 3600.0),
            lifecycle_poll=_number(env, "LIFECYCLE_POLL_SECONDS", 5.0, 0.05, 300.0),
            reach_timeout=_number(env, "INSTANCE_REACH_SECONDS", 10.0, 0.1, 300.0),
        )


class Settings(NamedTuple):
    """Everything one container needs to turn events into signed trigger requests."""

    app_url: str
    secret: str | None = None  # never in a repr, hence never logged
    secret_arn: str | None = None
    kid: str | None = None
    algorithm: str = "HS256"
    audience: str = DEFAULT_AUDIENCE
    token_lifetime: int = 60
    rule_jobs: Mapping[str, str] = {}  # never mutated
    attempt_timeout: float = 10.0
    deadline: float = 60.0
    alert_reserve: float = 5.0
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    slack: SlackSettings = SlackSettings()
    fleet: FleetSettings = FleetSettings()
    log_level: str = "INFO"

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'********' if name == 'secret' and value else repr(value)}"
            for name, value in zip(self._fields, self, strict=True)
        )
        return f"Settings({shown})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse the environment; raise `ConfigurationError` naming the first bad variable."""
        app_url = _text(env, "APP_URL")
        if not app_url:
            raise ConfigurationError("APP_URL is required (the load balancer's base URL)")
        parts = _app_url_parts(app_url)
        secret, secret_arn = _text(env, "TRIGGER_SECRET"), _arn(env, "TRIGGER_SECRET_ARN")
        if bool(secret) == bool(secret_arn):
            raise ConfigurationError("set exactly one of TRIGGER_SECRET and TRIGGER_SECRET_ARN")
        algorithm = _text(env, "TRIGGER_ALGORITHM") or "HS256"
        if algorithm not in ALGORITHMS:
            raise ConfigurationError(f"TRIGGER_ALGORITHM must be one of {', '.join(ALGORITHMS)}")
        log_level = (_text(env, "LOG_LEVEL") or "INFO").upper()
        if log_level not in _LOG_LEVELS:
            raise ConfigurationError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
        return cls(
            app_url=app_url.rstrip("/"),
            secret=secret,
            secret_arn=secret_arn,
            kid=_text(env, "TRIGGER_KID"),
            algorithm=algorithm,
            audience=_text(env, "TRIGGER_AUDIENCE") or DEFAULT_AUDIENCE,
            token_lifetime=int(_number(env, "TOKEN_LIFETIME_SECONDS", 60, 5, MAX_TOKEN_LIFETIME)),
            rule_jobs=_rule_jobs(env),
            attempt_timeout=_number(env, "ATTEMPT_TIMEOUT_SECONDS", 10.0, 0.1, 300.0),
            deadline=_number(env, "DEADLINE_SECONDS", 60.0, 0.1, 900.0),
            alert_reserve=_number(env, "ALERT_RESERVE_SECONDS", 5.0, 0.0, 60.0),
            backoff_base=_number(env, "BACKOFF_BASE_SECONDS", 0.5, 0.001, 60.0),
            backoff_max=_number(env, "BACKOFF_MAX_SECONDS", 8.0, 0.001, 300.0),
            slack=SlackSettings.from_env(env),
            fleet=FleetSettings.from_env(env, parts.path),
            log_level=log_level,
        )


def redact_url(url: str) -> str:
    """`url` fit for a log or an alert: userinfo, query and fragment replaced by `***`.

    Deliberately blunt, as it also runs on URLs that do not parse: everything between the
    scheme and the last `@` is userinfo (a password may hold `/`, `?` or `#`), and everything
    after the first `?` or `#` that follows is a query or fragment (either may carry a key).
    """
    scheme, sep, rest = url.partition("://")
    head = scheme + sep if sep else ""
    rest = rest if sep else url
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    return head + (rest[: cut + 1] + "***" if cut >= 0 else rest)


def _app_url_parts(app_url: str) -> SplitResult:
    shown = redact_url(app_url)  # never the raw value: it may hold credentials
    if "@" in app_url:
        # Anywhere, not only in the authority: a password holding '/' moves the rest into the
        # path. urllib would not send credentials anyway; the service trusts the signed token.
        raise ConfigurationError(f"APP_URL must not hold credentials (user:password@), not {shown!r}")
    if "?" in app_url or "#" in app_url:
        raise ConfigurationError(f"APP_URL must be a base URL without '?' or '#', not {shown!r}")
    try:
        parts = urlsplit(app_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        raise ConfigurationError(f"APP_URL is not a valid URL: {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"APP_URL must be an http(s) URL with a host, not {shown!r}")
    if not app_url.isprintable() or any(char.isspace() for char in app_url):
        # urlsplit silently drops tabs and newlines; the URL would not be the one configured.
        raise ConfigurationError(f"APP_URL must not contain spaces or control characters: {shown!r}")
    return parts


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _arn(env: Mapping[str, str], name: str) -> str | None:
    value = _text(env, name)
    if value and not _ARN.match(value):
        raise ConfigurationError(f"{name} must be a Secrets Manager secret ARN, not {value!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, not {raw}")
    return value


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = _text(env, name)
    if raw is not None and not (raw.isdigit() and 1 <= int(raw) <= 65535):
        raise ConfigurationError(f"{name} must be a TCP port (1-65535), not {raw!r}")
    return int(raw) if raw is not None else None


def _rule_jobs(env: Mapping[str, str]) -> dict[str, str]:
    raw = _text(env, "RULE_JOBS")
    if raw is None:
        return {}
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"RULE_JOBS is not valid JSON: {exc.msg}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise ConfigurationError('RULE_JOBS must be a JSON object {"RuleName": "job", ...}')
    return mapping
