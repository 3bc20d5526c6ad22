from celery import shared_task

from flags import jobs


@shared_task(acks_late=True)
def run_periodic() -> dict:
    """Detect flag changes; idempotent, so safe to run twice."""
    return jobs.run_periodic()
