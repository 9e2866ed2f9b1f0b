"""Secrets Manager reads, cached for the container's life; boto3 is imported only when needed.

Named `aws_secrets` rather than `secrets` so that nothing can mistake it for the standard
library's `secrets` module.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

log = logging.getLogger(__name__)


class SecretUnavailable(RuntimeError):
    """A secret named by ARN could not be read (permissions, network, missing or binary value)."""


class SecretStore:
    """Reads each secret ARN at most once per container and keeps the value in memory."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._clients: dict[str, SecretsManagerClient] = {}
        self.reads = 0  # how many times Secrets Manager was actually asked (for logs and tests)

    def __repr__(self) -> str:
        return f"SecretStore(cached={len(self._values)}, reads={self.reads})"

    def get(self, arn: str) -> str:
        """Return the secret's `SecretString`, asking Secrets Manager only the first time."""
        if arn not in self._values:
            self._values[arn] = self._fetch(arn)
        return self._values[arn]

    def _fetch(self, arn: str) -> str:
        # Imported here, not at module level: a cold start without an ARN must not pay for
        # boto3 (hundreds of milliseconds), and the zip leaves it to the Lambda runtime.
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client(arn).get_secret_value(SecretId=arn)
        except (BotoCoreError, ClientError) as exc:
            # botocore's messages name the ARN and the error code, never the secret's value.
            raise SecretUnavailable(f"cannot read secret {arn}: {exc}") from exc
        finally:
            self.reads += 1
        value = response.get("SecretString")
        if not value:
            raise SecretUnavailable(f"secret {arn} has no SecretString (binary is not supported)")
        log.info("secret.read arn=%s", arn)
        # Verbatim, as the service reads the same secret: stripping here alone would make the
        # two sides sign and verify with different keys when the value ends in a newline.
        return value

    def _client(self, arn: str) -> SecretsManagerClient:
        # The ARN carries the secret's region, so the Lambda may live in another one.
        region = arn.split(":")[3]
        if region not in self._clients:
            import boto3

            self._clients[region] = boto3.client("secretsmanager", region_name=region)
        return self._clients[region]
