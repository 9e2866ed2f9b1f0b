"""The growth section's jobs: the 200 daily jobs of the bulk history (tests.support.bulk), beside
the shipped ones."""

from __future__ import annotations

from service.jobs import JobContext, job
from tests.support.bulk import job_names


def _nothing(ctx: JobContext) -> None:
    """The growth section never runs a batch: it measures the ledger's reads and sweeps."""


for _name in job_names():
    job(_name, schedule="0 0 * * *", missed_after=3600)(_nothing)
