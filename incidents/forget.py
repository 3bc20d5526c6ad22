"""Forgetting services: the incidents only they were in go, with everything of theirs.

An incident lists the services it touched (`Incident.services`). One that
touched none but forgotten services goes, with its signals, timeline,
post-mortem and action items (they cascade). One that touched other services
too stays: the forgotten services leave its list, and their signals go, since
the incident's story is still true for the rest. The DORA outcome rows
(`ChangeOutcome`) follow their deploys, which deployments/forget.py deletes.
"""

from django.db import transaction

from incidents.models import Incident, IncidentSignal


def forget_services(names: list[str]) -> int:
    """Delete what incidents keeps about the named services; return how many incidents went."""
    if not names:
        return 0
    forgotten = set(names)
    with transaction.atomic():
        touched = list(Incident.objects.filter(services__overlap=names).only("id", "services"))
        gone = [incident.pk for incident in touched if set(incident.services) <= forgotten]
        Incident.objects.filter(pk__in=gone).delete()
        for incident in touched:
            if incident.pk in gone:
                continue
            incident.services = [name for name in incident.services if name not in forgotten]
            incident.save(update_fields=["services", "updated_at"])
        IncidentSignal.objects.filter(service__in=forgotten).delete()
    return len(gone)
