"""DORA benchmark: the Delivery page and GET /api/v1/dora over a year of history.

Loads 365 days for 50 services, 100 deploys a day in all (36,500 deploys):
about 5% fail their verdict and are rolled back within the hour (the rollback
is one of the day's deploys), a third of the failures open an incident that
blames them, 90% of deploys carry a commit time. All under service names
starting with "bench-dora-". The outcome of every deploy is then built once
(the poll keeps them current afterwards; that build is timed and printed).

Then loads each page and endpoint 20 times, from a cold cache and right after
ANALYZE, and prints the p95 and the first load. Everything it wrote is
deleted at the end.

    DATABASE_URL=postgres://... .venv/bin/python bench/dora.py
"""

import math
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import F  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from deployments.models import Deployment, DeployStatus, Verdict  # noqa: E402
from incidents import delivery  # noqa: E402
from incidents.models import Incident, Status  # noqa: E402
from telemetry.models import ApiToken  # noqa: E402

PREFIX = "bench-dora-"
SERVICES = [f"{PREFIX}{i:02d}" for i in range(50)]
DAYS = 365
DEPLOYS_PER_DAY = 100
FAIL_SHARE = 0.05
LOADS = 20
BUDGET_MS = 300
USERNAME = "bench-dora-user"
rng = random.Random(14)


def load(now) -> int:
    """Deploys, rollbacks and incidents; returns how many deploys."""
    started = time.monotonic()
    rows, failures = [], []
    for day in range(DAYS):
        base = now - timedelta(days=DAYS - day)
        for slot in range(DEPLOYS_PER_DAY):
            service = SERVICES[(day * DEPLOYS_PER_DAY + slot) % len(SERVICES)]
            at = base + timedelta(seconds=rng.uniform(0, 86400 - 7200))
            failed = rng.random() < FAIL_SHARE
            rows.append(_deploy(service, f"{day}.{slot}", at, failed=failed))
    created = Deployment.objects.bulk_create(rows, batch_size=5000)
    rollbacks = []
    for deploy in created:
        if deploy.verdict == Verdict.FAIL:
            failures.append(deploy)
            at = deploy.started_at + timedelta(minutes=rng.uniform(10, 60))
            rollbacks.append(_deploy(deploy.service, f"{deploy.version}-rb", at, failed=False,
                                     rollback_of=deploy))  # fmt: skip
    # The rollbacks are part of the hundred a day: drop as many plain deploys.
    extra = {d.pk for d in rng.sample([d for d in created if d.verdict != Verdict.FAIL],
                                      len(rollbacks))}  # fmt: skip
    Deployment.objects.filter(pk__in=extra).delete()
    Deployment.objects.bulk_create(rollbacks, batch_size=5000)
    incidents = [_incident(deploy) for deploy in failures if rng.random() < 1 / 3]
    Incident.objects.bulk_create(incidents, batch_size=2000)
    # As if the poll last touched each incident when it was resolved.
    Incident.objects.filter(title__startswith=PREFIX).update(updated_at=F("resolved_at"))
    count = Deployment.objects.filter(service__startswith=PREFIX).count()
    print(f"  {count:,} deploys ({len(rollbacks):,} rollbacks), {len(incidents):,} incidents, "
          f"loaded in {time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    return count


def _deploy(service, version, at, *, failed: bool, rollback_of=None) -> Deployment:
    finished = at + timedelta(minutes=rng.uniform(2, 15))
    commit = finished - timedelta(hours=rng.lognormvariate(1.5, 1.0))
    return Deployment(
        service=service, version=version, environment="production", started_at=at,
        finished_at=finished, commit_time=commit if rng.random() < 0.9 else None,
        status=DeployStatus.ROLLED_BACK if failed else DeployStatus.SUCCEEDED,
        verdict=Verdict.FAIL if failed else Verdict.PASS, evaluated_at=at + timedelta(minutes=30),
        rollback_of=rollback_of, first_span_at=at,
    )  # fmt: skip


def _incident(deploy: Deployment) -> Incident:
    detected = deploy.started_at + timedelta(minutes=8)
    return Incident(
        title=f"{PREFIX}{deploy.service} burning", services=[deploy.service],
        status=Status.RESOLVED,
        started_at=deploy.started_at, detected_at=detected, last_signal_at=detected,
        acknowledged_at=detected + timedelta(minutes=3),
        mitigated_at=detected + timedelta(minutes=rng.uniform(10, 50)),
        resolved_at=detected + timedelta(hours=2), top_suspect=deploy, trigger_kind="alert",
    )  # fmt: skip


def clean() -> None:
    Incident.objects.filter(title__startswith=PREFIX).delete()
    Deployment.objects.filter(service__startswith=PREFIX).delete()
    User.objects.filter(username=USERNAME).delete()
    ApiToken.objects.filter(name=USERNAME).delete()


def targets() -> list[tuple[str, str, bool]]:
    service = SERVICES[0]
    page = reverse("dashboard:delivery")
    return [
        ("delivery page (30d)", page, False),
        ("delivery page (7d)", page + "?days=7", False),
        ("delivery page (90d)", page + "?days=90", False),
        ("delivery page (90d, service)", page + f"?days=90&service={service}", False),
        ("delivery.json (90d)", reverse("dashboard:delivery-json") + "?days=90", False),
        ("api dora (30d)", "/api/v1/dora?days=30", True),
        ("api dora (90d)", "/api/v1/dora?days=90", True),
        ("api dora (365d)", "/api/v1/dora?days=365", True),
        ("api dora (365d, service)", f"/api/v1/dora?days=365&service={service}", True),
        ("api dora (90d, environment)", "/api/v1/dora?days=90&environment=production", True),
    ]


def p95(samples: list[float]) -> float:
    """Nearest-rank 95th percentile: the 19th of 20 sorted samples."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def measure() -> bool:
    cache.clear()
    client = Client(HTTP_HOST="localhost")
    client.force_login(User.objects.create_user(USERNAME))
    token = ApiToken.issue(name=USERNAME, scopes=["read"])[1]
    auth = {"Authorization": f"Bearer {token}"}
    ok = True
    print(f"\n{'what':<30} {'p95 ms':>8} {'median':>8} {'first':>8} {'budget':>7}  result")
    for name, url, api in targets():
        samples = []
        for _ in range(LOADS):
            started = time.perf_counter()
            response = client.get(url, headers=auth if api else {})
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        worst = max(p95(samples), samples[0])
        ok &= worst < BUDGET_MS
        print(f"{name:<30} {p95(samples):>8.1f} {statistics.median(samples):>8.1f} "
              f"{samples[0]:>8.1f} {BUDGET_MS:>7}  {'ok' if worst < BUDGET_MS else 'OVER'}",
              flush=True)  # fmt: skip
    return ok


def main() -> int:
    call_command("migrate", verbosity=0)
    clean()
    now = timezone.now()
    print(f"Loading {DAYS} days for {len(SERVICES)} services, {DEPLOYS_PER_DAY} deploys a day...")
    try:
        load(now)
        started = time.monotonic()
        built = delivery.rebuild_all()
        print(f"  {built:,} change outcomes built in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        delivery.refresh_recent(now=now)
        print(f"  one poll's refresh of recent outcomes: {time.monotonic() - started:.2f} s")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        ok = measure()
    finally:
        clean()
    print("\nall within budget (p95 and first load)" if ok else "\nSOME OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
