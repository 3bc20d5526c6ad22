"""The write path shared by both receivers: decoded spans into PostgreSQL.

A receiver acknowledges a batch only after ingest_request() returns, that is
after the spans are committed, or written durably to the local spool
(telemetry/spool.py) when PostgreSQL cannot take them now. A background
replayer in each serving process stores spooled batches once the database
answers again. ingest_request() raises StoreUnavailable only when the spool
is full or turned off.

Flag evaluations ride along: those in span events are stored in the
spans' transaction (so a retried batch, whose spans are skipped, doubles
none), and ingest_logs_request() stores those sent as OTLP log records, with
the same slots, spool and retry semantics; other log records are counted by
the receiver and dropped. A spooled logs batch is told apart by LOGS_PREFIX.
"""

import logging
import os
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from telemetry import flag_events, flag_store, otlp, otlp_signals, partitions
from telemetry.spool import Spool, Unreadable

logger = logging.getLogger(__name__)

_COPY_SQL = "COPY {table} ({columns}) FROM STDIN"
_COLUMN_LIST = ", ".join(otlp.SPAN_COLUMNS)


# Counting the marks lets a rollup tell that a minute was marked again while
# it recomputed (see telemetry/rollups.py); the rollup never makes ingest wait.
MARK_PENDING_SQL = """
    INSERT INTO telemetry_pendingminute (service, minute)
    SELECT * FROM unnest(%s::text[], %s::timestamptz[])
    ON CONFLICT (service, minute) DO UPDATE SET marks = telemetry_pendingminute.marks + 1
"""


# Marks a spooled ExportLogsServiceRequest; no trace request starts so (0xFF is
# no valid protobuf tag), and the spool itself does not look inside.
LOGS_PREFIX = b"\xffmonoenv-logs\n"


class StoreUnavailable(Exception):
    """The spans could not be stored now; the client should retry later."""


class TooManySpans(ValueError):
    """More spans in one request than MONOENV_MAX_SPANS_PER_REQUEST."""


class _IngestSlots:
    """Bounds the batches one process decodes and writes at once, and those waiting.

    A full queue answers at once instead of waiting: a server thread stuck
    behind a slow database cannot answer anyone, so threads must outnumber
    MONOENV_INGEST_CONCURRENCY + MONOENV_INGEST_QUEUE_LENGTH for the overflow
    to get its 503 promptly rather than time out in the server's own backlog.
    """

    def __init__(self):
        self._semaphore = threading.BoundedSemaphore(settings.MONOENV_INGEST_CONCURRENCY)
        self._queue = threading.BoundedSemaphore(max(settings.MONOENV_INGEST_QUEUE_LENGTH, 1))
        self._may_wait = settings.MONOENV_INGEST_QUEUE_LENGTH > 0

    def __enter__(self):
        if self._semaphore.acquire(blocking=False):
            return
        if not (self._may_wait and self._queue.acquire(blocking=False)):
            raise StoreUnavailable("ingest is over capacity")
        try:
            acquired = self._semaphore.acquire(timeout=settings.MONOENV_INGEST_QUEUE_SECONDS)
        finally:
            self._queue.release()
        if not acquired:
            raise StoreUnavailable("ingest is over capacity")

    def __exit__(self, *exc_info):
        self._semaphore.release()

    @contextmanager
    def turn(self):
        """Wait as long as it takes for a slot: for the replayer, which has no client."""
        self._semaphore.acquire()
        try:
            yield
        finally:
            self._semaphore.release()


_slots: _IngestSlots | None = None
_spool: Spool | None = None
# Until this monotonic time, stores go straight to the spool: the database
# just failed one, and the replayer finds out when it is back.
_outage_until = 0.0
# Whether this process logged the outage, so it says so once, not every probe.
_outage_announced = False
_replayers: list[threading.Thread] = []
_replayers_lock = threading.Lock()
_replayer_pid = 0
_wake = threading.Event()
# Seconds the replayer sleeps with an empty spool before looking again (other
# processes on the host may have spooled meanwhile).
IDLE_POLL_SECONDS = 5.0


def current_spool() -> Spool:
    global _spool
    directory = Path(settings.MONOENV_SPOOL_DIR)
    if _spool is None or (_spool.directory, _spool.max_bytes) != (
        directory,
        settings.MONOENV_SPOOL_MAX_BYTES,
    ):
        _spool = Spool(directory, settings.MONOENV_SPOOL_MAX_BYTES)
    return _spool


def database_down() -> bool:
    """Whether a store failed in this process within MONOENV_SPOOL_PROBE_SECONDS."""
    return time.monotonic() < _outage_until


def _note_outage() -> None:
    global _outage_until, _outage_announced
    if not _outage_announced:
        _outage_announced = True
        logger.warning(
            "PostgreSQL cannot take spans now; spooling them to %s", settings.MONOENV_SPOOL_DIR
        )
    _outage_until = time.monotonic() + settings.MONOENV_SPOOL_PROBE_SECONDS


def _note_recovery() -> None:
    global _outage_until, _outage_announced
    if _outage_announced:
        _outage_announced = False
        logger.warning("PostgreSQL takes spans again; replaying the spool")
    _outage_until = 0.0


def current_limits() -> otlp.Limits:
    now = timezone.now()
    return otlp.Limits(
        oldest=now - timedelta(days=settings.MONOENV_RETENTION_DAYS),
        newest=now + timedelta(seconds=settings.MONOENV_MAX_FUTURE_SECONDS),
        retention_days=settings.MONOENV_RETENTION_DAYS,
        max_attribute_value_bytes=settings.MONOENV_MAX_ATTRIBUTE_VALUE_BYTES,
        max_attributes=settings.MONOENV_MAX_ATTRIBUTES_PER_SPAN,
        max_future_seconds=settings.MONOENV_MAX_FUTURE_SECONDS,
    )


def ingest_request(request, *, body: bytes | None = None) -> otlp.DecodedBatch:
    """Validate and store (or spool) an ExportTraceServiceRequest.

    body, when given, is the request already serialized as protobuf, which
    spares serializing it again for the spool. Raises StoreUnavailable only
    when the spool cannot take the batch either.
    """
    global _slots
    _slots = _slots or _IngestSlots()
    _check_span_count(request)
    batch = None
    try:
        # The slot covers decoding too: the decoded rows are the big in-process buffer.
        with _slots:
            batch = otlp.spans_to_rows(request, current_limits())
            if batch.rows:
                _store_unless_down(batch)
    except StoreUnavailable:
        # Over capacity, the batch was not decoded: its replay logs what it rejects.
        _spool_or_raise(request, body)
        return batch or otlp.DecodedBatch()
    return batch


def _store_unless_down(batch: otlp.DecodedBatch) -> None:
    # With nowhere else to put the batch, the database is always worth a try.
    if database_down() and current_spool().enabled:
        raise StoreUnavailable("the database failed a store just now")
    try:
        _store_with_retry_on_dropped_partition(batch)
    except StoreUnavailable:
        _note_outage()
        raise
    if _outage_announced:
        _note_recovery()


def _spool_or_raise(request, body: bytes | None, *, prefix: bytes = b"") -> None:
    spool = current_spool()
    payload = body if body is not None else request.SerializeToString()
    if not spool.put(prefix + payload):
        raise StoreUnavailable("the spool is full or turned off")
    start_replayer()
    _wake.set()


def replay_spool() -> int:
    """Store spooled batches, oldest first, until none is left or the store fails.

    Returns how many batches were stored. Safe to run in several processes
    and threads at once (see telemetry/spool.py).
    """
    global _slots
    _slots = _slots or _IngestSlots()
    spool = current_spool()
    replayed = 0
    try:
        while spool.replay_one(_store_spooled):
            replayed += 1
    except StoreUnavailable:
        _note_outage()
    if replayed:
        logger.info("Replayed %d spooled batch(es); %d left", replayed, len(spool.pending()))
    return replayed


def _store_spooled(payload: bytes) -> None:
    if payload.startswith(LOGS_PREFIX):
        _store_spooled_logs(payload[len(LOGS_PREFIX) :])
        return
    try:
        request = otlp.decode_protobuf(payload)
    except otlp.UndecodableRequest as exc:
        logger.error("Setting aside a spooled batch that does not decode: %s", exc)
        raise Unreadable(str(exc)) from exc
    with _slots.turn():
        batch = otlp.spans_to_rows(request, current_limits())
        if batch.rows:
            _store_with_retry_on_dropped_partition(batch)
    _note_recovery()
    if batch.rejected:
        logger.warning("A spooled batch, replayed: %s", batch.rejection_message())


def _store_spooled_logs(payload: bytes) -> None:
    try:
        request = otlp.decode_protobuf(payload, otlp_signals.ExportLogsServiceRequest)
    except otlp.UndecodableRequest as exc:
        logger.error("Setting aside a spooled logs batch that does not decode: %s", exc)
        raise Unreadable(str(exc)) from exc
    batch = _log_evaluations(request)
    with _slots.turn():
        if batch.evaluations:
            store_log_evaluations(batch.evaluations, received_at=batch.received_at)
    _note_recovery()


def start_replayer() -> None:
    """Start this process's spool replayers, once per process (also after a fork).

    As many threads as MONOENV_INGEST_CONCURRENCY, so a backlog drains at the
    rate the process could store live batches; each takes an ingest slot per
    batch, and the file locks keep them from replaying the same one.
    """
    global _replayers, _replayer_pid
    if _replayer_pid == os.getpid() and any(thread.is_alive() for thread in _replayers):
        return
    if not (current_spool().enabled and settings.MONOENV_SPOOL_BACKGROUND_REPLAY):
        return
    with _replayers_lock:
        # Another receiver thread may have started them while this one waited.
        if _replayer_pid == os.getpid() and any(thread.is_alive() for thread in _replayers):
            return
        _replayer_pid = os.getpid()
        current_spool().clean()
        _replayers = [
            threading.Thread(target=_replay_forever, name=f"spool-replayer-{n}", daemon=True)
            for n in range(max(settings.MONOENV_INGEST_CONCURRENCY, 1))
        ]
        for thread in _replayers:
            thread.start()


def _replay_forever() -> None:
    while True:
        close_old_connections()
        try:
            replay_spool()
        except Exception:
            logger.exception("The spool replayer failed; trying again")
        if database_down():
            # Probe again only after the pause, however many batches are spooled meanwhile.
            time.sleep(settings.MONOENV_SPOOL_PROBE_SECONDS)
        elif not current_spool().pending():
            _wake.wait(IDLE_POLL_SECONDS)
            _wake.clear()


def _check_span_count(request) -> None:
    limit = settings.MONOENV_MAX_SPANS_PER_REQUEST
    count = sum(
        len(scope_spans.spans)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )
    if count > limit:
        raise TooManySpans(f"{count} spans in one request; the limit is {limit}")


def _store_with_retry_on_dropped_partition(batch: otlp.DecodedBatch) -> None:
    try:
        store_rows(batch.rows, evaluation_events=batch.evaluation_events)
    except psycopg.errors.CheckViolation:
        # Another process dropped or never had a partition our cache trusted.
        partitions.forget_partitions()
        store_rows(batch.rows, evaluation_events=batch.evaluation_events)


def store_rows(
    rows: list[tuple], *, evaluation_events: otlp.EvaluationEvents | None = None
) -> int:
    """Store span rows exactly once each, and return how many were new.

    evaluation_events, when given, is the decoder's DecodedBatch.evaluation_events for
    exactly these rows: it spares reading the flag evaluations back out of
    the events JSON.
    """
    try:
        partitions.ensure_partitions({row[otlp.START_TIME_INDEX].date() for row in rows})
        with transaction.atomic():
            _limit_waiting(settings.MONOENV_INGEST_DB_TIMEOUT_SECONDS)
            stored = _copy_new_rows(rows)
            # A retried batch's spans are skipped above, and their flag
            # evaluations with them, so neither is doubled: the picks hold
            # only when every row was new.
            evaluations = flag_store.span_evaluations(
                stored, evaluation_events if stored is rows else None
            )
            # One round trip for the statements that follow the COPY.
            with connection.cursor() as cursor, connection.connection.pipeline():
                _count_service_days(stored)
                _mark_pending_minutes(stored)
                flag_store.insert_batches(evaluations, cursor)
            flag_store.store_pending(evaluations)
        return len(stored)
    except (DatabaseError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
        # A broken connection is useless to the next request: reconnect then.
        connection.close_if_unusable_or_obsolete()
        raise StoreUnavailable(str(exc)) from exc


def _limit_waiting(seconds: int) -> None:
    """Give up on a stalled or locked database in time for the client to retry.

    Without a bound, a batch blocked on a lock holds its slot and its server
    thread past the exporter's whole timeout, which leaves it no time to retry.
    """
    if seconds <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true)",
            [f"{seconds}s", f"{seconds}s"],
        )


def _copy_new_rows(rows: list[tuple]) -> list[tuple]:
    """COPY the rows; if some are already stored (a retried batch), skip those."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            _copy(cursor.cursor, "telemetry_span", rows)
        return rows
    except psycopg.errors.UniqueViolation:
        pass
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor
        raw_cursor.execute("CREATE TEMP TABLE span_staging (LIKE telemetry_span) ON COMMIT DROP")
        _copy(raw_cursor, "span_staging", rows)
        raw_cursor.execute(
            f"INSERT INTO telemetry_span ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM span_staging "
            f"ON CONFLICT DO NOTHING RETURNING {_COLUMN_LIST}"
        )
        stored = raw_cursor.fetchall()
        # ON COMMIT DROP alone fails a second retry inside one outer transaction.
        raw_cursor.execute("DROP TABLE span_staging")
        return stored


def _copy(raw_cursor: psycopg.Cursor, table: str, rows: list[tuple]) -> None:
    with raw_cursor.copy(_COPY_SQL.format(table=table, columns=_COLUMN_LIST)) as copy:
        for row in rows:
            copy.write_row(row)


def _count_service_days(rows: list[tuple]) -> None:
    counts: dict[tuple, list] = defaultdict(lambda: [0, None, None])
    for row in rows:
        start = row[otlp.START_TIME_INDEX]
        entry = counts[(row[otlp.SERVICE_INDEX], row[otlp.VERSION_INDEX], start.date())]
        entry[0] += 1
        entry[1] = start if entry[1] is None or start < entry[1] else entry[1]
        entry[2] = start if entry[2] is None or start > entry[2] else entry[2]
    if not counts:
        return
    # A fixed order keeps concurrent batches from deadlocking on these rows.
    keys = sorted(counts)
    columns = list(zip(*[(*key, *counts[key]) for key in keys], strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO telemetry_serviceday
                (service, service_version, day, span_count, first_seen, last_seen)
            SELECT * FROM unnest(%s::text[], %s::text[], %s::date[], %s::bigint[],
                                 %s::timestamptz[], %s::timestamptz[])
            ON CONFLICT (service, service_version, day) DO UPDATE SET
                span_count = telemetry_serviceday.span_count + EXCLUDED.span_count,
                first_seen = LEAST(telemetry_serviceday.first_seen, EXCLUDED.first_seen),
                last_seen = GREATEST(telemetry_serviceday.last_seen, EXCLUDED.last_seen)
            """,
            [list(column) for column in columns],
        )


def _mark_pending_minutes(rows: list[tuple]) -> None:
    minutes = sorted(
        {
            (row[otlp.SERVICE_INDEX], row[otlp.START_TIME_INDEX].replace(second=0, microsecond=0))
            for row in rows
        }
    )
    if not minutes:
        return
    services, starts = zip(*minutes, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(MARK_PENDING_SQL, [list(services), list(starts)])


# Flag evaluations sent as OTLP log records.


class LogsBatch(flag_events.LogEvaluations):
    """A logs export's evaluations to store, those rejected, and the records not kept."""

    def __init__(self, received_at):
        super().__init__()
        self.received_at = received_at
        self.rejections: Counter = Counter()

    def export_response(self):
        """Partial success names the evaluations refused, as the traces answer does."""
        response = otlp_signals.logs_response()
        rejected = sum(self.rejections.values())
        if rejected:
            reasons = "; ".join(f"{count} {reason}" for reason, count in self.rejections.items())
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = (
                f"rejected {rejected} flag evaluation(s): {reasons}"
            )
        return response


def ingest_logs_request(request, *, body: bytes | None = None) -> LogsBatch:
    """Store (or spool) the flag evaluations of an ExportLogsServiceRequest.

    Other records are only counted (batch.other_records). body, when given,
    is the request as protobuf, spared serializing again for the spool.
    Raises StoreUnavailable only when the spool cannot take the batch either.
    """
    global _slots
    _slots = _slots or _IngestSlots()
    batch = _log_evaluations(request)
    if not batch.evaluations:
        return batch
    try:
        with _slots:
            if database_down() and current_spool().enabled:
                raise StoreUnavailable("the database failed a store just now")
            _store_logs_noting_outage(batch)
    except StoreUnavailable:
        _spool_or_raise(request, body, prefix=LOGS_PREFIX)
    return batch


def _store_logs_noting_outage(batch: LogsBatch) -> None:
    try:
        store_log_evaluations(batch.evaluations, received_at=batch.received_at)
    except StoreUnavailable:
        _note_outage()
        raise
    if _outage_announced:
        _note_recovery()


def _log_evaluations(request) -> LogsBatch:
    """The request's evaluations within the span limits of time; the rest counted as rejected."""
    limits = current_limits()
    batch = LogsBatch(timezone.now())
    found = flag_events.from_logs_request(request, received_at=batch.received_at)
    batch.other_records = found.other_records
    for evaluation in found.evaluations:
        if evaluation.at < limits.oldest:
            batch.rejections[f"older than the {limits.retention_days}-day retention"] += 1
        elif evaluation.at > limits.newest:
            batch.rejections[f"more than {limits.max_future_seconds} s in the future"] += 1
        else:
            batch.evaluations.append(evaluation)
    return batch


def store_log_evaluations(evaluations: list, *, received_at) -> int:
    """Store log-borne evaluations once each in their own transaction; return the new."""
    try:
        with transaction.atomic():
            _limit_waiting(settings.MONOENV_INGEST_DB_TIMEOUT_SECONDS)
            return flag_store.store_log_evaluations(evaluations, received_at=received_at)
    except (DatabaseError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
        connection.close_if_unusable_or_obsolete()
        raise StoreUnavailable(str(exc)) from exc
