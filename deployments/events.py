"""Deploys: posted through the API or GitHub, or detected from telemetry.

One deploy per rollout: a post merges with the deploy telemetry detected for
the same service and version, and a repeated post updates it. A return to an
earlier version is recorded as a rollback of the deploy it undoes.

A deploy finds its spans by service and version. Its previous version is
what served just before it, by the spans, not the last deploy recorded. A
post without an environment takes the one its version's spans name; until
some span names one it is '' ("not known yet"), never a guess that could hide
the spans. `serving_now()` answers what each service runs, for the overview.
Spans are read only through telemetry/spans.py.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from deployments.models import Deployment, DeploySource, DeployStatus
from telemetry import spans

# Detection looks at versions seen this recently (the per-day summary's rows).
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
    """Create or update a deploy from a post; return (deploy, created).

    With no environment given, the version's spans say which one it is (or,
    before they arrive, the spans of what serves now); '' until any do.
    """
    now = now or timezone.now()
    fields = {key: value for key, value in fields.items() if value is not None}
    fields.setdefault("started_at", now)
    fields.setdefault("finished_at", max(now, fields["started_at"]))
    environment_given = bool(fields.get("environment"))
    if not environment_given:
        fields["environment"] = _environment_from_spans(fields, now)
    with transaction.atomic():
        existing = _deploy_to_update(fields, any_environment=not environment_given)
        if existing is not None:
            for key in POSTED_FIELDS:
                if key in fields:
                    setattr(existing, key, fields[key])
            if existing.source == DeploySource.DETECTED:
                existing.source = source
            if environment_given or not existing.environment:
                existing.environment = fields["environment"] or existing.environment
            existing.save()
            return existing, False
        deploy = Deployment(source=source, **fields)
        _link_to_history(deploy)
        deploy.schedule_checkpoint(Deployment.checkpoint_after(None))
        deploy.save()
        _mark_undone(deploy)
        return deploy, True


def _environment_from_spans(fields: dict, now: datetime) -> str:
    service, version = fields["service"], fields["version"]
    window = timedelta(minutes=settings.MONOENV_DEPLOY_UPSERT_MINUTES)
    start, end = fields["started_at"] - window, max(now, fields["finished_at"]) + QUIET
    found = spans.environment_of(service, version, start, end)
    if found:
        return found
    serving = _serving_before(service, version, fields["started_at"])
    return spans.environment_of(service, serving, start, end) if serving else ""


def _deploy_to_update(fields: dict, *, any_environment: bool) -> Deployment | None:
    environment = None if any_environment else fields["environment"]
    service = fields["service"]
    rows = Deployment.objects.select_for_update()
    match = rows.near(service, fields["version"], environment, fields["started_at"])
    if match is None and environment:
        # An earlier post that gave no environment, before any span named one.
        match = rows.near(service, fields["version"], "", fields["started_at"])
    if match is None:
        return None
    latest = Deployment.objects.latest_for(service, environment=match.environment or None)
    if latest is not None and latest.pk != match.pk and latest.version != match.version:
        # The service moved on since; going back to this version is a new deploy.
        if latest.started_at <= fields["started_at"]:
            return None
    return match


def _link_to_history(deploy: Deployment) -> None:
    """Set the previous version, and whether this deploy undoes the one before.

    The previous version is what served just before, by the spans; the last
    recorded deploy only when there are none (a detected deploy of a version
    that stopped serving is not what ran before).
    """
    earlier = (
        Deployment.objects.for_service(deploy.service, deploy.environment or None)
        .filter(started_at__lte=deploy.deployed_at)
        .order_by("-started_at", "-id")
    )
    last = earlier.exclude(version=deploy.version).first()
    serving = _serving_before(deploy.service, deploy.version, deploy.deployed_at)
    deploy.previous_version = serving or (last.version if last else "") or deploy.previous_version
    undone = earlier.filter(version=deploy.previous_version).first()
    if undone is not None and (
        undone.previous_version == deploy.version or earlier.filter(version=deploy.version).exists()
    ):
        deploy.rollback_of = undone


def _serving_before(service: str, version: str, at: datetime) -> str:
    """The other version that served last before `at`; the busiest if several did."""
    lookback = timedelta(minutes=settings.MONOENV_DEPLOY_BASELINE_MINUTES)
    counts = spans.version_counts(
        spans.RequestFilter(service, at - lookback, at, exclude_version=version)
    )
    counts.pop("", None)
    if not counts:
        return ""
    latest = max(last for _, last in counts.values())
    recent = {v: n for v, (n, last) in counts.items() if last >= latest - QUIET}
    return max(recent, key=lambda v: (recent[v], v))


def _mark_undone(deploy: Deployment) -> None:
    if deploy.rollback_of_id:
        Deployment.objects.filter(pk=deploy.rollback_of_id).update(status=DeployStatus.ROLLED_BACK)


def detect_deploys(*, now: datetime | None = None) -> list[Deployment]:
    """Turn new versions in telemetry into deploys, and returns into rollbacks."""
    now = now or timezone.now()
    created = []
    by_service: dict[str, list[spans.VersionSeen]] = {}
    for seen in spans.versions_seen(since=now - DETECTION_LOOKBACK):
        by_service.setdefault(seen.service, []).append(seen)
    for service, rows in by_service.items():
        created += _detect_new_versions(service, rows, now)
        rollback = _detect_return(service, rows, now)
        if rollback is not None:
            created.append(rollback)
    return created


def _detect_new_versions(
    service: str, rows: list[spans.VersionSeen], now: datetime
) -> list[Deployment]:
    created = []
    known = set(
        Deployment.objects.filter(service=service).values_list("version", flat=True).distinct()
    )
    for index, row in enumerate(rows):
        if row.version in known:
            _merge_first_span(service, row.version, row.first_seen)
        elif index == 0 or not row.version or row.first_seen < now - DETECTION_LOOKBACK:
            # A service's first version is where its history starts, not a change;
            # and an old version is history, not news.
            continue
        else:
            created.append(_create_detected(service, row.version, row.first_seen))
            known.add(row.version)
    return created


def _create_detected(service: str, version: str, first_seen: datetime) -> Deployment:
    environment = _first_environment(service, version, first_seen)
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


def _first_environment(service: str, version: str, first_seen: datetime) -> str:
    """The environment the version's first minute of spans names; the default if none."""
    end = first_seen + timedelta(minutes=1)
    return spans.environment_of(service, version, first_seen, end) or DEFAULT_ENVIRONMENT


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
    if not posted.environment:
        # Posted without an environment before any span: the spans tell it now.
        posted.environment = _first_environment(service, version, first_seen)
    if not posted.verdict_records.exists():
        # Analysis counts from the first span; nothing was judged on the old time yet.
        posted.schedule_checkpoint(Deployment.checkpoint_after(None))
    posted.save(
        update_fields=["first_span_at", "environment", "next_checkpoint", "next_evaluation_at"]
    )


def _detect_return(service: str, rows: list[spans.VersionSeen], now: datetime) -> Deployment | None:
    """An earlier version serving again after the latest deploy's version stopped."""
    latest = Deployment.objects.latest_for(service)
    if latest is None:
        return None
    seen = {row.version: row for row in rows}
    current = seen.get(latest.version)
    if current is None or current.last_seen > now - QUIET:
        return None
    earlier_versions = set(
        Deployment.objects.filter(service=service, started_at__lt=latest.started_at)
        .exclude(version=latest.version)
        .values_list("version", flat=True)
    ) | ({latest.previous_version} - {""})
    returned = [
        seen[v] for v in earlier_versions if v in seen and seen[v].last_seen > current.last_seen
    ]
    if not returned:
        return None
    version = max(returned, key=lambda row: row.last_seen).version
    back_at = _first_span_after(service, version, latest.deployed_at, current.last_seen)
    deploy, _ = record_deploy(
        {
            "service": service,
            "version": version,
            "environment": latest.environment,
            "started_at": back_at,
            "finished_at": current.last_seen,
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
    # It served until the deploy; a gap from then on is an absence too.
    minutes = [spans.minute_floor(since), *spans.served_minutes(service, version, since)]
    resumed = None
    for earlier, later in zip(minutes, minutes[1:], strict=False):
        if later - earlier > timedelta(minutes=1):
            resumed = later
    if resumed is None:
        # It never went away (an aborted canary): it is back when the new one left.
        return fallback
    return spans.first_start_after(service, version, resumed) or fallback


@dataclass(frozen=True)
class Serving:
    """What one service serves now, for the overview."""

    service: str
    versions: tuple[str, ...]  # newest first; two or more during a canary or a rollout
    deploy: Deployment | None  # the latest recorded deploy of one of those versions
    last_seen: datetime

    @property
    def version(self) -> str:
        return self.deploy.version if self.deploy else self.versions[0]


def serving_now(*, now: datetime | None = None) -> dict[str, Serving]:
    """Per service: the versions that served within QUIET of its last span.

    Not the latest deploy: a deploy that stopped serving (rolled away, or a
    canary that was dropped) is not what runs.
    """
    now = now or timezone.now()
    by_service: dict[str, list[spans.VersionSeen]] = {}
    for seen in spans.versions_seen(since=now - DETECTION_LOOKBACK):
        by_service.setdefault(seen.service, []).append(seen)
    serving = {}
    for service, rows in by_service.items():
        last = max(row.last_seen for row in rows)
        recent = sorted(
            (row for row in rows if row.last_seen >= last - QUIET),
            key=lambda row: row.first_seen,
            reverse=True,
        )
        versions = tuple(row.version for row in recent if row.version) or ("",)
        serving[service] = Serving(service, versions, None, last)
    return _with_deploys(serving)


def _with_deploys(serving: dict[str, Serving]) -> dict[str, Serving]:
    pairs = models.Q()
    for entry in serving.values():
        pairs |= models.Q(service=entry.service, version__in=entry.versions)
    if not serving:
        return serving
    deploys: dict[str, Deployment] = {}
    for deploy in Deployment.objects.filter(pairs).order_by("started_at", "id"):
        deploys[deploy.service] = deploy  # the latest wins
    return {
        service: replace(entry, deploy=deploys.get(service)) for service, entry in serving.items()
    }
