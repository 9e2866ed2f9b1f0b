"""Domain errors, each carrying its HTTP status and contract code; mapped to HTTP once, in api."""

from __future__ import annotations


class ConfigError(Exception):
    """Bad configuration: the process refuses to start with this one-line reason."""


class ServiceError(Exception):
    """An error with a place in the HTTP contract: `{"error": code, "message": text}`."""

    status = 500
    code = "internal"
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Malformed(ServiceError):
    status, code = 400, "malformed"


class TokenMissing(ServiceError):
    status, code = 401, "token_missing"


class TokenInvalid(ServiceError):
    status, code = 401, "token_invalid"


class TokenExpired(ServiceError):
    status, code = 401, "token_expired"


class TokenReplayed(ServiceError):
    status, code = 401, "token_replayed"


class JobMismatch(ServiceError):
    status, code = 403, "job_mismatch"


class InstanceMismatch(ServiceError):
    """A drain token names another instance: it must not drain (or read) this one."""

    status, code = 403, "instance_mismatch"


class UnknownJob(ServiceError):
    status, code = 404, "unknown_job"


class UntilPassed(ServiceError):
    """A pause asked to end at a time already past: it would end before it began."""

    status, code = 409, "until_passed"


class RunNotFound(ServiceError):
    status, code = 404, "not_found"


class RequestTimeout(ServiceError):
    """The request's body did not arrive within the time a client has to send its request."""

    status, code = 408, "request_timeout"


class BodyTooLarge(ServiceError):
    status, code = 413, "too_large"


class CorruptRecord(ServiceError):
    """A stored run that cannot be read back (written by hand or by an older release)."""

    status, code = 500, "corrupt_record"


class Draining(ServiceError):
    status, code, retry_after = 503, "draining", 1


class LedgerUnavailable(ServiceError):
    status, code, retry_after = 503, "ledger_unavailable", 2
