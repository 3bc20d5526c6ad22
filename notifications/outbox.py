"""The one outbox: every outbound notification is a Delivery, sent with one retry policy.

`queue()` records one pending Delivery per enabled target that wants the
message's severity, rendered for that target's kind, inside the caller's
transaction: the notification commits, or rolls back, with what it is about.
`send_due()` sends them afterwards (beat runs it every minute; the SLO
evaluator also runs it after its pass). A failed attempt is retried after 30 s,
then ×4 each time up to an hour, until MONOENV_WEBHOOK_MAX_ATTEMPTS; then the
delivery is marked failed. Every attempt is recorded (attempts, response
status, last error), and nothing here raises into its callers.
"""

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from notifications import render
from notifications.message import Message
from notifications.models import Delivery, DeliveryStatus, WebhookTarget

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
# Long enough for one attempt to time out; a crashed worker's claim then lapses.
CLAIM_SECONDS = 120
BATCH_SIZE = 500


class WebhookError(Exception):
    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


def retry_delay(attempts: int) -> timedelta:
    """30 s after the first failure, then ×4 each time, at most an hour."""
    return timedelta(seconds=min(FIRST_RETRY_SECONDS * 4 ** (attempts - 1), MAX_RETRY_SECONDS))


def queue(message: Message, *, now: datetime) -> list[Delivery]:
    """Record a pending delivery of the message for every interested target."""
    deliveries = [
        Delivery(
            subject=message.subject, target=target, event=message.event,
            payload=render.render(message, target.kind), next_attempt_at=now,
        )  # fmt: skip
        for target in WebhookTarget.objects.filter(enabled=True).order_by("pk")
        if target.wants(message.severity)
    ]
    return Delivery.objects.bulk_create(deliveries)


def send_due(*, now: datetime | None = None) -> int:
    """Attempt every pending delivery that is due; return how many were sent."""
    now = now or timezone.now()
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    sent = 0
    for delivery in due.select_related("target").order_by("next_attempt_at")[:BATCH_SIZE]:
        # Claim it: another worker that got there first has moved next_attempt_at on.
        claimed = Delivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, next_attempt_at=delivery.next_attempt_at
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
