from celery import shared_task

from flags import jobs


@shared_task(acks_late=True)
def run_periodic() -> dict:
    """Attribute evaluations and detect flag changes; idempotent, so safe to run twice."""
    done = jobs.run_periodic()
    return {"detected": done["detected"], **done["attribution"]}
