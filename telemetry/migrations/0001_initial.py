import django.utils.timezone
from django.db import migrations, models

# Django cannot declare a partitioned table, so the Span model is unmanaged and
# its table is made here. Daily partitions are created on demand at ingest.
CREATE_SPAN_TABLE = """
CREATE TABLE telemetry_span (
    trace_id bytea NOT NULL,
    span_id bytea NOT NULL,
    parent_span_id bytea,
    service text NOT NULL,
    service_version text NOT NULL,
    environment text NOT NULL,
    name text NOT NULL,
    kind smallint NOT NULL,
    start_time timestamptz NOT NULL,
    duration_us bigint NOT NULL,
    status_code smallint NOT NULL,
    status_message text NOT NULL,
    http_route text NOT NULL,
    http_status integer,
    http_method text NOT NULL,
    is_error boolean NOT NULL,
    exception_type text NOT NULL,
    attributes jsonb NOT NULL,
    resource_attributes jsonb NOT NULL,
    events jsonb NOT NULL,
    PRIMARY KEY (trace_id, span_id, start_time)
) PARTITION BY RANGE (start_time);
CREATE INDEX telemetry_span_service_start ON telemetry_span (service, start_time);
CREATE INDEX telemetry_span_start_brin ON telemetry_span USING brin (start_time);
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Span",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "trace_id",
                        "span_id",
                        "start_time",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("trace_id", models.BinaryField(max_length=16)),
                ("span_id", models.BinaryField(max_length=8)),
                ("parent_span_id", models.BinaryField(max_length=8, null=True)),
                ("service", models.TextField()),
                ("service_version", models.TextField()),
                ("environment", models.TextField()),
                ("name", models.TextField()),
                (
                    "kind",
                    models.SmallIntegerField(
                        choices=[
                            (0, "Unspecified"),
                            (1, "Internal"),
                            (2, "Server"),
                            (3, "Client"),
                            (4, "Producer"),
                            (5, "Consumer"),
                        ]
                    ),
                ),
                ("start_time", models.DateTimeField()),
                ("duration_us", models.BigIntegerField()),
                (
                    "status_code",
                    models.SmallIntegerField(choices=[(0, "Unset"), (1, "Ok"), (2, "Error")]),
                ),
                ("status_message", models.TextField()),
                ("http_route", models.TextField()),
                ("http_status", models.IntegerField(null=True)),
                ("http_method", models.TextField()),
                ("is_error", models.BooleanField()),
                ("exception_type", models.TextField()),
                ("attributes", models.JSONField()),
                ("resource_attributes", models.JSONField()),
                ("events", models.JSONField()),
            ],
            options={
                "db_table": "telemetry_span",
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                (
                    "scopes",
                    models.JSONField(default=list, help_text="Any of: ingest, deploy, read."),
                ),
                ("token_hash", models.CharField(editable=False, max_length=64, unique=True)),
                (
                    "prefix",
                    models.CharField(
                        editable=False, help_text="For recognising it.", max_length=12
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                ("last_used_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name="ServiceDay",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("service", models.TextField()),
                ("service_version", models.TextField()),
                ("day", models.DateField()),
                ("span_count", models.BigIntegerField()),
                ("first_seen", models.DateTimeField()),
                ("last_seen", models.DateTimeField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("service", "service_version", "day"), name="service_day_unique"
                    )
                ],
            },
        ),
        migrations.RunSQL(CREATE_SPAN_TABLE, reverse_sql="DROP TABLE telemetry_span"),
    ]
