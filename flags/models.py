from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from deployments.models import AbstractFinding, Verdict

NOT_JUDGED_REASON = "Not judged yet: the first look comes a minute after the change."


class ChangeSource(models.TextChoices):
    API = "api"
    DETECTED = "detected"
    UNLEASH = "unleash"
    FLAGSMITH = "flagsmith"
    LAUNCHDARKLY = "launchdarkly"


class FlagChangeQuerySet(models.QuerySet):
    def for_flag(self, flag: str):
        return self.filter(flag=flag).order_by("-at", "-id")

    def latest_for(self, flag: str):
        return self.for_flag(flag).first()

    def due(self, now: datetime):
        return self.filter(next_look_at__lte=now).order_by("next_look_at")

    def near(self, flag: str, environment: str, at: datetime):
        """The change a post or a detection at `at` should merge with, if any."""
        window = timedelta(minutes=settings.MONOENV_FLAG_MERGE_MINUTES)
        rows = self.filter(flag=flag, at__range=(at - window, at + window))
        if environment:
            rows = rows.filter(environment__in=[environment, ""])
        return rows.order_by("-at", "-id").first()


class FlagChange(models.Model):
    """One change of a flag: posted, sent by a flag system's webhook, or detected.

    A posted change and the shift telemetry detected for it are one change
    (flags/changes.py merges them): `source` names who told us first among
    the posters, `detected_at` when the variant shares were seen to move.
    """

    flag = models.TextField()
    environment = models.TextField(blank=True, help_text="Empty: any, as the spans say.")
    services = models.JSONField(default=list, help_text="The services that evaluate the flag.")
    at = models.DateTimeField(default=timezone.now)
    actor = models.TextField(blank=True)
    description = models.TextField(blank=True)
    url = models.TextField(blank=True)
    rollout = models.JSONField(default=dict, help_text="Variant to percent, as posted.")
    source = models.CharField(max_length=20, choices=ChangeSource, default=ChangeSource.API)
    detected_at = models.DateTimeField(null=True, blank=True)
    shares_before = models.JSONField(default=dict, help_text="Cohort to share, measured.")
    shares_after = models.JSONField(default=dict)
    detection_p_value = models.FloatField(null=True, blank=True)
    control = models.TextField(blank=True, help_text="The cohort the others are judged against.")
    control_reason = models.TextField(blank=True)
    verdict = models.CharField(max_length=20, choices=Verdict, default=Verdict.PENDING)
    verdict_reason = models.TextField(blank=True, default=NOT_JUDGED_REASON)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    # The next look (minutes after the change) and when it is due; null once done.
    next_look = models.PositiveIntegerField(null=True, blank=True)
    next_look_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = FlagChangeQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["flag", "-at"], name="flag_change_flag_at"),
            models.Index(fields=["-at"], name="flag_change_at"),
        ]

    def __str__(self) -> str:
        return f"{self.flag} ({self.at:%Y-%m-%d %H:%M}, {self.source})"

    def link(self) -> str:
        return f"{settings.MONOENV_PUBLIC_URL}/api/v1/flags/changes/{self.pk}"

    def schedule_look(self, minutes: int | None) -> None:
        """Set the next look; evaluations and spans get a little time to arrive first."""
        lag = timedelta(seconds=settings.MONOENV_DEPLOY_EVALUATION_LAG_SECONDS)
        self.next_look = minutes
        self.next_look_at = None if minutes is None else self.at + timedelta(minutes=minutes) + lag


class FlagSettings(models.Model):
    """Per-flag choices a user makes; today the control cohort."""

    flag = models.TextField(unique=True)
    control = models.TextField(blank=True, help_text="Overrides the automatic control choice.")

    def __str__(self) -> str:
        return self.flag


class FlagVerdictRecord(models.Model):
    """The verdict of one look at a change: its history, as deploys keep theirs."""

    change = models.ForeignKey(FlagChange, on_delete=models.CASCADE, related_name="verdict_records")
    minute = models.PositiveIntegerField(help_text="Minutes after the change.")
    verdict = models.CharField(max_length=20, choices=Verdict)
    reason = models.TextField()
    control = models.TextField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["minute"]
        constraints = [
            models.UniqueConstraint(fields=["change", "minute"], name="flag_verdict_minute_unique")
        ]

    def __str__(self) -> str:
        return f"{self.change} @{self.minute}m: {self.verdict}"


class FlagFinding(AbstractFinding):
    """One comparison of a variant's cohort with the control's, on one service and route."""

    change = models.ForeignKey(FlagChange, on_delete=models.CASCADE, related_name="findings")
    record = models.ForeignKey(FlagVerdictRecord, on_delete=models.CASCADE, related_name="findings")
    service = models.TextField()
    variant = models.TextField()

    class Meta:
        ordering = ["-significant", "service", "variant", "route", "metric"]

    def __str__(self) -> str:
        return f"{self.variant} {super().__str__()}"
