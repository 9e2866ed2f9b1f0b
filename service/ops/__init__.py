"""Housekeeping beside the web tier: the keeper, the missed-run watchdog, drain and metrics."""
