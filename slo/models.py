import math
from datetime import timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from django.utils import timezone as django_timezone

from slo import maths
from telemetry import spans
from telemetry.models import SpanKind

# OpenSLO names are RFC 1123 labels; ours are too, so export needs no renaming.
rfc1123_label = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
    "Use lowercase letters, digits and '-', starting and ending with a letter or digit.",
)
percent_below_100 = [
    MinValueValidator(Decimal("0.001")),
    MaxValueValidator(Decimal("99.999")),
]


class SLI(models.TextChoices):
    AVAILABILITY = "availability"
    LATENCY = "latency"


class Budgeting(models.TextChoices):
    OCCURRENCES = "occurrences"
    TIMESLICES = "timeslices"


SPAN_KIND_NAMES = {kind.name.lower(): kind.value for kind in SpanKind}
DEFINITION_FIELDS = (
    "name", "display_name", "service", "route", "span_kind", "sli", "threshold_ms",
    "latency_requires_success", "objective", "window", "timezone", "budgeting",
    "timeslice_target",
)  # fmt: skip


class SLOQuerySet(models.QuerySet):
    def for_service(self, service: str) -> "SLOQuerySet":
        return self.filter(service=service).order_by("name")

    def apply_definitions(self, definitions: list[dict]) -> list["SLO"]:
        """Create or update SLOs by name, all or none; raise ValidationError.

        Errors name the definition's position and field, as in `[1] objective: ...`.
        """
        applied = []
        with transaction.atomic():
            for index, definition in enumerate(definitions):
                slo = self.filter(name=definition.get("name")).first() or SLO()
                slo.set_definition(definition)
                try:
                    slo.full_clean()
                except ValidationError as exc:
                    raise ValidationError(
                        [f"[{index}] {field}: {' '.join(messages)}"
                         for field, messages in exc.message_dict.items()]
                    ) from exc  # fmt: skip
                slo.save()
                applied.append(slo)
        return applied


class SLO(models.Model):
    """A service level objective over the spans of one service."""

    name = models.CharField(max_length=63, unique=True, validators=[rfc1123_label])
    display_name = models.CharField(max_length=200, blank=True)
    service = models.TextField()
    route = models.TextField(
        blank=True, help_text="Empty for every route; an exact route; or a prefix ending in *."
    )
    span_kind = models.SmallIntegerField(choices=SpanKind, default=SpanKind.SERVER)
    sli = models.CharField(max_length=20, choices=SLI, default=SLI.AVAILABILITY)
    threshold_ms = models.DecimalField(
        max_digits=12, decimal_places=3, null=True, blank=True,
        help_text="Latency SLIs: a span is good if its duration is at most this.",
    )  # fmt: skip
    latency_requires_success = models.BooleanField(
        default=False, help_text="Latency SLIs: an error span is bad however fast."
    )
    objective = models.DecimalField(
        max_digits=8, decimal_places=5, validators=percent_below_100, help_text="Percent."
    )
    window = models.CharField(
        max_length=10, default="30d", help_text="'<N>d' or '<N>h' rolling; 'month' or 'week'."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="Calendar windows.")
    budgeting = models.CharField(max_length=20, choices=Budgeting, default=Budgeting.OCCURRENCES)
    timeslice_target = models.DecimalField(
        max_digits=8, decimal_places=5, null=True, blank=True, validators=percent_below_100,
        help_text="Timeslices: percent of a minute's events that must be good.",
    )  # fmt: skip
    created_at = models.DateTimeField(default=django_timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    # The selection the per-minute counts were last rebuilt for (see minutes.py).
    backfilled_key = models.TextField(blank=True, editable=False)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = SLOQuerySet.as_manager()

    class Meta:
        verbose_name = "SLO"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def definition(self) -> dict:
        """The fields a user defines, as the API and OpenSLO exchange them."""
        definition = {field: getattr(self, field) for field in DEFINITION_FIELDS}
        definition["span_kind"] = SpanKind(self.span_kind).name.lower()
        return definition

    def set_definition(self, definition: dict) -> None:
        unknown = set(definition) - set(DEFINITION_FIELDS)
        if unknown:
            raise ValidationError(f"unknown field(s): {', '.join(sorted(unknown))}")
        for field, value in definition.items():
            if field == "span_kind":
                if value not in SPAN_KIND_NAMES:
                    names = ", ".join(SPAN_KIND_NAMES)
                    raise ValidationError({"span_kind": f"{value!r} is not one of {names}"})
                value = SPAN_KIND_NAMES[value]
            setattr(self, field, value)

    def clean(self) -> None:
        errors = {}
        try:
            maths.parse_window(self.window, self.timezone)
        except ValueError as exc:
            field = "timezone" if "zone" in str(exc) else "window"
            errors[field] = str(exc)
        if self.route and "*" in self.route[:-1]:
            errors["route"] = "Only a trailing * is allowed."
        if self.sli == SLI.LATENCY and self.threshold_ms is None:
            errors["threshold_ms"] = "A latency SLI needs a threshold."
        if self.sli == SLI.AVAILABILITY and self.threshold_ms is not None:
            errors["threshold_ms"] = "Only latency SLIs have a threshold."
        if self.budgeting == Budgeting.TIMESLICES and self.timeslice_target is None:
            errors["timeslice_target"] = "Timeslice budgeting needs a timeslice target."
        if self.budgeting == Budgeting.OCCURRENCES and self.timeslice_target is not None:
            errors["timeslice_target"] = "Only timeslice budgeting has a timeslice target."
        if errors:
            raise ValidationError(errors)

    @property
    def window_spec(self) -> maths.Window:
        return maths.parse_window(self.window, self.timezone)

    @property
    def objective_ratio(self) -> float:
        return float(self.objective / 100)

    @property
    def selection_key(self) -> str:
        """What decides the per-minute counts; when it changes they are rebuilt."""
        return "|".join(
            str(part)
            for part in (
                self.service, self.route, self.span_kind, self.sli, self.threshold_ms,
                self.latency_requires_success,
            )
        )  # fmt: skip

    @property
    def span_selection(self) -> spans.SpanSelection:
        """The spans this SLO counts."""
        return spans.SpanSelection(service=self.service, kind=self.span_kind, route=self.route)

    @property
    def good_rule(self) -> spans.GoodRule:
        """Which of them are good: not errors, or (latency) at most threshold_ms long."""
        if self.sli == SLI.AVAILABILITY:
            return spans.GoodRule()
        # duration_ms <= threshold_ms, in whole microseconds as spans store them.
        return spans.GoodRule(
            max_duration_us=math.floor(self.threshold_ms * 1000),
            require_success=self.latency_requires_success,
        )

    @property
    def longest_lookback(self) -> timedelta:
        """How far back evaluation and status read the per-minute counts."""
        window = self.window_spec
        period = window.rolling or timedelta(days=31 if window.calendar == "month" else 7)
        return max(period, maths.STATUS_BURN_WINDOWS["3d"])


class SLOMinute(models.Model):
    """Good and total events of one SLO in one minute, counted from raw spans."""

    slo = models.ForeignKey(SLO, on_delete=models.CASCADE, related_name="minutes")
    minute = models.DateTimeField()
    good = models.BigIntegerField()
    total = models.BigIntegerField()

    class Meta:
        constraints = [
            # Covering, so status reads are index-only scans.
            models.UniqueConstraint(
                fields=["slo", "minute"], include=["good", "total"], name="slo_minute_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.slo_id} {self.minute:%Y-%m-%d %H:%M} {self.good}/{self.total}"


class Severity(models.TextChoices):
    PAGE = "page"
    TICKET = "ticket"


class AlertQuerySet(models.QuerySet):
    """"Open alerts" is spelt here once: alerts not yet resolved."""

    def open(self) -> "AlertQuerySet":
        return self.filter(resolved_at__isnull=True)

    def pages(self) -> "AlertQuerySet":
        return self.filter(severity=Severity.PAGE)

    def for_service(self, service: str) -> "AlertQuerySet":
        return self.filter(slo__service=service)

    def fired_since(self, since) -> "AlertQuerySet":
        return self.filter(fired_at__gte=since)


class Alert(models.Model):
    """One firing of one burn-rate tier of an SLO, open until it resolves."""

    slo = models.ForeignKey(SLO, on_delete=models.CASCADE, related_name="alerts")
    severity = models.CharField(max_length=10, choices=Severity)
    long_window = models.DurationField()
    short_window = models.DurationField()
    threshold = models.FloatField(help_text="Burn rate both windows must exceed.")
    long_burn_rate = models.FloatField()
    short_burn_rate = models.FloatField()
    budget_consumed_pct = models.FloatField(help_text="Of the SLO window, when last evaluated.")
    fired_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    # When its tier last stopped burning while it is still open (slo/evaluation.py).
    calm_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_evaluated_at = models.DateTimeField()

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-fired_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["slo", "long_window"],
                condition=models.Q(resolved_at__isnull=True),
                name="one_open_alert_per_tier",
            )
        ]

    def __str__(self) -> str:
        return f"{self.slo} {self.severity} {maths.format_duration(self.long_window)}"

    @property
    def windows(self) -> str:
        long, short = (maths.format_duration(w) for w in (self.long_window, self.short_window))
        return f"{long}/{short}"
