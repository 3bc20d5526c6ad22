"""Deploy events: posted through the API or GitHub, or detected from telemetry.

One deploy per rollout: a post merges with the deploy telemetry detected for
the same service and version, and a repeated post updates it. A return to an
earlier version is recorded as a rollback of the deploy it undoes.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone

from deployments.models import Deployment, DeploySource, DeployStatus
from telemetry.models import ServiceDay

# Detection looks at versions seen this recently (ServiceDay rows are per day).
DETECTION_LOOKBACK = timedelta(days=2)
# A version silent this long has stopped serving.
QUIET = timedelta(minutes=2)
DEFAULT_ENVIRONMENT = "production"
POSTED_FIELDS = (
    "commit_sha",
    "commit_time",
    "started_at",
    "finished_at",
    "deployer",
    "description",
    "url",
    "status",
)


def record_deploy(fields: dict, *, source: str, now: datetime | None = None):
    """Create or update a deploy from a post; return (deploy, created)."""
    now = now or timezone.now()
    fields = {key: value for key, value in fields.items() if value is not None}
    fields.setdefault("environment", DEFAULT_ENVIRONMENT)
    fields.setdefault("started_at", now)
    fields.setdefault("finished_at", max(now, fields["started_at"]))
    with transaction.atomic():
        existing = _deploy_to_update(fields)
        if existing is not None:
            for key in POSTED_FIELDS:
                if key in fields:
                    setattr(existing, key, fields[key])
            if existing.source == DeploySource.DETECTED:
                existing.source = source
            existing.save()
            return existing, False
        deploy = Deployment(source=source, **fields)
        _link_to_history(deploy)
        deploy.schedule_checkpoint(Deployment.checkpoint_after(None))
        deploy.save()
        _mark_undone(deploy)
        return deploy, True


def _deploy_to_update(fields: dict) -> Deployment | None:
    match = Deployment.objects.select_for_update().near(
        fields["service"], fields["version"], fields["environment"], fields["started_at"]
    )
    if match is None:
        return None
    latest = Deployment.objects.latest_for(fields["service"], environment=fields["environment"])
    if latest is not None and latest.pk != match.pk and latest.version != match.version:
        # The service moved on since; going back to this version is a new deploy.
        if latest.started_at <= fields["started_at"]:
            return None
    return match


def _link_to_history(deploy: Deployment) -> None:
    """Set the previous version, and whether this deploy undoes the one before."""
    earlier = (
        Deployment.objects.for_service(deploy.service, deploy.environment)
        .filter(started_at__lte=deploy.deployed_at)
        .order_by("-started_at", "-id")
    )
    previous = earlier.first()
    if previous is None:
        deploy.previous_version = deploy.previous_version or _version_seen_before(deploy)
        return
    deploy.previous_version = previous.version
    if previous.version != deploy.version and (
        previous.previous_version == deploy.version
        or earlier.filter(version=deploy.version).exists()
    ):
        deploy.rollback_of = previous


def _mark_undone(deploy: Deployment) -> None:
    if deploy.rollback_of_id:
        Deployment.objects.filter(pk=deploy.rollback_of_id).update(status=DeployStatus.ROLLED_BACK)


def _version_seen_before(deploy: Deployment) -> str:
    """The version serving before this one, when no deploy of it was recorded."""
    row = (
        ServiceDay.objects.filter(
            service=deploy.service, first_seen__lt=deploy.deployed_at, day__gte=_day_floor()
        )
        .exclude(service_version__in=["", deploy.version])
        .values("service_version")
        .annotate(last=Max("last_seen"))
        .order_by("-last")
        .first()
    )
    return row["service_version"] if row else ""


def _day_floor():
    return (timezone.now() - DETECTION_LOOKBACK).date()


def detect_deploys(*, now: datetime | None = None) -> list[Deployment]:
    """Turn new versions in telemetry into deploys, and returns into rollbacks."""
    now = now or timezone.now()
    created = []
    # Over all kept days, so first_seen is a version's real first span.
    versions = (
        ServiceDay.objects.values("service", "service_version")
        .annotate(first_seen=Min("first_seen"), last_seen=Max("last_seen"))
        .filter(last_seen__gte=now - DETECTION_LOOKBACK)
        .order_by("service", "first_seen")
    )
    by_service: dict[str, list[dict]] = {}
    for row in versions:
        by_service.setdefault(row["service"], []).append(row)
    for service, rows in by_service.items():
        created += _detect_new_versions(service, rows, now)
        rollback = _detect_return(service, rows, now)
        if rollback is not None:
            created.append(rollback)
    return created


def _detect_new_versions(service: str, rows: list[dict], now: datetime) -> list[Deployment]:
    created = []
    known = set(
        Deployment.objects.filter(service=service).values_list("version", flat=True).distinct()
    )
    for index, row in enumerate(rows):
        version = row["service_version"]
        if version in known:
            _merge_first_span(service, version, row["first_seen"])
        elif index == 0 or not version or row["first_seen"] < now - DETECTION_LOOKBACK:
            # A service's first version is where its history starts, not a change;
            # and an old version is history, not news.
            continue
        else:
            created.append(_create_detected(service, version, row["first_seen"]))
            known.add(version)
    return created


def _create_detected(service: str, version: str, first_seen: datetime) -> Deployment:
    environment = _environment_of(service, version, first_seen) or DEFAULT_ENVIRONMENT
    with transaction.atomic():
        # A post may have arrived meanwhile; merging keeps one deploy.
        posted = (
            Deployment.objects.select_for_update()
            .filter(service=service, version=version)
            .order_by("-started_at")
            .first()
        )
        if posted is not None:
            _merge_first_span(service, version, first_seen)
            return posted
        deploy = Deployment(
            service=service,
            version=version,
            environment=environment,
            started_at=first_seen,
            finished_at=first_seen,
            first_span_at=first_seen,
            source=DeploySource.DETECTED,
            description=f"{version} first seen in telemetry",
        )
        _link_to_history(deploy)
        deploy.schedule_checkpoint(Deployment.checkpoint_after(None))
        deploy.save()
        _mark_undone(deploy)
        return deploy


def _merge_first_span(service: str, version: str, first_seen: datetime) -> None:
    """Tell the posted deploy of this version when its first span came."""
    window = timedelta(minutes=settings.MONOENV_DEPLOY_UPSERT_MINUTES)
    posted = (
        # A rollback's version has spans from before; its first span is not news.
        Deployment.objects.filter(
            service=service,
            version=version,
            first_span_at__isnull=True,
            rollback_of__isnull=True,
            started_at__range=(first_seen - window, first_seen + window),
        )
        .order_by("-started_at")
        .first()
    )
    if posted is None:
        return
    posted.first_span_at = first_seen
    if not posted.verdict_records.exists():
        # Analysis counts from the first span; nothing was judged on the old time yet.
        posted.schedule_checkpoint(Deployment.checkpoint_after(None))
    posted.save(update_fields=["first_span_at", "next_checkpoint", "next_evaluation_at"])


def _environment_of(service: str, version: str, first_seen: datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT environment FROM telemetry_span WHERE service = %s AND service_version = %s "
            "AND start_time >= %s AND start_time < %s LIMIT 1",
            [service, version, first_seen, first_seen + timedelta(minutes=1)],
        )
        row = cursor.fetchone()
    return row[0] if row else ""


def _detect_return(service: str, rows: list[dict], now: datetime) -> Deployment | None:
    """An earlier version serving again after the latest deploy's version stopped."""
    latest = Deployment.objects.latest_for(service)
    if latest is None:
        return None
    seen = {row["service_version"]: row for row in rows}
    current = seen.get(latest.version)
    if current is None or current["last_seen"] > now - QUIET:
        return None
    earlier_versions = set(
        Deployment.objects.filter(service=service, started_at__lt=latest.started_at)
        .exclude(version=latest.version)
        .values_list("version", flat=True)
    ) | ({latest.previous_version} - {""})
    returned = [
        seen[v]
        for v in earlier_versions
        if v in seen and seen[v]["last_seen"] > current["last_seen"]
    ]
    if not returned:
        return None
    version = max(returned, key=lambda row: row["last_seen"])["service_version"]
    back_at = _first_span_after(service, version, latest.deployed_at, current["last_seen"])
    deploy, _ = record_deploy(
        {
            "service": service,
            "version": version,
            "environment": latest.environment,
            "started_at": back_at,
            "finished_at": current["last_seen"],
            "description": f"back to {version}: rollback of {latest.version}",
        },
        source=DeploySource.DETECTED,
        now=now,
    )
    if deploy.first_span_at is None:
        deploy.first_span_at = back_at
        deploy.save(update_fields=["first_span_at"])
    return deploy


def _first_span_after(service: str, version: str, since: datetime, fallback: datetime):
    """When the returning version came back: its first span after its last silence."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT minute FROM (
                SELECT date_trunc('minute', start_time) AS minute
                FROM telemetry_span
                WHERE service = %s AND service_version = %s AND start_time >= %s
                GROUP BY 1
            ) minutes ORDER BY minute
            """,
            [service, version, since],
        )
        found = [row[0] for row in cursor.fetchall()]
    # It served until the deploy; a gap from then on is an absence too.
    minutes = [since.replace(second=0, microsecond=0), *found]
    resumed = None
    for earlier, later in zip(minutes, minutes[1:], strict=False):
        if later - earlier > timedelta(minutes=1):
            resumed = later
    if resumed is None:
        # It never went away (an aborted canary): it is back when the new one left.
        return fallback
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(start_time) FROM telemetry_span WHERE service = %s "
            "AND service_version = %s AND start_time >= %s",
            [service, version, resumed],
        )
        return cursor.fetchone()[0] or fallback
