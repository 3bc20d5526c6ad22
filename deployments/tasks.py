from celery import shared_task
from django.conf import settings

from deployments import jobs, verdicts


@shared_task(acks_late=True)
def run_periodic() -> dict:
    """Detect deploys and fan the due checkpoints out to workers."""
    return jobs.run_periodic(synchronous=False)


@shared_task(acks_late=True)
def evaluate_checkpoint(deployment_id: int, checkpoint: int) -> str:
    return verdicts.run_checkpoint(deployment_id, checkpoint).verdict


@shared_task(
    acks_late=True,
    autoretry_for=(Exception,),
    retry_backoff=30,
    retry_backoff_max=3600,
    max_retries=settings.MONOENV_WEBHOOK_MAX_ATTEMPTS - 1,
)
def notify_target(deployment_id: int, target_id: int) -> None:
    verdicts.notify_target(deployment_id, target_id)
