"""Webhook targets, and every notification sent to them as a Delivery.

This app sits below all the others and knows none of them: a delivery names
what it is about with a plain `subject` ("slo.alert:12",
"deployments.deployment:7"), never a foreign key into another app.
"""

from django.db import models
from django.utils import timezone


class WebhookKind(models.TextChoices):
    JSON = "json", "Generic JSON"
    SLACK = "slack", "Slack-compatible"


class WebhookTarget(models.Model):
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=1000)
    kind = models.CharField(max_length=10, choices=WebhookKind, default=WebhookKind.JSON)
    severities = models.JSONField(
        default=list, blank=True, help_text="Severities to send (page, ticket); empty for all."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return self.name

    def wants(self, severity: str) -> bool:
        return not self.severities or severity in self.severities


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Delivery(models.Model):
    """One message to one webhook target, rendered for it, with its attempts."""

    subject = models.CharField(
        max_length=200, db_index=True, help_text="What it is about: '<app>.<model>:<id>'."
    )
    target = models.ForeignKey(WebhookTarget, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response_status = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.event} {self.subject} → {self.target} ({self.status})"
