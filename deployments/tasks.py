from celery import shared_task

from deployments import jobs, verdicts


@shared_task(acks_late=True)
def run_periodic() -> dict:
    """Detect deploys and fan the due checkpoints out to workers."""
    return jobs.run_periodic(synchronous=False)


@shared_task(acks_late=True)
def evaluate_checkpoint(deployment_id: int, checkpoint: int) -> str:
    return verdicts.run_checkpoint(deployment_id, checkpoint).verdict
