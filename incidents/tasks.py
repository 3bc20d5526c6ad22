from celery import shared_task

from incidents import jobs


@shared_task(acks_late=True)
def poll() -> int:
    """Open and join incidents, then fan out their refresh; each expires with its minute."""
    report = jobs.poll()
    for incident_id in report.to_refresh:
        refresh_incident.apply_async(args=[incident_id], expires=55)
    refresh_outcomes.apply_async(expires=55)
    return len(report.to_refresh)


@shared_task(acks_late=True)
def refresh_incident(incident_id: int) -> None:
    jobs.refresh_incident(incident_id)


@shared_task(acks_late=True)
def refresh_outcomes() -> int:
    return jobs.refresh_outcomes()
