"""Flag benchmark: what reading and attributing flag evaluations costs ingest.

Run from the repo root with a migrated database:

    DATABASE_URL=postgres://... .venv/bin/python bench/flags.py --batches 60

1. Ingest cost. The in-process ingest loop (decode + store_rows, as the
   ingest ceiling in bench/ingest.py) runs on OTLP batches in which every
   request evaluates a flag: each trace is a server span and a child span,
   the evaluation event sits on the server span in two traces of three and
   on the child in the third. Batches whose event is a flag evaluation
   alternate with batches carrying the same event under another name (spans
   of the same size), through the whole ingest path: store_rows reads,
   attributes and stores the evaluations itself. After each round the
   attribution job (flag_store.attribute_pending) runs for whatever the
   batches left pending, counted with the flagged side: work moved to the
   background is still work on the same cores. The cost is the share of
   throughput lost, by wall clock and by CPU (this process plus its
   PostgreSQL backend, read from /proc when the database is on this host).
2. Lazy attribution. Evaluations that arrive as logs after their spans are
   attributed by flag_store.attribute_pending; its rate in evaluations per
   second, and how many such processes 20,000 spans/s of ingest would need
   (10,000 requests/s, one evaluation each, all as logs: the worst case).
   Logs that come after their spans are attributed as they are stored
   (flag_store.store_log_evaluations looks the spans up); this measures the
   job that attributes the rest, the worst case being all of them.
   Then reads: the verdicts' two cohort reads over the same number of
   evaluations stored as batch rows (by ingest) and as single rows (as logs).

3. Verdicts, in memory. Rollouts at 10 requests/s where a 10% cohort gets
   errors +2 pp (1% to 3%) or latency x2, and clean ones; each minute's
   requests drawn per cohort (two routes, log-normal latency), the cohort and
   the control built up as deployments/judge.py Side values and judged at
   every look with the engine's own rules (flags/verdicts.rules_at, the
   flag's share of alpha at each look, and judge.judge), as flags/verdicts.py
   does with the cohorts it reads. Prints recall, the false-positive rate on
   clean rollouts with its one-sided 95% upper bound (Clopper-Pearson), the
   minutes from the change to the first fail, and, for errors, how often a
   single test at minute 3 with all of 1 - confidence would fail: the most any
   sequential rule could do by then.

       .venv/bin/python bench/flags.py --only-verdicts
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monoenv_site.settings")

TARGET_SPANS_PER_SECOND = 20_000


def build_payloads(
    service: str, count: int, traces_per_batch: int, seed: int, *, evaluations: bool = True
) -> list[bytes]:
    """Batches of (server span, child span) traces, each evaluating `new-checkout` once.

    Without evaluations, the same event is named otherwise: spans stay the same size.
    """
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def attribute(key, value):
        return KeyValue(key=key, value=AnyValue(string_value=value))

    rng = random.Random(seed)
    payloads = []
    for _ in range(count):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(attribute("service.name", service))
        scope_spans = resource_spans.scope_spans.add()
        now_ns = time.time_ns()
        for index in range(traces_per_batch):
            trace_id, server_id = rng.randbytes(16), rng.randbytes(8)
            start = now_ns - rng.randrange(60_000_000_000)
            server = scope_spans.spans.add(
                trace_id=trace_id, span_id=server_id, name="GET /checkout", kind=2,
                start_time_unix_nano=start, end_time_unix_nano=start + 30_000_000,
            )  # fmt: skip
            server.attributes.append(attribute("http.route", "/checkout"))
            child = scope_spans.spans.add(
                trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=server_id,
                name="pricing", kind=1, start_time_unix_nano=start + 1_000_000,
                end_time_unix_nano=start + 20_000_000,
            )  # fmt: skip
            carrier = child if index % 3 == 2 else server
            # The same event under another name: spans of equal size, no evaluation.
            name = "feature_flag.evaluation" if evaluations else "cache.lookup"
            event = carrier.events.add(name=name, time_unix_nano=start + 2_000_000)
            event.attributes.extend([
                attribute("feature_flag.key", "new-checkout"),
                attribute("feature_flag.result.variant", rng.choice(("on", "off"))),
                attribute("feature_flag.provider.name", "bench"),
            ])  # fmt: skip
        payloads.append(request.SerializeToString())
    return payloads


class Clock:
    """Wall time and CPU time: this process's, and its PostgreSQL backend's.

    On a loaded machine wall time mostly measures waiting for a core; CPU
    time is what the work costs. The backend's is read from
    /proc/<pid>/schedstat, so only when PostgreSQL runs on this host (else nan).
    """

    def __init__(self):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.schedstat = Path(f"/proc/{cursor.fetchone()[0]}/schedstat")

    def now(self) -> tuple[float, float, float]:
        try:
            backend = int(self.schedstat.read_text().split()[0]) / 1e9
        except OSError:
            backend = float("nan")
        return time.perf_counter(), time.process_time(), backend


def ingest_costs(clock: Clock, payloads: list[bytes]) -> list[float]:
    """[wall, CPU of this process + its backend] seconds to decode and store the batches."""
    from django.db import transaction

    from telemetry import ingest, otlp

    started = clock.now()
    for body in payloads:
        batch = otlp.spans_to_rows(otlp.decode_protobuf(body), ingest.current_limits())
        with transaction.atomic():
            # As ingest_request() stores them: with the events the decoder picked.
            ingest.store_rows(batch.rows, evaluation_events=batch.evaluation_events)
    return _elapsed(clock, started)


def attribution_costs(clock: Clock) -> list[float]:
    """What the periodic attribution job costs for what the batches left pending."""
    from django.utils import timezone

    from telemetry import flag_store

    started = clock.now()
    while sum(flag_store.attribute_pending(now=timezone.now()).values()):
        pass
    return _elapsed(clock, started)


def _elapsed(clock: Clock, started: tuple) -> list[float]:
    wall, own, backend = (b - a for a, b in zip(started, clock.now(), strict=True))
    return [wall, own + backend]


def measure_ingest(args) -> None:
    """The cost of flag evaluations to ingest: wall-clock throughput and CPU per span."""
    clock = Clock()
    plain, flagged = [0.0, 0.0], [0.0, 0.0]
    spans = 0
    for round_index in range(args.rounds):
        # Fresh payloads each time: a retried batch would be skipped, not stored.
        plain_batches = build_payloads("bench-flags", args.batches, args.traces,
                                       10 + round_index, evaluations=False)  # fmt: skip
        flagged_batches = build_payloads("bench-flags", args.batches, args.traces, 90 + round_index)
        # Batch by batch in turn, so a load change on the machine hits both alike.
        for plain_batch, flagged_batch in zip(plain_batches, flagged_batches, strict=True):
            _accumulate(plain, ingest_costs(clock, [plain_batch]))
            _accumulate(flagged, ingest_costs(clock, [flagged_batch]))
        # Counted with the flagged side: work left to the background is still work.
        _accumulate(flagged, attribution_costs(clock))
        spans += args.batches * args.traces * 2
    print(f"ingest of spans without evaluations: {spans / plain[0]:,.0f} spans/s, "
          f"{plain[1] / spans * 1e6:.1f} us CPU per span ({spans} spans)")  # fmt: skip
    print(f"ingest of spans with evaluations, stored and attributed: {spans / flagged[0]:,.0f} "
          f"spans/s, {flagged[1] / spans * 1e6:.1f} us CPU per span "
          f"({spans // 2} evaluations)")  # fmt: skip
    print(f"attribution cost: {1 - plain[0] / flagged[0]:.1%} of ingest throughput (wall clock), "
          f"{1 - plain[1] / flagged[1]:.1%} of its CPU (this process and its PostgreSQL backend)")


def _accumulate(total: list[float], costs: list[float]) -> None:
    for index, cost in enumerate(costs):
        total[index] += cost


def measure_lazy(args) -> None:
    from django.utils import timezone

    from telemetry import flag_events, flag_store, otlp
    from telemetry.ingest import current_limits, store_rows

    EVENTS = otlp.SPAN_COLUMNS.index("events")  # noqa: N806

    payloads = build_payloads("bench-flags-lazy", args.batches, args.traces, 500)
    evaluations = []
    for body in payloads:
        rows = otlp.spans_to_rows(otlp.decode_protobuf(body), current_limits()).rows
        # As if each evaluation had come as a log record: the spans carry none.
        evaluations += [e._replace(carrier="log") for e in flag_events.from_span_rows(rows)]
        store_rows([row[:EVENTS] + ("[]",) + row[EVENTS + 1 :] for row in rows])
    flag_store.store_evaluations(evaluations, received_at=timezone.now())
    clock = Clock()
    started, attributed = clock.now(), 0
    while True:
        counts = flag_store.attribute_pending(now=timezone.now())
        if not counts["attributed"]:
            break
        attributed += counts["attributed"]
    elapsed, cpu = _elapsed(clock, started)
    rate = attributed / elapsed
    print(f"lazy attribution: {attributed} evaluations in {elapsed:.2f} s: {rate:,.0f}/s, "
          f"{cpu / attributed * 1e6:.1f} us CPU each")  # fmt: skip
    needed = TARGET_SPANS_PER_SECOND / 2
    # Mostly database time, so processes, not cores: workers claim batches with SKIP LOCKED.
    print(
        f"at {TARGET_SPANS_PER_SECOND:,} spans/s, all evaluations arriving as logs "
        f"({needed:,.0f}/s): {needed / rate:.1f} attribution processes like this one, "
        f"{needed * cpu / attributed:.1f} cores of CPU"
    )


def measure_reads(args) -> None:
    """What the packing costs reads: the same evaluations as batch rows and as single rows.

    One service's evaluations are stored by ingest (batch rows), another's as
    logs (single rows); the two cohort reads the verdicts make run on each,
    best of five.
    """
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from telemetry import flag_events, flag_store, ingest, otlp

    events = otlp.SPAN_COLUMNS.index("events")
    start = timezone.now() - timedelta(minutes=2)
    for service, seed in (("bench-reads-batch", 700), ("bench-reads-rows", 800)):
        for body in build_payloads(service, args.batches, args.traces, seed):
            rows = otlp.spans_to_rows(otlp.decode_protobuf(body), ingest.current_limits()).rows
            with transaction.atomic():
                if service.endswith("batch"):
                    ingest.store_rows(rows)
                    continue
                logged = [e._replace(carrier="log") for e in flag_events.from_span_rows(rows)]
                ingest.store_rows([row[:events] + ("[]",) + row[events + 1 :] for row in rows])
                flag_store.store_log_evaluations(logged, received_at=timezone.now())
    end = timezone.now() + timedelta(minutes=1)
    for service, form in (("bench-reads-batch", "batch rows"), ("bench-reads-rows", "single rows")):
        cohort = flag_store.CohortFilter(flag="new-checkout", service=service, cohort="on",
                                         start=start, end=end)  # fmt: skip
        counts = _best_of(5, flag_store.cohort_counts, "new-checkout", start, end,
                          services=(service,))  # fmt: skip
        routes = _best_of(5, flag_store.cohort_route_counts, cohort)
        total = args.batches * args.traces
        print(f"reads of {total} evaluations as {form}: cohort_counts {counts * 1000:.0f} ms, "
              f"cohort_route_counts {routes * 1000:.0f} ms (best of 5)")  # fmt: skip


def _best_of(times: int, read, *args, **kwargs) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        read(*args, **kwargs)
        best = min(best, time.perf_counter() - started)
    return best


VERDICT_ROUTES = ("GET /cart", "POST /checkout")


def _minute(rng, count: int, *, error_rate: float, slowdown: float):
    """One minute of one cohort: per route, requests, errors and latencies (ms)."""
    import numpy as np

    per_route = rng.multinomial(count, [0.5, 0.5])
    minute = {}
    for route, n in zip(VERDICT_ROUTES, per_route, strict=True):
        errors = int(rng.binomial(n, error_rate))
        latencies = 40.0 * np.exp(rng.normal(0, 0.4, n)) * slowdown
        minute[route] = (int(n), errors, latencies)
    return minute


def _add(side, minute) -> None:
    import numpy as np

    for route, (n, errors, latencies) in minute.items():
        side.requests[route] = side.requests.get(route, 0) + n
        side.errors[route] = side.errors.get(route, 0) + errors
        side.latencies_ms[route] = np.concatenate([side.latencies(route), latencies])


def first_fail(seed: int, *, error_rate: float, slowdown: float, horizon: int) -> int | None:
    """The first look (minutes after the change) at which the cohort fails, if any."""
    import numpy as np

    from deployments import judge
    from flags import verdicts

    rng = np.random.default_rng(seed)
    control, cohort = judge.Side(), judge.Side()
    schedule = [m for m in verdicts.flag_looks() if m <= horizon]
    for minute in range(1, horizon + 1):
        in_cohort = int(rng.binomial(600, 0.1))  # 10 req/s, a 10% cohort
        _add(cohort, _minute(rng, in_cohort, error_rate=error_rate, slowdown=slowdown))
        _add(control, _minute(rng, 600 - in_cohort, error_rate=0.01, slowdown=1.0))
        if minute in schedule:
            if judge.judge(control, cohort, verdicts.rules_at(minute)).verdict == judge.FAIL:
                return minute
    return None


def best_possible_at(minute: int, runs: int, *, alpha: float, seed: int = 9000) -> float:
    """Power of one exact test of the service's error rate at `minute`, spending all of alpha.

    No sequential rule, and no rule with more than this one comparison, can
    fail more often by that minute at the same false-positive rate.
    """
    import numpy as np

    from deployments import judge, stats

    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(runs):
        control, cohort = judge.Side(), judge.Side()
        for _ in range(minute):
            in_cohort = int(rng.binomial(600, 0.1))
            _add(cohort, _minute(rng, in_cohort, error_rate=0.03, slowdown=1.0))
            _add(control, _minute(rng, 600 - in_cohort, error_rate=0.01, slowdown=1.0))
        strata = [stats.Stratum(control.errors[r], control.requests[r], cohort.errors[r],
                                cohort.requests[r]) for r in VERDICT_ROUTES]  # fmt: skip
        result = stats.compare_stratified_error_rates(
            strata, thresholds=stats.Thresholds(), confidence=1 - alpha
        )
        hits += result.p_value < alpha
    return hits / runs


def _first_fails(args, seeds, *, error_rate: float, slowdown: float) -> list[int | None]:
    from functools import partial
    from multiprocessing import Pool

    import django

    run = partial(_first_fail_of_seed, error_rate=error_rate, slowdown=slowdown,
                  horizon=args.horizon)  # fmt: skip
    with Pool(args.processes, initializer=django.setup) as pool:
        return pool.map(run, seeds, chunksize=4)


def _first_fail_of_seed(seed: int, **kwargs) -> int | None:
    return first_fail(seed, **kwargs)


def measure_verdicts(args) -> None:
    from django.conf import settings
    from scipy.stats import beta

    started = time.perf_counter()
    scenarios = {"errors +2 pp": (0.03, 1.0), "latency x2": (0.01, 2.0)}
    for name, (error_rate, slowdown) in scenarios.items():
        fails = _first_fails(args, [1000 + n for n in range(args.regressions)],
                             error_rate=error_rate, slowdown=slowdown)  # fmt: skip
        found = sorted(m for m in fails if m is not None)
        median = found[len(found) // 2] if found else None
        print(f"{name} in a 10% cohort at 10 req/s: recall {len(found) / len(fails):.2f} "
              f"({len(found)}/{len(fails)}); minutes to first fail: median {median}, "
              f"max {found[-1] if found else None}; failed by minute 3: "
              f"{sum(m <= 3 for m in found)}/{len(fails)}")  # fmt: skip
    alpha = 1 - settings.MONOENV_DEPLOY_CONFIDENCE
    bound = best_possible_at(3, args.regressions * 5, alpha=alpha)
    print(f"    errors +2 pp: one exact test at minute 3 spending all of alpha {alpha:g} "
          f"fails {bound:.2f} of the time: the most any rule can fail by minute 3")  # fmt: skip
    clean = _first_fails(args, [5000 + n for n in range(args.clean)], error_rate=0.01,
                         slowdown=1.0)  # fmt: skip
    false = sum(m is not None for m in clean)
    upper = beta.ppf(0.95, false + 1, len(clean) - false)
    print(f"clean rollouts: false-positive rate {false / len(clean):.3f} ({false}/{len(clean)}), "
          f"95% upper bound {upper:.3f}, over {args.horizon} minutes of looks")  # fmt: skip
    print(f"verdicts: {time.perf_counter() - started:.0f} s ({args.processes} processes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="per round and side")
    parser.add_argument("--traces", type=int, default=256, help="per batch (2 spans each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--regressions", type=int, default=40, help="runs per regression")
    parser.add_argument("--clean", type=int, default=300, help="clean runs")
    parser.add_argument("--horizon", type=int, default=60, help="minutes of looks")
    parser.add_argument("--processes", type=int, default=2, help="for the verdicts")
    parser.add_argument("--only-verdicts", action="store_true")
    parser.add_argument("--no-verdicts", action="store_true", help="ingest and lazy parts only")
    args = parser.parse_args()

    import django

    django.setup()
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    if not args.only_verdicts:
        measure_ingest(args)
        measure_lazy(args)
        measure_reads(args)
    if not args.no_verdicts:
        measure_verdicts(args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
