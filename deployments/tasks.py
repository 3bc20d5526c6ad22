"""Celery tasks of deploy analysis: thin, each enqueues or runs one job.

deployments/jobs.py returns the work and these tasks enqueue it, as slo/tasks.py
does. A look's task retries on any error; should it still fail, or expire
unrun, the look's lease runs out and the next periodic pass claims it again.
A new fail is queued in the notifications outbox by the look itself.
"""

from celery import shared_task

from deployments import jobs

# A look queued longer than this is stale; its lease will bring it back.
LOOK_EXPIRES_SECONDS = 600


@shared_task(acks_late=True)
def run_periodic() -> dict:
    """Detect deploys and fan the due looks out to workers."""
    work = jobs.run_periodic()
    for deployment_id, minutes in work.looks:
        evaluate_checkpoint.apply_async(
            args=[deployment_id, minutes], expires=LOOK_EXPIRES_SECONDS
        )
    return {
        "detected": work.detected,
        "evaluated": len(work.looks),
        "alerts_explained": work.alerts_explained,
        "route_shifts": work.route_shifts,
    }


@shared_task(
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=5,
)
def evaluate_checkpoint(deployment_id: int, checkpoint: int) -> bool:
    """Take one look; True if the deploy newly failed."""
    return jobs.take_look(deployment_id, checkpoint)
