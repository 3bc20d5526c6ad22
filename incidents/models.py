"""Incidents, their timeline and post-mortem, and the delivery outcome of each change.

This app sits above deployments and flags: it reads alerts, verdicts, route
shifts and flag rollouts' verdicts through their owners' models and opens
incidents from them (incidents/jobs.py); nothing below it knows incidents
exist. Every table here is written only by this app.

Times of an incident (see docs/incidents.md):
- started_at: the first minute of the regression, from the rollups;
- detected_at: the first signal; acknowledged_at: the first human action;
- mitigated_at / resolved_at: set when a person confirms (or overrides) what
  Monoenv proposes from the data (proposed_mitigated_at / proposed_resolved_at).
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    OPEN = "open"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class Severity(models.TextChoices):
    SEV1 = "sev1", "SEV1 (critical)"
    SEV2 = "sev2", "SEV2 (major)"
    SEV3 = "sev3", "SEV3 (minor)"


class SignalKind(models.TextChoices):
    ALERT = "alert", "page burn alert"
    VERDICT = "verdict", "fail verdict"
    FLAG_VERDICT = "flag_verdict", "flag rollout fail verdict"
    SHIFT = "shift", "route shift"


class IncidentQuerySet(models.QuerySet):
    def active(self):
        """Not resolved: where a new signal may join."""
        return self.exclude(status=Status.RESOLVED)

    def open_first(self):
        """Active incidents first, each group newest first: the order of every list."""
        return self.annotate(
            resolved_rank=models.Case(
                models.When(status=Status.RESOLVED, then=1), default=0,
                output_field=models.IntegerField(),
            )
        ).order_by("resolved_rank", "-detected_at", "-id")  # fmt: skip


class Incident(models.Model):
    title = models.CharField(max_length=300)
    status = models.CharField(max_length=12, choices=Status, default=Status.OPEN)
    severity = models.CharField(max_length=6, choices=Severity, default=Severity.SEV2)
    services = ArrayField(models.TextField(), default=list)
    environment = models.TextField(blank=True)
    owner = models.CharField(max_length=150, blank=True)
    summary = models.TextField(blank=True)
    # What opened it: a signal kind, or "manual" for a person.
    trigger_kind = models.CharField(max_length=12, default="manual")
    trigger_summary = models.TextField(blank=True)
    trigger_link = models.TextField(blank=True)
    opened_by = models.CharField(max_length=150, default="monoenv")
    started_at = models.DateTimeField()
    detected_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # What the data suggests; a person confirms, overrides or ignores it.
    proposed_mitigated_at = models.DateTimeField(null=True, blank=True)
    proposed_resolved_at = models.DateTimeField(null=True, blank=True)
    proposal_reason = models.TextField(blank=True)
    # The newest signal: a later one within the grouping window joins.
    last_signal_at = models.DateTimeField()
    top_suspect = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="incidents_blamed",
    )  # fmt: skip
    # When the top suspect is a flag change (then top_suspect is empty).
    top_flag_change = models.ForeignKey(
        "flags.FlagChange", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="incidents_blamed",
    )  # fmt: skip
    suspects = models.JSONField(default=list, blank=True)
    impact = models.JSONField(default=dict, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-detected_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-detected_at"], name="incident_status_detected"),
            models.Index(fields=["-last_signal_at"], name="incident_last_signal"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    def link(self) -> str:
        return f"{settings.MONOENV_PUBLIC_URL}/incidents/{self.pk}/"

    def api_link(self) -> str:
        return f"{settings.MONOENV_PUBLIC_URL}/api/v1/incidents/{self.pk}"

    @property
    def budget_burned_pct(self) -> float | None:
        """The most error budget any one SLO lost in the incident, percent."""
        found = [s["budget_consumed_pct"] for s in (self.impact or {}).get("slos", [])
                 if s["budget_consumed_pct"] is not None]  # fmt: skip
        return max(found) if found else None

    @property
    def effective_mitigated_at(self) -> datetime | None:
        return self.mitigated_at or self.resolved_at or self.proposed_mitigated_at

    def duration(self, *, now: datetime) -> timedelta:
        return (self.resolved_at or now) - self.started_at

    def times(self, *, now: datetime) -> dict[str, float | None]:
        """Time to detect, mitigate and resolve, and the duration, in seconds from started_at."""

        def since_start(at: datetime | None) -> float | None:
            return None if at is None else max(0.0, (at - self.started_at).total_seconds())

        return {
            "duration_seconds": self.duration(now=now).total_seconds(),
            "time_to_detect_seconds": since_start(self.detected_at),
            "time_to_mitigate_seconds": since_start(self.mitigated_at or self.resolved_at),
            "time_to_resolve_seconds": since_start(self.resolved_at),
        }


class IncidentSignal(models.Model):
    """One alert, verdict or shift that opened or joined an incident; each joins once."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="signals")
    kind = models.CharField(max_length=12, choices=SignalKind)
    # The owning app's row id (slo Alert, deployments Deployment or RouteShift, flags FlagChange).
    source_id = models.BigIntegerField()
    service = models.TextField()
    at = models.DateTimeField(help_text="When the signal was raised.")
    summary = models.TextField()
    link = models.TextField(blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The per-minute series whose burn dates the regression (incidents/sources.py).
    watch = models.JSONField(default=dict)
    not_before = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "source_id"], name="incident_signal_once")
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.source_id} → #{self.incident_id}"


class EntryKind(models.TextChoices):
    ALERT_FIRED = "alert_fired"
    ALERT_RESOLVED = "alert_resolved"
    VERDICT = "verdict"
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    FLAG = "flag"
    SHIFT_OPENED = "shift_opened"
    SHIFT_CLOSED = "shift_closed"
    STATUS = "status"
    PROPOSAL = "proposal"
    NOTIFICATION = "notification"
    NOTE = "note"


class TimelineEntry(models.Model):
    """One line of an incident's story; the entries Monoenv writes carry a key, written once."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField()
    kind = models.CharField(max_length=20, choices=EntryKind)
    summary = models.TextField()
    link = models.TextField(blank=True)
    author = models.CharField(max_length=150, blank=True, help_text="Empty: written by Monoenv.")
    key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "timeline entries"
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "key"], condition=~models.Q(key=""), name="timeline_key_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.at:%H:%M} {self.kind}: {self.summary[:60]}"


class PostMortem(models.Model):
    """The incident's post-mortem, in Markdown.

    Monoenv rewrites the draft while nobody has edited it; from the first
    person's save on it is theirs, and every save is kept as a revision.
    """

    incident = models.OneToOneField(Incident, on_delete=models.CASCADE, related_name="postmortem")
    markdown = models.TextField()
    edited = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Post-mortem of #{self.incident_id}"


class PostMortemRevision(models.Model):
    postmortem = models.ForeignKey(PostMortem, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    markdown = models.TextField()
    author = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["postmortem", "number"], name="revision_number_once")
        ]

    def __str__(self) -> str:
        return f"r{self.number} of #{self.postmortem_id}"


class ActionKind(models.TextChoices):
    MITIGATE = "mitigate"
    PREVENT = "prevent"
    PROCESS = "process"


class ActionStatus(models.TextChoices):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    WONT_DO = "wont_do"


class ActionItem(models.Model):
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="action_items")
    title = models.CharField(max_length=300)
    kind = models.CharField(max_length=10, choices=ActionKind, default=ActionKind.PREVENT)
    owner = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=12, choices=ActionStatus, default=ActionStatus.OPEN)
    link = models.TextField(blank=True, help_text="A ticket or bug.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["status", "created_at", "id"]

    def __str__(self) -> str:
        return self.title


class ChangeOutcome(models.Model):
    """What became of one deploy, for the DORA metrics; kept current by the poll.

    One row per deploy, rewritten whenever its verdict, its rollbacks or the
    incidents around it change (incidents/delivery.py), so the metrics are sums
    over these rows and never read spans.
    """

    deployment = models.OneToOneField(
        "deployments.Deployment", on_delete=models.CASCADE, primary_key=True,
        related_name="outcome",
    )  # fmt: skip
    service = models.TextField()
    environment = models.TextField()
    finished_at = models.DateTimeField()
    # Reached production (succeeded, or rolled back later): counted in every denominator.
    delivered = models.BooleanField()
    is_rollback = models.BooleanField(default=False)
    lead_time_seconds = models.FloatField(null=True)
    failed = models.BooleanField(default=False)
    failed_because = models.CharField(max_length=40, blank=True)
    recovery_seconds = models.FloatField(null=True)
    rework = models.BooleanField(default=False)
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["finished_at"], name="outcome_finished"),
            models.Index(fields=["service", "finished_at"], name="outcome_service_finished"),
        ]

    def __str__(self) -> str:
        return f"outcome of deploy {self.deployment_id}"
