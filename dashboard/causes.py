"""The change that likely started a regression: the top suspect deployments recorded.

Suspects are ranked by deployments (deployments/suspects.py) for deploys,
SLO alerts and route shifts; this only shapes the top one for a page.
"""

from django.urls import reverse

from deployments.models import Suspect


def of_alerts(alert_ids: list[int]) -> dict[int, dict]:
    """The top-ranked suspect of each alert that has one, by alert id, in one query."""
    if not alert_ids:
        return {}
    found: dict[int, dict] = {}
    suspects = (
        Suspect.objects.filter(alert_id__in=alert_ids)
        .select_related("suspect")
        .order_by("alert_id", "rank")
    )
    for suspect in suspects:
        if suspect.alert_id not in found:
            deploy = suspect.suspect
            found[suspect.alert_id] = {
                "service": deploy.service,
                "version": deploy.version,
                "verdict": deploy.verdict,
                "started_at": deploy.deployed_at.isoformat(),
                "url": reverse("dashboard:deploy", args=[deploy.pk]),
                "evidence": suspect.evidence,
            }
    return found
