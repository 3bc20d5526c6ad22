import hashlib
import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone


class SpanKind(models.IntegerChoices):
    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(models.IntegerChoices):
    UNSET = 0
    OK = 1
    ERROR = 2


class Span(models.Model):
    """One stored span.

    The table is partitioned by day on start_time and written with COPY (see
    telemetry/store.py); its DDL lives in a migration because Django cannot
    declare partitions. Reads go through this model.
    """

    pk = models.CompositePrimaryKey("trace_id", "span_id", "start_time")
    trace_id = models.BinaryField(max_length=16)
    span_id = models.BinaryField(max_length=8)
    parent_span_id = models.BinaryField(max_length=8, null=True)
    service = models.TextField()
    service_version = models.TextField()
    environment = models.TextField()
    name = models.TextField()
    kind = models.SmallIntegerField(choices=SpanKind)
    start_time = models.DateTimeField()
    duration_us = models.BigIntegerField()
    status_code = models.SmallIntegerField(choices=StatusCode)
    status_message = models.TextField()
    http_route = models.TextField()
    http_status = models.IntegerField(null=True)
    http_method = models.TextField()
    is_error = models.BooleanField()
    exception_type = models.TextField()
    attributes = models.JSONField()
    resource_attributes = models.JSONField()
    events = models.JSONField()

    class Meta:
        managed = False
        db_table = "telemetry_span"

    def __str__(self) -> str:
        return f"{self.service} {self.name}"

    @property
    def duration_ms(self) -> float:
        return self.duration_us / 1000


class ServiceDay(models.Model):
    """Spans stored per service, version and UTC day.

    Kept in the same transaction as the spans, so listing services never
    scans the span table; retention deletes a day's rows with its partition.
    """

    service = models.TextField()
    service_version = models.TextField()
    day = models.DateField()
    span_count = models.BigIntegerField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["service", "service_version", "day"], name="service_day_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.service_version} {self.day}"


class PendingMinute(models.Model):
    """A minute of one service's spans that changed since the last rollup.

    Ingest marks every minute a batch touches, however late the spans are,
    and counts the marks; the rollup recomputes these minutes and then deletes
    only the rows whose mark count it saw, so a minute marked meanwhile stays.
    """

    service = models.TextField()
    minute = models.DateTimeField()
    marks = models.BigIntegerField(db_default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "minute"], name="pending_minute_unique")
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.minute:%Y-%m-%d %H:%M}"


class RollupMinute(models.Model):
    """Requests, errors and a latency histogram for one minute of one route.

    Recomputed from the raw spans whenever a minute changes (telemetry/rollups.py),
    so the counts always equal a direct count; the histogram's buckets are
    defined in telemetry/histogram.py.
    """

    service = models.TextField()
    route = models.TextField()
    version = models.TextField()
    span_kind = models.SmallIntegerField(choices=SpanKind)
    minute = models.DateTimeField()
    requests = models.BigIntegerField()
    errors = models.BigIntegerField()
    latency_histogram = ArrayField(models.BigIntegerField())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["service", "minute", "route", "version", "span_kind"],
                name="rollup_minute_unique",
            )
        ]
        indexes = [models.Index(fields=["minute"], name="rollup_minute_minute")]

    def __str__(self) -> str:
        return f"{self.service} {self.route} {self.minute:%Y-%m-%d %H:%M}"


class TokenScope(models.TextChoices):
    INGEST = "ingest"
    DEPLOY = "deploy"
    READ = "read"
    INCIDENT = "incident"


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A bearer token. Only its SHA-256 is stored; the token is shown once."""

    PREFIX = "me_"

    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=list, help_text="Any of: ingest, deploy, read.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="For recognising it.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw_token: str) -> str:
        # Tokens are 256 random bits, so a fast unsalted hash is enough.
        return hashlib.sha256(raw_token.encode()).hexdigest()

    def set_new_secret(self) -> str:
        """Give this token a fresh secret and return it; only its hash is kept."""
        raw = self.PREFIX + secrets.token_urlsafe(32)
        self.token_hash = self.hash(raw)
        self.prefix = raw[:10]
        return raw

    @classmethod
    def issue(cls, *, name: str, scopes: list[str]) -> tuple["ApiToken", str]:
        """Create a token and return it with its raw value, shown this once."""
        token = cls(name=name, scopes=scopes)
        raw = token.set_new_secret()
        token.save()
        return token, raw

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class RateBucket(models.Model):
    """A token bucket for one key: an API token, or a login's username or address.

    Shared by every process, so a limit holds however many replicas serve. The
    table is UNLOGGED (see its migration): losing it in a crash only refills
    the buckets. telemetry/ratelimit.py takes tokens with one upsert.
    """

    key = models.CharField(max_length=100, primary_key=True)
    tokens = models.FloatField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key}: {self.tokens:.1f}"


class CoarseRollup(models.Model):
    """Requests, errors and latency of one route and version over 5 minutes or an hour.

    Derived from the per-minute rollups whenever their minutes change
    (telemetry/coarse_rollups.py), so week and month charts read a few
    thousand rows instead of millions. Only request spans (server and
    consumer) are counted. The histogram keeps just its non-empty buckets:
    bucket_indexes are telemetry.histogram bucket numbers, bucket_counts
    their counts.
    """

    service = models.TextField()
    route = models.TextField()
    version = models.TextField()
    resolution = models.IntegerField(help_text="Seconds: 300 or 3600.")
    start = models.DateTimeField()
    requests = models.BigIntegerField()
    errors = models.BigIntegerField()
    bucket_indexes = ArrayField(models.SmallIntegerField())
    bucket_counts = ArrayField(models.BigIntegerField())

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["service", "resolution", "start", "route", "version"],
                name="telemetry_coarse_rollup_unique",
            )
        ]
        indexes = [
            models.Index(fields=["resolution", "start"], name="telemetry_coarse_rollup_start")
        ]

    def __str__(self) -> str:
        return f"{self.service} {self.route} {self.start:%Y-%m-%d %H:%M}/{self.resolution}s"


class Attribution(models.IntegerChoices):
    PENDING = 0
    REQUEST = 1  # attributed to the service's request span in the trace
    NO_REQUEST = 2  # no request span of the service encloses the evaluating span
    UNRESOLVED = 3  # the spans it needs never arrived within the lateness window


class FlagEvaluation(models.Model):
    """One feature-flag evaluation, from a span event or an OTLP log record.

    Decoded by telemetry/flag_events.py and stored by telemetry/flag_store.py,
    which owns this table. Once attributed, a row carries the outcome of the
    request that made the evaluation (route, version, duration, error), copied
    from its server span: spans never change once stored, and cohort reads then
    need no join with the partitioned span table.
    """

    # Time first: rows arrive in about time order, so the key's index grows at
    # its end; and a retried export stores each evaluation once.
    pk = models.CompositePrimaryKey("at", "trace_id", "span_id", "flag", "service")
    trace_id = models.BinaryField(max_length=16, help_text="Empty without trace context.")
    span_id = models.BinaryField(max_length=8, help_text="The span that evaluated the flag.")
    service = models.TextField()
    environment = models.TextField()
    at = models.DateTimeField()
    flag = models.TextField()
    cohort = models.TextField(help_text="error:<type>, else the variant, else the value.")
    variant = models.TextField()
    value = models.TextField()
    provider = models.TextField()
    reason = models.TextField()
    context_id = models.TextField()
    set_id = models.TextField()
    flag_version = models.TextField()
    error_type = models.TextField()
    carrier = models.CharField(max_length=12, help_text="span_event or log.")
    received_at = models.DateTimeField()
    attribution = models.SmallIntegerField(choices=Attribution, default=Attribution.PENDING)
    attribute_after = models.DateTimeField(null=True, help_text="Next try while pending.")
    request_span_id = models.BinaryField(max_length=8, null=True)
    request_start = models.DateTimeField(null=True)
    route = models.TextField(blank=True)
    request_version = models.TextField(blank=True)
    request_duration_us = models.BigIntegerField(null=True)
    request_is_error = models.BooleanField(null=True)
    request_error_type = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["flag", "at"], name="flag_evaluation_flag_at"),
            models.Index(
                fields=["attribute_after"],
                condition=models.Q(attribution=0),
                name="flag_evaluation_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.flag}={self.cohort} ({self.service})"


class FlagEvaluationBatch(models.Model):
    """The span-event evaluations of one ingest batch and resource, attributed in the batch.

    The hot path of flag ingest (telemetry/flag_store.py): a batch's evaluations
    whose request span came in the same batch (nearly all, since the hooks write
    on the current span) are stored as one row, not one row each, written in a
    statement ingest sends anyway. A row per evaluation cost ingest a third of
    its throughput in round trips, tuples and index entries. `evaluations` is a
    JSON array of arrays in flag_store's BATCH_FIELDS order (each evaluation's
    time as integer microseconds since the epoch, cheaper to read than ISO
    text), unpacked with jsonb_array_elements; `flags` and the time bounds pick
    the rows to unpack.
    Everything else (logs, evaluations waiting for their spans) is a
    FlagEvaluation row.
    """

    service = models.TextField()
    environment = models.TextField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    received_at = models.DateTimeField()
    flags = ArrayField(models.TextField())
    evaluations = models.TextField(help_text="JSON: one array per evaluation.")

    class Meta:
        indexes = [models.Index(fields=["last_at"], name="flag_evaluation_batch_last_at")]

    def __str__(self) -> str:
        return f"{self.service}: {', '.join(self.flags)} ({self.first_at:%Y-%m-%d %H:%M})"
