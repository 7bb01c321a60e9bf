"""Data life cycle: the daily retention run (analytics.services.retention), on the rollups queue."""

from __future__ import annotations

from analytics.services.retention import retention_enforce
from analytics.tasks.base import retried_task


@retried_task(
    "analytics.tasks.retention_enforce_task",
    expires=23 * 3600,
    soft_time_limit=1800,
    time_limit=1900,
)
def retention_enforce_task(self) -> dict:
    """Create the coming months' partitions, drop expired ones, remove expired rows."""
    result = retention_enforce()
    return {
        "created": result.created,
        "dropped": result.dropped,
        "deferred": result.deferred,
        "deleted": result.deleted,
    }
