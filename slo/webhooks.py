"""Alert notifications to webhook targets, retried with backoff.

A notification becomes one Delivery per target, queued in the evaluator's
transaction and sent afterwards. A failed attempt is retried on a later pass
with exponential backoff; after MONOENV_WEBHOOK_MAX_ATTEMPTS it is recorded as
failed. Nothing here raises into the evaluator.
"""

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from slo import maths
from slo.models import Alert, Delivery, DeliveryStatus, WebhookKind, WebhookTarget
from slo.status import Status

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
# Long enough for one attempt to time out; a crashed worker's claim then lapses.
CLAIM_SECONDS = 120


class WebhookError(Exception):
    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


def retry_delay(attempts: int) -> timedelta:
    """30 s after the first failure, then ×4 each time, at most an hour."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 4 ** (attempts - 1), MAX_RETRY_SECONDS))


def queue(alert: Alert, event: str, slo_status: Status, *, now: datetime) -> list[Delivery]:
    """Create a pending delivery of this alert event for every interested target."""
    payload = explain(alert, event, slo_status)
    deliveries = []
    for target in WebhookTarget.objects.filter(enabled=True):
        if target.wants(alert.severity):
            shaped = slack_payload(payload) if target.kind == WebhookKind.SLACK else payload
            deliveries.append(
                Delivery(alert=alert, target=target, event=event, payload=shaped,
                         next_attempt_at=now)
            )  # fmt: skip
    return Delivery.objects.bulk_create(deliveries)


def explain(alert: Alert, event: str, slo_status: Status) -> dict:
    """The generic JSON payload: everything needed to act without a dashboard."""
    slo = alert.slo
    exhaustion = slo_status.time_to_exhaustion
    long, short = (maths.format_duration(w) for w in (alert.long_window, alert.short_window))
    if event == "firing":
        summary = (
            f"[{alert.severity.upper()}] {slo.name}: {slo.service} is burning its error budget "
            f"{alert.long_burn_rate:.1f}× over {long} and {alert.short_burn_rate:.1f}× over "
            f"{short} (threshold {alert.threshold:.2f}×). "
            f"{100 - slo_status.budget_remaining_pct:.1f}% of the {slo.window} budget is "
            f"consumed; {_exhaustion_text(exhaustion)}."
        )
    else:
        summary = (
            f"[RESOLVED] {slo.name}: the {long}/{short} burn rate is back under "
            f"{alert.threshold:.2f}×. {slo_status.budget_remaining_pct:.1f}% of the budget remains."
        )
    return {
        "event": event,
        "summary": summary,
        "severity": alert.severity,
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
        "url": f"{settings.MONOENV_PUBLIC_URL}/api/v1/slos/{slo.pk}",
    }


def _exhaustion_text(exhaustion: timedelta | None) -> str:
    if exhaustion is None:
        return "at the 1h burn rate it is not running out"
    if not exhaustion:
        return "the budget is exhausted"
    return f"at the 1h burn rate it runs out in {maths.format_duration(exhaustion)}"


def slack_payload(payload: dict) -> dict:
    summary = slack_escape(payload["summary"])
    link = f"<{slack_escape(payload['url'])}|{slack_escape(payload['slo']['name'])}>"
    # verbatim: Slack does not turn names in the text into links or mentions.
    return {
        "text": summary,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": summary, "verbatim": True}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": link, "verbatim": True}],
            },
        ],
    }


def slack_escape(text: str) -> str:
    """Slack's escaping: a service named `<!channel>` must not notify the channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def send_due(*, now: datetime | None = None) -> int:
    """Attempt every pending delivery that is due; return how many were sent."""
    now = now or timezone.now()
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    sent = 0
    for delivery in due.select_related("target").order_by("next_attempt_at")[:500]:
        # Claim it: another worker that got there first has moved next_attempt_at on.
        claimed = Delivery.objects.filter(
            pk=delivery.pk, next_attempt_at=delivery.next_attempt_at
        ).update(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS))
        if claimed:
            sent += _attempt(delivery, now=now)
    return sent


def _attempt(delivery: Delivery, *, now: datetime) -> bool:
    delivery.attempts += 1
    try:
        delivery.response_status = post_json(delivery.target.url, delivery.payload)
    except Exception as exc:  # noqa: BLE001 - any failure is recorded, never raised
        delivery.last_error = str(exc)[:2000]
        delivery.response_status = getattr(exc, "status", None)
        if delivery.attempts >= settings.MONOENV_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            logger.warning("webhook delivery %s failed for good: %s", delivery.pk, exc)
        else:
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        delivery.save()
        return False
    delivery.status = DeliveryStatus.SENT
    delivery.sent_at = now
    delivery.next_attempt_at = None
    delivery.last_error = ""
    delivery.save()
    return True


def post_json(url: str, payload: dict) -> int:
    """POST the payload; return the status, raising on anything but 2xx."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "Monoenv"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(
            request, timeout=settings.MONOENV_WEBHOOK_TIMEOUT_SECONDS
        ) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"HTTP {exc.code} from the webhook", status=exc.code) from exc
