"""Forgetting services: their deploys (with verdicts, findings, suspects) and route shifts."""

from deployments.models import Deployment, RouteShift


def forget_services(names: list[str]) -> int:
    """Delete the named services' deploys and route shifts; return how many went."""
    deploys = Deployment.objects.filter(service__in=names).delete()[1].get(
        Deployment._meta.label, 0
    )
    shifts = RouteShift.objects.filter(service__in=names).delete()[1].get(
        RouteShift._meta.label, 0
    )
    return deploys + shifts
