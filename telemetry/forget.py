"""Forgetting services: every telemetry row about them goes (the demo's clear_demo).

Spans, per-minute rollups, minutes waiting for a rollup, the per-day
inventory and flag evaluations: after this, nothing in telemetry remembers
the services.
"""

from django.db import connection

from telemetry.models import (
    FlagEvaluation,
    FlagEvaluationBatch,
    PendingMinute,
    RollupMinute,
    ServiceDay,
)


def forget_services(names: list[str]) -> int:
    """Delete the named services' telemetry; return how many rows went."""
    with connection.cursor() as cursor:
        # Partitioned and unmanaged: one statement, pruned by no partition key.
        cursor.execute("DELETE FROM telemetry_span WHERE service = ANY(%s)", [list(names)])
        removed = cursor.rowcount
    for model in (RollupMinute, PendingMinute, ServiceDay, FlagEvaluation, FlagEvaluationBatch):
        removed += model.objects.filter(service__in=names).delete()[0]
    return removed


def service_names() -> list[str]:
    """Every service telemetry has stored spans of (while they are kept)."""
    return list(ServiceDay.objects.order_by().values_list("service", flat=True).distinct())
