"""Requests, errors and latency of services, shaped for the overview, service and deploy pages.

Counts come from telemetry's rollups (telemetry.coarse_rollups) and, where a
page must match the deploy analysis exactly (the environment), from the span
read interface (telemetry.spans). Every rate follows dashboard.figures: complete
buckets only, over the time the service actually served.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache

from dashboard import figures
from dashboard.figures import MINUTE, TimeRange
from telemetry import coarse_rollups, histogram, spans
from telemetry.coarse_rollups import Totals

SERVICE_LOOKBACK = timedelta(days=30)
# The overview's windows are the service page's ranges of the same name.
OVERVIEW_WINDOWS = {name: figures.RANGES[name] for name in ("15m", "1h")}
# A breakdown is reused only while its fingerprint holds; this only bounds the memory.
BREAKDOWN_CACHE_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Presence:
    """When a service, or one version of it, served: each version's first to last span."""

    intervals: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def first_seen(self) -> datetime | None:
        return min((first for first, _ in self.intervals), default=None)

    def served_seconds(self, start: datetime, end: datetime) -> float:
        return figures.served_seconds(self.intervals, start, end)


def _presence(seen: list[spans.VersionSeen]) -> Presence:
    return Presence(tuple((version.first_seen, version.last_seen) for version in seen))


def window_figures(totals: Totals, presence: Presence, start: datetime, end: datetime) -> dict:
    """A service's figures over [start, end): the one rule of every page's headline rate."""
    return figures_of(totals, presence.served_seconds(start, end))


def figures_of(totals: Totals, seconds: float) -> dict:
    return {
        "requests": totals.requests,
        "rate": figures.rate(totals.requests, seconds),
        "error_pct": figures.pct(totals.errors, totals.requests),
        "p50_ms": figures.ms(totals.percentile_us(0.5)),
        "p95_ms": figures.ms(totals.percentile_us(0.95)),
        "p99_ms": figures.ms(totals.percentile_us(0.99)),
    }


def known_services(*, now: datetime) -> list[str]:
    return sorted({seen.service for seen in spans.versions_seen(since=now - SERVICE_LOOKBACK)})


def service_age(service: str, *, now: datetime) -> timedelta | None:
    seen = spans.versions_seen(since=now - SERVICE_LOOKBACK, service=service)
    return now - _presence(seen).first_seen if seen else None


# Overview


def overview_window(now: datetime, name: str) -> tuple[datetime, datetime]:
    """The last 15 minutes or hour of complete minutes: the service page's range of that name."""
    return OVERVIEW_WINDOWS[name].bounds(now)


def overview(*, now: datetime, window: str) -> dict[str, dict]:
    """Per service: rate, errors, p95 and a per-minute sparkline."""
    start, end = overview_window(now, window)
    totals = coarse_rollups.per_service(start=start, end=end)
    per_minute = coarse_rollups.requests_per_minute(start=start, end=end)
    seen_by_service: dict[str, list] = defaultdict(list)
    for seen in spans.versions_seen(since=now - SERVICE_LOOKBACK):
        seen_by_service[seen.service].append(seen)
    rows = {}
    for service, seen in seen_by_service.items():
        presence = _presence(seen)
        rows[service] = {
            **window_figures(totals.get(service) or Totals(), presence, start, end),
            "spark": _sparkline(per_minute.get(service, {}), start, end, presence),
            "spark_start": start.isoformat(),
        }
    return rows


def _sparkline(minutes: dict, start: datetime, end: datetime, presence: Presence) -> list:
    """Requests per second each minute; None before the service's first span."""
    points = []
    minute = start
    while minute < end:
        served = presence.served_seconds(minute, minute + MINUTE)
        points.append(figures.rate(minutes.get(minute, 0), served) if served else None)
        minute += MINUTE
    return points


# Service page


def service_traffic(service: str, time_range: TimeRange, *, now: datetime) -> dict:
    """Series, routes, versions and totals of one service over a range of complete buckets."""
    start, end = time_range.bounds(now)
    parts = _breakdown(service, start=start, end=end, step=time_range.step)
    seen = spans.versions_seen(since=start, service=service)
    presence = _presence(seen)
    seconds = presence.served_seconds(start, end)
    data_start = start
    if presence.first_seen and presence.first_seen > start:
        data_start = max(start, figures.floor(presence.first_seen, time_range.step))
    return {
        "summary": window_figures(parts.overall, presence, start, end),
        # A service younger than the range says so: its figures cover only that time.
        "serving_since": presence.first_seen.isoformat()
        if presence.first_seen and presence.first_seen > start
        else None,
        "series": _series(parts.buckets, time_range.step, data_start, end, presence),
        "routes": _routes(parts.routes, seconds),
        "versions": _versions(seen, parts.versions, start, end),
    }


def _breakdown(service: str, *, start: datetime, end: datetime, step: timedelta):
    """coarse_rollups.breakdown(), reused while the rows it was built from are unchanged.

    A long range ends at its last complete bucket (six hours for 30d), so its
    rows only change when late spans land in it: each poll then pays for the
    cheap fingerprint, not for merging a month of histograms. When the range
    moves on by a bucket, the buckets it left are taken off and the new ones
    put on, so the first load after a boundary merges only those. Minute
    ranges are cheap to read and change every minute; they are read afresh.
    """
    if int(step.total_seconds()) % coarse_rollups.FIVE_MINUTES:
        return coarse_rollups.breakdown(service, start=start, end=end, step=step)
    digest = hashlib.sha256(service.encode()).hexdigest()[:32]
    span = int((end - start).total_seconds())
    key = f"dashboard:breakdown:{digest}:{int(step.total_seconds())}:{span}"
    mark = coarse_rollups.fingerprint(service, start=start, end=end, step=step)
    cached = cache.get(key)
    found = _reused(service, cached, start=start, end=end, step=step) if cached else None
    if found is None or found[0] != mark:
        found = (mark, coarse_rollups.breakdown(service, start=start, end=end, step=step))
    cache.set(key, (start, end, *found), BREAKDOWN_CACHE_SECONDS)
    return found[1]


def _reused(service: str, cached: tuple, *, start: datetime, end: datetime, step: timedelta):
    """The cached breakdown moved to [start, end), with the fingerprint it should have now.

    None when the cache holds a range this one cannot be moved from. The
    caller compares the fingerprint with the stored rows' and merges afresh
    when they differ: late spans landed in the range.
    """
    old_start, old_end, old_mark, old = cached
    if (old_start, old_end) == (start, end):
        return old_mark, old
    if not old_start < start < old_end < end:
        return None
    edges = {"dropped": (old_start, start), "added": (old_end, end)}
    parts = {
        name: coarse_rollups.breakdown(service, start=lower, end=upper, step=step)
        for name, (lower, upper) in edges.items()
    }
    marks = {
        name: coarse_rollups.fingerprint(service, start=lower, end=upper, step=step)
        for name, (lower, upper) in edges.items()
    }
    # What the moved range's rows add up to, if the rows the cache was built from are
    # unchanged: the old range's sums less the dropped buckets', plus the new ones'.
    mark = tuple(
        kept - dropped + added
        for kept, dropped, added in zip(old_mark, marks["dropped"], marks["added"], strict=True)
    )
    return mark, old.shifted(**parts)


def _series(buckets: dict, step: timedelta, start: datetime, end: datetime, presence) -> dict:
    points = []
    bucket = start
    while bucket < end:
        row = figures_of(
            buckets.get(bucket) or Totals(), presence.served_seconds(bucket, bucket + step)
        )
        del row["requests"]
        points.append({"t": bucket.isoformat(), **row})
        bucket += step
    return {"start": start.isoformat(), "end": end.isoformat(), "points": points}


def _routes(routes: dict[str, Totals], seconds: float) -> list[dict]:
    rows = [{"route": route, **figures_of(totals, seconds)} for route, totals in routes.items()]
    return sorted(rows, key=lambda row: (-row["requests"], row["route"]))


def _versions(seen: list, totals: dict[str, Totals], start: datetime, end: datetime) -> list:
    """Versions seen in the range, newest first, each rated over its own served time."""
    rows = []
    for version in seen:
        presence = _presence([version])
        row = window_figures(totals.get(version.version) or Totals(), presence, start, end)
        rows.append(
            {
                "version": version.version,
                "first_seen": version.first_seen.isoformat(),
                "last_seen": version.last_seen.isoformat(),
                **{key: row[key] for key in ("requests", "rate", "error_pct", "p95_ms")},
            }
        )
    return sorted(rows, key=lambda row: row["first_seen"], reverse=True)


# Deploy page

DEPLOY_CHART_MARGIN = timedelta(hours=1)
LATENCY_SAMPLES = 20_000


def deploy_charts(
    service: str,
    version: str,
    previous_version: str,
    *,
    environment: str,
    deployed_at: datetime,
    window_end: datetime | None,
    now: datetime,
) -> dict:
    """Error rate per minute of both versions around the deploy, and their latency shares.

    Reads the deploy's environment only, as the analysis does, and complete
    minutes only.
    """
    start = spans.minute_floor(deployed_at) - DEPLOY_CHART_MARGIN
    end = min(
        max(deployed_at + DEPLOY_CHART_MARGIN, window_end or deployed_at),
        figures.complete_until(now, MINUTE),
    )
    end = max(end, start)
    sides = [(version, True)] + ([(previous_version, False)] if previous_version else [])
    error_rate, data_start = [], None
    for name, is_new in sides:
        counts = spans.minute_counts(
            spans.RequestFilter(service, start, end, environment=environment, version=name)
        )
        points = _minute_points(counts)
        if points:
            first = min(counts)
            data_start = first if data_start is None else min(data_start, first)
        error_rate.append({"version": name, "is_new": is_new, "points": points})
    return {
        "start": (data_start or start).isoformat(),
        "end": end.isoformat(),
        "error_rate": error_rate,
        "latency": _latency_shares(
            service, version, previous_version, environment=environment,
            deployed_at=deployed_at, start=start, end=end,
        ),
    }  # fmt: skip


def _minute_points(counts: dict[datetime, tuple[int, int]]) -> list[dict]:
    """Every minute from the first to the last with requests; quiet ones break the line."""
    points = []
    if not counts:
        return points
    minute, last = min(counts), max(counts)
    while minute <= last:
        requests, errors = counts.get(minute, (0, 0))
        error_pct = figures.pct(errors, requests)
        points.append({"t": minute.isoformat(), "requests": requests, "error_pct": error_pct})
        minute += MINUTE
    return points


def _latency_shares(
    service: str, version: str, previous_version: str, *, environment: str,
    deployed_at: datetime, start: datetime, end: datetime,
) -> dict:  # fmt: skip
    """Share of each version's requests per latency bucket: new since the deploy, old before."""
    counts = {}
    for name, since in ((version, deployed_at), (previous_version, start)):
        buckets = histogram.empty()
        if name and since < end:
            span_filter = spans.RequestFilter(
                service, since, end, environment=environment, version=name
            )
            for samples in spans.latency_samples_ms(
                span_filter, max_samples=LATENCY_SAMPLES
            ).values():
                for duration_ms in samples:
                    buckets[histogram.bucket_index(round(duration_ms * 1000))] += 1
        counts[name] = buckets
    used = [i for i in range(histogram.BUCKET_COUNT) if any(c[i] for c in counts.values())]
    if not used:
        return {"buckets": [], "baseline": [], "candidate": [], "baseline_requests": 0,
                "candidate_requests": 0}  # fmt: skip
    indexes = range(used[0], used[-1] + 1)

    def shares(buckets: list[int]) -> list[float]:
        total = sum(buckets)
        return [round(100 * buckets[i] / total, 3) if total else 0.0 for i in indexes]

    baseline = counts.get(previous_version) if previous_version else None
    return {
        "buckets": [_bucket_label(i) for i in indexes],
        "baseline": shares(baseline) if baseline else [],
        "candidate": shares(counts[version]),
        "baseline_requests": sum(baseline) if baseline else 0,
        "candidate_requests": sum(counts[version]),
    }


def _bucket_label(index: int) -> dict:
    lower, upper = histogram.bucket_range_us(index)
    return {"lower_ms": lower / 1000, "upper_ms": None if upper is None else upper / 1000}
