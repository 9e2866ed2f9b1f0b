"""The `batch-trigger` command line (entry point `service.cli:main`)."""

from __future__ import annotations

from service.cli.main import main

__all__ = ["main"]
