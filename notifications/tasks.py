from celery import shared_task

from notifications import outbox


@shared_task(acks_late=True)
def send_due() -> int:
    """Send the due deliveries; beat runs it every minute. Claims make a rerun harmless."""
    return outbox.send_due()
