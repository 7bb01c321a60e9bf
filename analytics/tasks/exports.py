"""Large CSV exports: a thin task, the work is analytics.services.export (default queue)."""

from __future__ import annotations

from celery import shared_task

from analytics.services.export import export_job_run


@shared_task(name="analytics.export_build", acks_late=True)
def export_build(job_id: str) -> str | None:
    """Write one export job's file; its status, or None when the job is gone."""
    job = export_job_run(job_id=job_id)
    return None if job is None else job.status
