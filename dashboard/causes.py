"""The change that likely started a regression: the top suspect deployments recorded.

Suspects (deploys and flag changes) are ranked, and the ones with evidence
chosen, by deployments (deployments/suspects.py) for deploys, SLO alerts and
route shifts; this only shapes the top one for a page.
"""

from collections import defaultdict

from django.urls import reverse

from deployments import suspects
from deployments.models import Suspect


def of_alerts(alert_ids: list[int]) -> dict[int, dict]:
    """The top suspect with evidence of each alert that has one, by alert id, in one query."""
    if not alert_ids:
        return {}
    by_alert: dict[int, list[Suspect]] = defaultdict(list)
    for suspect in Suspect.objects.filter(alert_id__in=alert_ids).select_related("suspect"):
        by_alert[suspect.alert_id].append(suspect)
    found = {}
    for alert_id, recorded in by_alert.items():
        best = suspects.shown(recorded)[:1]
        if best:
            found[alert_id] = _cause(best[0])
    return found


def _cause(suspect: Suspect) -> dict:
    if not suspect.is_deploy:
        # A flag change: pages show "flag new-checkout", as they show "payments v5".
        kind, _, name = suspect.suspect_label.partition(" ")
        return {"service": kind, "version": name, "verdict": "", "url": suspect.suspect_link,
                "started_at": suspect.suspect_at.isoformat() if suspect.suspect_at else None,
                "evidence": suspect.evidence}  # fmt: skip
    deploy = suspect.suspect
    return {
        "service": deploy.service,
        "version": deploy.version,
        "verdict": deploy.verdict,
        "started_at": deploy.deployed_at.isoformat(),
        "url": reverse("dashboard:deploy", args=[deploy.pk]),
        "evidence": suspect.evidence,
    }
