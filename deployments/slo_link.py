"""What deploy analysis reads from the slo app: budgets and alerts.

The one place that knows slo's models, so the gate and the budget impact
change together if slo does.
"""

import logging
from datetime import datetime

from django.db import connection

from slo import minutes as slo_minutes
from slo import status as slo_status
from slo.models import SLO, Alert, Budgeting, Severity

logger = logging.getLogger(__name__)


def slos_of(service: str):
    return SLO.objects.filter(service=service).order_by("name")


def exhausted_budgets(service: str, *, now: datetime) -> list[str]:
    """A sentence for each SLO of the service whose error budget is spent."""
    reasons = []
    for slo in slos_of(service):
        state = slo_status.status(slo, now=now, history=False)
        if state.total and state.budget_remaining_pct <= 0:
            reasons.append(
                f"SLO {slo.name} has exhausted its {slo.window} error budget "
                f"({state.budget_remaining_pct:.1f}% remaining): the error budget policy "
                "stops changes other than urgent fixes."
            )
    return reasons


def firing_page_alerts(service: str) -> list[Alert]:
    return list(
        Alert.objects.filter(
            slo__service=service, severity=Severity.PAGE, resolved_at__isnull=True
        ).select_related("slo")
    )


def firing_alert_reasons(service: str) -> list[str]:
    return [
        f"Page alert firing on SLO {alert.slo.name} since {alert.fired_at:%Y-%m-%d %H:%M} UTC: "
        f"burn rate {alert.long_burn_rate:.1f}× over {alert.windows} "
        f"(threshold {alert.threshold:.2f}×)."
        for alert in firing_page_alerts(service)
    ]


def open_page_alerts(*, since: datetime) -> list[Alert]:
    """Page alerts still firing that fired since `since`: regressions to explain."""
    return list(
        Alert.objects.filter(
            severity=Severity.PAGE, resolved_at__isnull=True, fired_at__gte=since
        ).select_related("slo")
    )


def alert_scope(alert: Alert) -> tuple[str, str]:
    """The service and route an alert is about ('' for every route)."""
    route = alert.slo.route
    return alert.slo.service, "" if route.endswith("*") else route


def budget_impact(service: str, version: str, since: datetime, *, now: datetime) -> list[dict]:
    """For each SLO of the service, the share of its budget this version has used."""
    impacts = []
    for slo in slos_of(service):
        state = slo_status.status(slo, now=now, history=False)
        bad, unit = _bad_units_since(slo, version, since, now)
        consumed = 100 * bad / state.budget_total if state.budget_total else None
        impacts.append(
            {
                "slo_id": slo.pk,
                "slo": slo.name,
                "objective": float(slo.objective),
                "window": slo.window,
                "unit": unit,
                "bad": bad,
                "budget_total": state.budget_total,
                "budget_consumed_pct": consumed,
                "budget_remaining_pct": state.budget_remaining_pct,
            }
        )
    return impacts


def _bad_units_since(slo: SLO, version: str, since: datetime, now: datetime) -> tuple[int, str]:
    selection, selection_params = slo_minutes.span_selection_sql(slo)
    good, good_params = slo_minutes.good_condition_sql(slo)
    if slo.budgeting == Budgeting.TIMESLICES:
        # Timeslice budgets are minutes, and a minute is not one version's: count
        # the bad minutes since the deploy.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM slo_slominute WHERE slo_id = %s AND minute >= %s "
                "AND minute < %s AND good < %s::numeric * total",
                [slo.pk, since, now, slo.timeslice_target / 100],
            )
            return cursor.fetchone()[0], "minutes"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FILTER (WHERE NOT ({good})) FROM telemetry_span AS span "
            f"WHERE {selection} AND span.service_version = %s "
            "AND span.start_time >= %s AND span.start_time < %s",
            [*good_params, *selection_params, version, since, now],
        )
        return cursor.fetchone()[0], "events"
