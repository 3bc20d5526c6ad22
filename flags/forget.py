"""Forgetting services: the flag changes only they evaluated go, with their looks and findings.

A change names the services that evaluate its flag (`FlagChange.services`).
One evaluated by none but forgotten services goes, with its verdict records
and findings. One that other services evaluate too stays: the forgotten
services leave its list, and their findings go. A flag left with no change
loses its settings (the control chosen for it). A change that names no
service names none of these, and stays.

The evaluations themselves are telemetry's rows, and telemetry/forget.py
deletes them; deployments' suspect rows that name a change that goes are
deleted through deployments/forget.py.
"""

from functools import reduce
from operator import or_

from django.db import transaction
from django.db.models import Q

from deployments import forget as deployments_forget
from flags import suspects
from flags.models import FlagChange, FlagFinding, FlagSettings


def forget_services(names: list[str]) -> int:
    """Delete what flags keeps about the named services; return how many flag changes went."""
    if not names:
        return 0
    forgotten = set(names)
    naming_any = reduce(or_, (Q(services__contains=[name]) for name in forgotten))
    with transaction.atomic():
        changes = list(FlagChange.objects.filter(naming_any).only("id", "flag", "services"))
        gone = [change for change in changes if set(change.services) <= forgotten]
        shared = [change for change in changes if not set(change.services) <= forgotten]
        deployments_forget.forget_changes(suspects.KIND, [change.pk for change in gone])
        FlagChange.objects.filter(pk__in=[change.pk for change in gone]).delete()
        for change in shared:
            change.services = [name for name in change.services if name not in forgotten]
            change.save(update_fields=["services"])
        FlagFinding.objects.filter(change__in=shared, service__in=forgotten).delete()
        _forget_settings_of_flags_without_changes({change.flag for change in gone})
    return len(gone)


def _forget_settings_of_flags_without_changes(flags: set[str]) -> None:
    still_changed = FlagChange.objects.filter(flag__in=flags).values_list("flag", flat=True)
    FlagSettings.objects.filter(flag__in=flags - set(still_changed)).delete()
