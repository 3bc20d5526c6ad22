"""Forgetting services: their SLOs go, with their per-minute counts and alerts."""

from slo.models import SLO


def forget_services(names: list[str]) -> int:
    """Delete the SLOs of the named services; return how many SLOs went."""
    _, per_model = SLO.objects.filter(service__in=names).delete()
    return per_model.get(SLO._meta.label, 0)
