"""Forgetting services: their deploys (with verdicts, findings, suspects) and route shifts.

Suspect rows name alerts and other apps' changes by plain ids (see
deployments.models.Suspect), so no foreign key cascades them: the services'
SLO alerts are forgotten here, and an app above that deletes its changes
calls `forget_changes` for theirs.
"""

from django.db.models import Q

from deployments.models import Deployment, RouteShift, Suspect
from slo.models import Alert


def forget_services(names: list[str]) -> int:
    """Delete the named services' deploys and route shifts; return how many went."""
    alerts = Alert.objects.filter(slo__service__in=names).values("id")
    Suspect.objects.filter(alert_id__in=alerts).delete()
    deploys = Deployment.objects.filter(service__in=names).delete()[1].get(
        Deployment._meta.label, 0
    )
    shifts = RouteShift.objects.filter(service__in=names).delete()[1].get(
        RouteShift._meta.label, 0
    )
    return deploys + shifts


def forget_changes(kind: str, ids: list[int]) -> None:
    """Delete the suspect rows naming these changes of `kind`, as suspect or as regression."""
    if ids:
        Suspect.objects.filter(
            Q(suspect_kind=kind, suspect_change_id__in=ids) | Q(change_kind=kind, change_id__in=ids)
        ).delete()
