from django.contrib.postgres.fields import ArrayField
from django.db import models


class CoarseRollup(models.Model):
    """Requests, errors and latency of one route and version over 5 minutes or an hour.

    Built from telemetry's per-minute rollups whenever their minutes change
    (dashboard/rollups.py), so week and month charts read a few thousand rows
    instead of millions. Only request spans (server and consumer) are counted.
    The histogram keeps just its non-empty buckets: bucket_indexes are
    telemetry.histogram bucket numbers, bucket_counts their counts.
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
                name="coarse_rollup_unique",
            )
        ]
        indexes = [models.Index(fields=["resolution", "start"], name="coarse_rollup_start")]

    def __str__(self) -> str:
        return f"{self.service} {self.route} {self.start:%Y-%m-%d %H:%M}/{self.resolution}s"
