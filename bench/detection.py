"""Deploy-verdict accuracy benchmark: scenarios with known ground truth.

Generates deploy scenarios straight into the span table (telemetry.ingest.
store_rows, under service names of their own), runs the analysis at every
checkpoint (5, 15, 30, 60 min), and prints recall per class of regression, the
false-positive rate on clean deploys and the minutes to the first `fail`.
Run from the repo root with the stack's DATABASE_URL (or MONOENV_DATA_DIR):

    .venv/bin/python bench/detection.py [--seed 1] [--keep]

A deploy counts as detected (or as a false positive) if any checkpoint says
`fail`. Each scenario's service has three routes taking 60%, 30% and 10% of
its traffic, log-normal latency and a 1% error rate; half the scenarios are
before/after deploys, half canaries where both versions serve at once.
"""

import argparse
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")

ROUTES = ("GET /api/items/{id}", "POST /api/orders", "GET /api/search")
ROUTE_SHARES = (0.6, 0.3, 0.1)
ROUTE_MEDIAN_MS = (30.0, 80.0, 15.0)
LATENCY_SIGMA = 0.5
BASE_ERROR_RATE = 0.01
CANDIDATE_MINUTES = 60


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # clean, latency, errors, latency_low, trickle
    rps: float
    canary: bool
    seed: int

    @property
    def regression(self) -> bool:
        return self.kind in ("latency", "errors", "latency_low")


def scenarios(seed: int) -> list[Scenario]:
    plan = (
        # kind, service requests/s, count
        [("clean", rps, 14) for rps in (2, 5, 10, 20)]
        + [("latency", rps, 15) for rps in (10, 20)]  # the slowed route: 6 and 12 req/s
        + [("errors", rps, 10) for rps in (2, 5, 10)]
        + [("latency_low", 2, 10), ("trickle", 0.05, 10)]
    )
    result = []
    for kind, rps, count in plan:
        for index in range(count):
            number = len(result)
            result.append(
                Scenario(f"s{number:03d}", kind, rps, index % 2 == 1, seed * 1000 + number)
            )
    return result


def generate(scenario: Scenario, service: str, t0: datetime) -> list[tuple]:
    """Span rows: the old version before t0 (or beside the new one), the new after."""
    from telemetry.otlp import SPAN_COLUMNS

    rng = np.random.default_rng(scenario.seed)
    parts = []
    if scenario.canary:
        parts.append((rng, "v1", t0, CANDIDATE_MINUTES, scenario.rps / 2, False))
        parts.append((rng, "v2", t0, CANDIDATE_MINUTES, scenario.rps / 2, True))
    else:
        parts.append((rng, "v1", t0 - timedelta(minutes=60), 60, scenario.rps, False))
        parts.append((rng, "v2", t0, CANDIDATE_MINUTES, scenario.rps, True))
    rows = []
    for part in parts:
        rows += _rows(scenario, service, *part)
    index = {column: i for i, column in enumerate(SPAN_COLUMNS)}
    assert index["start_time"] == 8 and index["events"] == 19, "SPAN_COLUMNS changed"
    return rows


def _rows(scenario, service, rng, version, start, minutes, rps, is_candidate) -> list[tuple]:
    count = rng.poisson(rps * minutes * 60)
    offsets = np.sort(rng.uniform(0, minutes * 60, count))
    route_index = rng.choice(len(ROUTES), size=count, p=ROUTE_SHARES)
    medians = np.array(ROUTE_MEDIAN_MS)[route_index]
    durations_ms = medians * rng.lognormal(0, LATENCY_SIGMA, count)
    error_rate = np.full(count, BASE_ERROR_RATE)
    if is_candidate and scenario.kind in ("latency", "latency_low"):
        durations_ms = np.where(route_index == 0, durations_ms * 2, durations_ms)
    if is_candidate and scenario.kind == "errors":
        error_rate += 0.02
    errors = rng.random(count) < error_rate
    ids = rng.bytes(24 * count)
    rows = []
    for i in range(count):
        route = ROUTES[route_index[i]]
        error = bool(errors[i])
        rows.append((
            ids[24 * i : 24 * i + 16], ids[24 * i + 16 : 24 * i + 24], None, service, version,
            "production", route, 2, start + timedelta(seconds=float(offsets[i])),
            int(durations_ms[i] * 1000), 2 if error else 0, "", route, 500 if error else 200,
            "GET", error, "TimeoutError" if error else "", "{}", "{}", "[]",
        ))  # fmt: skip
    return rows


def evaluate(scenario: Scenario, service: str, t0: datetime, checkpoints) -> dict[int, str]:
    from deployments import analysis
    from deployments.models import Deployment

    deploy = Deployment(
        service=service, version="v2", previous_version="v1", started_at=t0, finished_at=t0
    )
    return {minutes: analysis.evaluate(deploy, minutes).verdict for minutes in checkpoints}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated spans")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    checkpoints = sorted(settings.MONOENV_DEPLOY_CHECKPOINTS)
    run = f"bench-{int(time.time())}"
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(minutes=CANDIDATE_MINUTES + 10)
    plan = scenarios(args.seed)
    results = []
    stored = 0
    started = time.perf_counter()
    try:
        for scenario in plan:
            service = f"{run}-{scenario.name}-{scenario.kind}"
            rows = generate(scenario, service, t0)
            for first in range(0, len(rows), 50_000):
                _store(rows[first : first + 50_000])
            stored += len(rows)
            verdicts = evaluate(scenario, service, t0, checkpoints)
            results.append((scenario, verdicts))
    finally:
        if not args.keep:
            _clean_up(run)
    elapsed = time.perf_counter() - started
    report(results, checkpoints, stored=stored, elapsed=elapsed)
    return 0


def report(results, checkpoints, *, stored: int, elapsed: float) -> None:
    by_kind = defaultdict(list)
    for scenario, verdicts in results:
        by_kind[scenario.kind].append((scenario, verdicts))

    def failed(verdicts):
        return any(v == "fail" for v in verdicts.values())

    def first_fail(verdicts):
        return min((m for m, v in verdicts.items() if v == "fail"), default=None)

    print(
        f"{len(results)} scenarios, {stored} spans, {elapsed:.0f} s; checkpoints {checkpoints} min"
    )
    labels = {
        "latency": "latency x2 on a route with >= 5 req/s",
        "errors": "error rate +2 pp",
        "latency_low": "latency x2 on a 1.2 req/s route (no target)",
    }
    for kind, label in labels.items():
        entries = by_kind[kind]
        hits = sum(failed(v) for _, v in entries)
        print(f"recall, {label}: {hits}/{len(entries)} = {hits / len(entries):.2f}")
        for rps in sorted({s.rps for s, _ in entries}):
            subset = [v for s, v in entries if s.rps == rps]
            print(f"    at {rps:g} req/s: {sum(failed(v) for v in subset)}/{len(subset)}")
    clean = by_kind["clean"] + by_kind["trickle"]
    false_positives = sum(failed(v) for _, v in clean)
    print(f"false-positive rate, clean deploys: {false_positives}/{len(clean)} = "
          f"{false_positives / len(clean):.3f}")  # fmt: skip
    for rps in sorted({s.rps for s, _ in by_kind["clean"] + by_kind["trickle"]}):
        for canary in (False, True):
            final = defaultdict(int)
            for scenario, verdicts in clean:
                if scenario.rps == rps and scenario.canary == canary:
                    final[str(verdicts[checkpoints[-1]])] += 1
            mode = "canary" if canary else "before/after"
            shown = ", ".join(f"{verdict} {count}" for verdict, count in sorted(final.items()))
            print(f"    clean at {rps:g} req/s, {mode}: verdict at {checkpoints[-1]} min: {shown}")
    at_ten = [first_fail(v) for s, v in by_kind["latency"] + by_kind["errors"] if s.rps == 10]
    caught = sorted(m for m in at_ten if m is not None)
    if caught:
        print(f"minutes to first fail at 10 req/s: median {caught[len(caught) // 2]}, "
              f"max {caught[-1]} ({len(caught)}/{len(at_ten)} caught)")  # fmt: skip


def _store(rows: list[tuple]) -> None:
    import psycopg

    from telemetry import partitions
    from telemetry.ingest import store_rows

    try:
        store_rows(rows)
    except psycopg.errors.CheckViolation:
        # Another process dropped a partition this one had cached.
        partitions.forget_partitions()
        store_rows(rows)


def _clean_up(run: str) -> None:
    from django.db import connection

    pattern = f"{run}-%"
    with connection.cursor() as cursor:
        for table in ("telemetry_span", "telemetry_serviceday", "telemetry_pendingminute",
                      "telemetry_rollupminute"):  # fmt: skip
            cursor.execute("SELECT to_regclass(%s)", [table])
            if cursor.fetchone()[0]:
                cursor.execute(f"DELETE FROM {table} WHERE service LIKE %s", [pattern])


if __name__ == "__main__":
    sys.exit(main())
