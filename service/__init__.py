"""batch-trigger: scheduled batches that run once across an autoscaled fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from service.jobs import JobContext, RunCancelled, job

if TYPE_CHECKING:
    from service.web.extension import BatchTrigger
    from service.web.factory import create_app

__all__ = ["BatchTrigger", "JobContext", "RunCancelled", "create_app", "job"]


def __getattr__(name: str) -> Any:
    # Flask is imported only by what serves HTTP, not by a batch module that imports `job`.
    if name == "create_app":
        from service.web.factory import create_app

        return create_app
    if name == "BatchTrigger":
        from service.web.extension import BatchTrigger

        return BatchTrigger
    raise AttributeError(name)
