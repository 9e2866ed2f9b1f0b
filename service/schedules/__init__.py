"""Schedules as code: expressions with EventBridge Scheduler's semantics, and their sync to AWS."""

from __future__ import annotations

from service.schedules.cron import ScheduleError
from service.schedules.expressions import Schedule, zone_of

__all__ = ["Schedule", "ScheduleError", "zone_of"]
