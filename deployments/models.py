from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from deployments import metrics


class DeployStatus(models.TextChoices):
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class DeploySource(models.TextChoices):
    API = "api"
    DETECTED = "detected"
    GITHUB = "github"


class Verdict(models.TextChoices):
    PENDING = "pending"
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    # A regression that has ended: shown, and no longer holding the gate.
    RECOVERED = "recovered"


# What a finding compares; deployments/judge.py defines the names once.
Metric = models.TextChoices("Metric", [(m.name, m.value) for m in metrics.Metric])


class DeploymentQuerySet(models.QuerySet):
    def for_service(self, service: str, environment: str | None = None):
        rows = self.filter(service=service)
        return rows if environment is None else rows.filter(environment=environment)

    def latest_for(self, service: str, *, environment: str | None = None):
        return self.for_service(service, environment).order_by("-started_at", "-id").first()

    def near(self, service: str, version: str, environment: str | None, at: datetime):
        """The deploy of this version that a post at `at` should update, if any."""
        window = timedelta(minutes=settings.MONOENV_DEPLOY_UPSERT_MINUTES)
        return (
            self.for_service(service, environment)
            .filter(version=version, started_at__range=(at - window, at + window))
            .order_by("-started_at")
            .first()
        )

    def due(self, now: datetime):
        return self.filter(next_evaluation_at__lte=now).order_by("next_evaluation_at")


class Deployment(models.Model):
    """One change event: a version of a service going out to an environment."""

    service = models.TextField()
    version = models.TextField()
    environment = models.TextField(default="production")
    commit_sha = models.TextField(blank=True)
    commit_time = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(default=timezone.now)
    deployer = models.TextField(blank=True)
    description = models.TextField(blank=True)
    url = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=DeployStatus, default=DeployStatus.SUCCEEDED)
    source = models.CharField(max_length=20, choices=DeploySource, default=DeploySource.API)
    # When telemetry first showed this version: set by detection, kept on merge.
    first_span_at = models.DateTimeField(null=True, blank=True)
    previous_version = models.TextField(blank=True)
    rollback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks"
    )
    verdict = models.CharField(max_length=20, choices=Verdict, default=Verdict.PENDING)
    verdict_reason = models.TextField(blank=True)
    # Set when a transient regression recovered: later looks judge from here on.
    recovered_from = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    # The next checkpoint (minutes after the deploy) and when it is due; null
    # once the last one is done.
    next_checkpoint = models.PositiveIntegerField(null=True, blank=True)
    next_evaluation_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = DeploymentQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["service", "-started_at"], name="deploy_service_started"),
            models.Index(fields=["-started_at"], name="deploy_started"),
            models.Index(fields=["next_evaluation_at"], name="deploy_next_evaluation"),
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.version} ({self.started_at:%Y-%m-%d %H:%M})"

    @property
    def deployed_at(self) -> datetime:
        """When the new version started serving: the analysis's time zero.

        The first span of the version when telemetry saw it, since a pipeline
        may post before or after its rollout reaches traffic.
        """
        return self.first_span_at or self.started_at

    @property
    def spans_environment(self) -> str | None:
        """The environment to filter its spans by: None (any) while it is not known.

        A post without an environment records '' until a span names one
        (deployments/events.py); filtering on '' would miss every span.
        """
        return self.environment or None

    @property
    def judged_from(self) -> datetime:
        """Where a look's candidate window starts: time zero, or where a regression ended."""
        return self.recovered_from or self.deployed_at

    def checkpoint_time(self, minutes: int) -> datetime:
        return self.deployed_at + timedelta(minutes=minutes)

    def schedule_checkpoint(self, minutes: int | None) -> None:
        """Set the next look (minutes after time zero); spans get a little time to arrive."""
        lag = timedelta(seconds=settings.MONOENV_DEPLOY_EVALUATION_LAG_SECONDS)
        self.next_checkpoint = minutes
        self.next_evaluation_at = None if minutes is None else self.checkpoint_time(minutes) + lag

    def due_checkpoint(self, now: datetime) -> int | None:
        """The latest look whose time has come, if not yet taken.

        A worker that comes late takes the latest look only: each look judges
        everything since time zero, so the skipped ones add nothing.
        """
        if self.next_checkpoint is None:
            return None
        lag = timedelta(seconds=settings.MONOENV_DEPLOY_EVALUATION_LAG_SECONDS)
        due = [
            minutes
            for minutes in looks()
            if minutes >= self.next_checkpoint and self.checkpoint_time(minutes) + lag <= now
        ]
        return max(due) if due else None

    @staticmethod
    def checkpoint_after(minutes: int | None) -> int | None:
        """The look after `minutes` (the first look for None); None after the last."""
        later = [m for m in looks() if minutes is None or m > minutes]
        return min(later) if later else None

    def latest_verdict_record(self) -> "VerdictRecord | None":
        """The record that explains the verdict: the latest with the deploy's verdict, else latest.

        A fail or a recovery holds between checkpoints, so the latest record
        may be a checkpoint that judged otherwise.
        """
        records = self.verdict_records.order_by("-checkpoint")
        return records.filter(verdict=self.verdict).first() or records.first()

    def latest_findings(self, *, significant_only: bool = False):
        """The findings of latest_verdict_record(), as a QuerySet (empty without one)."""
        record = self.latest_verdict_record()
        if record is None:
            return Finding.objects.none()
        findings = record.findings.all()
        return findings.filter(significant=True) if significant_only else findings

    def link(self) -> str:
        return f"{settings.MONOENV_PUBLIC_URL}/api/v1/deployments/{self.pk}"


def looks() -> list[int]:
    """Every minute at which a deploy is looked at: each of the first hour, and the checkpoints."""
    every_minute = range(1, settings.MONOENV_DEPLOY_WATCH_MINUTES + 1)
    return sorted(set(every_minute) | set(settings.MONOENV_DEPLOY_CHECKPOINTS))


class VerdictRecord(models.Model):
    """The verdict of one look: the history of a deploy's verdict, as a summary.

    Kept for every checkpoint (MONOENV_DEPLOY_CHECKPOINTS) and for every look
    whose verdict differs from the record before it; looks that change
    nothing leave no record.
    """

    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="verdict_records"
    )
    checkpoint = models.PositiveIntegerField(help_text="Minutes after the deploy.")
    verdict = models.CharField(max_length=20, choices=Verdict)
    reason = models.TextField()
    baseline_kind = models.CharField(max_length=20, blank=True)
    window_start = models.DateTimeField(null=True)
    window_end = models.DateTimeField(null=True)
    baseline_requests = models.BigIntegerField(default=0)
    candidate_requests = models.BigIntegerField(default=0)
    more_requests_needed = models.BigIntegerField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["checkpoint"]
        get_latest_by = "checkpoint"
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "checkpoint"], name="verdict_record_checkpoint_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.deployment} @{self.checkpoint}m: {self.verdict}"


class AbstractFinding(models.Model):
    """The statistics of one comparison of a candidate side with a baseline side.

    One column per field of deployments.judge.Finding, so a finding is saved
    as `Model(..., **vars(finding))`. Deploys keep theirs in Finding, flag
    cohorts in flags.FlagFinding: each table has its owner, the columns are
    defined once.
    """

    metric = models.CharField(max_length=40, choices=Metric)
    route = models.TextField(blank=True, help_text="Empty for the whole service.")
    baseline_value = models.FloatField(null=True)
    candidate_value = models.FloatField(null=True)
    baseline_n = models.BigIntegerField()
    candidate_n = models.BigIntegerField()
    effect_size = models.FloatField(null=True)
    p_value = models.FloatField(null=True)
    adjusted_p_value = models.FloatField(null=True)
    interval_low = models.FloatField(null=True)
    interval_high = models.FloatField(null=True)
    threshold = models.TextField(blank=True)
    # The one-sided upper confidence bound of the regression (a rise of the rate,
    # or the candidate's quantile in ms); within_threshold: it lies below the
    # threshold, which is what a pass rests on.
    upper_bound = models.FloatField(null=True)
    within_threshold = models.BooleanField(default=False)
    # Beyond the practical threshold; significant also needs the adjusted p-value.
    practical = models.BooleanField(default=False)
    significant = models.BooleanField(default=False)
    direction = models.CharField(max_length=10, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.metric} {self.route or '(service)'}"


class Finding(AbstractFinding):
    """One comparison of a deploy's candidate with its baseline."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="findings")
    verdict_record = models.ForeignKey(
        VerdictRecord, on_delete=models.CASCADE, related_name="findings"
    )

    class Meta:
        ordering = ["-significant", "route", "metric"]


class RouteShiftQuerySet(models.QuerySet):
    def open(self):
        return self.filter(resolved_at__isnull=True)


class RouteShift(models.Model):
    """A route whose error rate or p95 latency rose while its service did not deploy.

    Found by the route watch (deployments/route_watch.py). One shift stays open
    per service, route and metric while the regression lasts.
    """

    service = models.TextField()
    route = models.TextField()
    metric = models.CharField(max_length=40, help_text="error_rate or latency_p95.")
    baseline_value = models.FloatField(help_text="Before the shift: a rate, or ms.")
    current_value = models.FloatField(help_text="The latest window's value.")
    baseline_n = models.BigIntegerField()
    current_n = models.BigIntegerField()
    p_value = models.FloatField()
    adjusted_p_value = models.FloatField()
    threshold = models.TextField(blank=True)
    window_start = models.DateTimeField(help_text="The recent window it was detected in.")
    window_end = models.DateTimeField()
    detected_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = RouteShiftQuerySet.as_manager()

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "route", "metric"],
                condition=models.Q(resolved_at__isnull=True),
                name="route_shift_one_open",
            )
        ]
        indexes = [models.Index(fields=["service", "-detected_at"], name="route_shift_service")]

    def __str__(self) -> str:
        return f"{self.service} {self.route} {self.metric} ({self.detected_at:%Y-%m-%d %H:%M})"

    def link(self) -> str:
        return f"{settings.MONOENV_PUBLIC_URL}/api/v1/shifts/{self.pk}"


class Suspect(models.Model):
    """A change that may explain a regression: of a deploy, an SLO alert, a route shift or
    another kind of change (a flag rollout), ranked by evidence.

    The suspect is a deploy (`suspect`) or a change of a kind registered by an
    app above (deployments/suspects.py): then `suspect_kind` names the kind
    and `suspect_change_id` its row, a plain integer because deployments must
    not depend on that app, as `alert_id` is for slo's alerts. Only changes
    that can explain it are recorded (made before its onset, and still
    serving or the latest of their kind), ranked by evidence.
    """

    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="suspects"
    )
    route_shift = models.ForeignKey(
        RouteShift, null=True, blank=True, on_delete=models.CASCADE, related_name="suspects"
    )
    # slo's alert id; a plain integer because slo must not depend on deployments.
    alert_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # The regression of another kind of change (a flag rollout's failing cohort).
    change_kind = models.CharField(max_length=20, blank=True)
    change_id = models.BigIntegerField(null=True, blank=True)
    suspect = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="suspected_in"
    )
    suspect_kind = models.CharField(max_length=20, default="deploy")
    suspect_change_id = models.BigIntegerField(null=True, blank=True)
    # How a page names and links a suspect that is not a deploy ("flag new-checkout").
    suspect_label = models.TextField(blank=True)
    suspect_link = models.TextField(blank=True)
    suspect_at = models.DateTimeField(null=True, blank=True)
    rank = models.PositiveIntegerField()
    # The share (0..1) of the regression it explains, plus a tie-break of at most 0.01.
    score = models.FloatField()
    evidence = models.TextField()
    # When the regression began by the change-point of its minutes; null when
    # the data showed no clear onset (deployments/suspects.py).
    onset_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rank"]
        indexes = [models.Index(fields=["change_kind", "change_id"], name="suspect_of_change")]

    def __str__(self) -> str:
        return f"#{self.rank} {self.label()}"

    @property
    def is_deploy(self) -> bool:
        return self.suspect_id is not None

    def label(self) -> str:
        """How messages name it: "payments v5", or "flag new-checkout"."""
        if self.suspect_id is not None:
            return f"{self.suspect.service} {self.suspect.version}"
        return self.suspect_label

    def changed_at(self) -> datetime | None:
        return self.suspect.deployed_at if self.suspect_id is not None else self.suspect_at
