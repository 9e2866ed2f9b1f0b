"""Secrets Manager reads for the service, imported only when a secret ARN is configured."""

from __future__ import annotations

from service.errors import ConfigError


def read_secret(arn: str) -> str:
    """Read a string secret by ARN; failures become one-line configuration errors."""
    import boto3  # deferred: boto3 is heavy and only needed with an ARN
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = boto3.client("secretsmanager").get_secret_value(SecretId=arn)
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(f"cannot read secret {arn}: {type(exc).__name__}") from None
    value = answer.get("SecretString")
    if not value:
        raise ConfigError(f"secret {arn} has no SecretString")
    return str(value)
