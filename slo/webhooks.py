"""Alert notifications: what a firing or resolved alert says, handed to the outbox.

The message is queued in the evaluator's transaction (notifications/outbox.py
records one Delivery per interested target and sends it with its one retry
policy); rendering and Slack escaping are the outbox's, not ours.
"""

from datetime import datetime, timedelta

from django.conf import settings

from notifications import outbox
from notifications.message import Message
from notifications.models import Delivery
from slo import maths
from slo.models import Alert
from slo.status import Status


def queue(alert: Alert, event: str, slo_status: Status, *, now: datetime) -> list[Delivery]:
    """Queue this alert event ("firing" or "resolved") for every interested target."""
    return outbox.queue(alert_message(alert, event, slo_status), now=now)


def alert_message(alert: Alert, event: str, slo_status: Status) -> Message:
    """Everything needed to act without a dashboard."""
    slo = alert.slo
    exhaustion = slo_status.time_to_exhaustion
    long, short = (maths.format_duration(w) for w in (alert.long_window, alert.short_window))
    return Message(
        event=event,
        severity=alert.severity,
        summary=_summary(alert, event, slo_status, long, short),
        link=f"{settings.MONOENV_PUBLIC_URL}/api/v1/slos/{slo.pk}",
        link_text=slo.name,
        subject=f"slo.alert:{alert.pk}",
        details={
            "slo": {
                "id": slo.pk,
                "name": slo.name,
                "service": slo.service,
                "route": slo.route,
                "sli": slo.sli,
                "objective": float(slo.objective),
                "window": slo.window,
            },
            "alert": {
                "id": alert.pk,
                "long_window": long,
                "short_window": short,
                "threshold": alert.threshold,
                "long_burn_rate": alert.long_burn_rate,
                "short_burn_rate": alert.short_burn_rate,
                "fired_at": alert.fired_at.isoformat(),
                "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            },
            "budget_consumed_pct": 100 - slo_status.budget_remaining_pct,
            "budget_remaining_pct": slo_status.budget_remaining_pct,
            "time_to_exhaustion_seconds": (
                exhaustion.total_seconds() if exhaustion is not None else None
            ),
        },
    )


def _summary(alert: Alert, event: str, slo_status: Status, long: str, short: str) -> str:
    slo = alert.slo
    if event == "firing":
        return (
            f"[{alert.severity.upper()}] {slo.name}: {slo.service} is burning its error budget "
            f"{alert.long_burn_rate:.1f}× over {long} and {alert.short_burn_rate:.1f}× over "
            f"{short} (threshold {alert.threshold:.2f}×). "
            f"{100 - slo_status.budget_remaining_pct:.1f}% of the {slo.window} budget is "
            f"consumed; {_exhaustion_text(slo_status.time_to_exhaustion)}."
        )
    return (
        f"[RESOLVED] {slo.name}: the {long}/{short} burn rate is back under "
        f"{alert.threshold:.2f}×. {slo_status.budget_remaining_pct:.1f}% of the budget remains."
    )


def _exhaustion_text(exhaustion: timedelta | None) -> str:
    if exhaustion is None:
        return "at the 1h burn rate it is not running out"
    if not exhaustion:
        return "the budget is exhausted"
    return f"at the 1h burn rate it runs out in {maths.format_duration(exhaustion)}"
