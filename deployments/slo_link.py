"""What deploy analysis reads from the slo app: budgets and alerts.

The one place that knows slo's models, so the gate and the budget impact
change together if slo does.
"""

import logging
from datetime import datetime

from slo import status as slo_status
from slo.models import SLO, Alert

logger = logging.getLogger(__name__)


def slos_of(service: str):
    return SLO.objects.for_service(service)


def exhausted_budgets(service: str, *, now: datetime) -> list[str]:
    """A sentence for each SLO of the service whose error budget is spent.

    SLOs still learning (young, or with few events) are left out by slo, so a
    handful of events never blocks a deploy.
    """
    return [
        f"SLO {slo.name} has exhausted its {slo.window} error budget "
        f"({state.budget_remaining_pct:.1f}% remaining): the error budget policy "
        "stops changes other than urgent fixes."
        for slo, state in slo_status.spent_budgets(service, now=now)
    ]


def firing_page_alerts(service: str) -> list[Alert]:
    return list(Alert.objects.open().pages().for_service(service).select_related("slo"))


def firing_alert_reasons(service: str) -> list[str]:
    return [
        f"Page alert firing on SLO {alert.slo.name} since {alert.fired_at:%Y-%m-%d %H:%M} UTC: "
        f"burn rate {alert.long_burn_rate:.1f}× over {alert.windows} "
        f"(threshold {alert.threshold:.2f}×)."
        for alert in firing_page_alerts(service)
    ]


def open_page_alerts(*, since: datetime) -> list[Alert]:
    """Page alerts still firing that fired since `since`: regressions to explain."""
    return list(Alert.objects.open().pages().fired_since(since).select_related("slo"))


def alert_scope(alert: Alert) -> tuple[str, str]:
    """The service and route an alert is about ('' for every route)."""
    route = alert.slo.route
    return alert.slo.service, "" if route.endswith("*") else route


def budget_impact(service: str, version: str, since: datetime, *, now: datetime) -> list[dict]:
    """For each SLO of the service, the share of its budget this version has used.

    Every figure comes from one slo status: the version's share is part of the
    window's consumed share, and consumed + remaining = 100%.
    """
    return [
        {
            "slo_id": use.slo.pk,
            "slo": use.slo.name,
            "objective": float(use.slo.objective),
            "window": use.slo.window,
            "unit": use.status.unit,
            "bad": use.bad,
            "budget_total": use.status.budget_total,
            "budget_consumed_pct": use.consumed_pct,
            "window_consumed_pct": use.status.budget_consumed_pct,
            "budget_remaining_pct": use.status.budget_remaining_pct,
            "learning": use.status.learning,
        }
        for use in slo_status.version_budget_use(service, version, since, now=now)
    ]
