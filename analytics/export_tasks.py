"""Celery task of large CSV exports (thin: the work is analytics.services.export)."""

from celery import shared_task


@shared_task(name="analytics.export_build", acks_late=True)
def export_build(job_id: str) -> str | None:
    from analytics.services.export import export_job_run

    job = export_job_run(job_id=job_id)
    return None if job is None else job.status
