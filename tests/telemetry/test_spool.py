"""The durable spool: what PostgreSQL cannot take now is on disk, then stored once.

The database failures here are real: another connection holds a lock that
the ingest transaction waits on past its timeout, as a stalled database does.
"""

import fcntl
import io
import os
import shutil
import subprocess
import sys
import threading

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from telemetry import ingest, spool
from telemetry.models import ServiceDay, Span
from tests.telemetry.otlp_payloads import make_request, make_span


def test_batches_replay_oldest_first_and_are_deleted_once_stored(tmp_path):
    box = spool.Spool(tmp_path, max_bytes=1000)
    for payload in (b"first", b"second", b"third"):
        assert box.put(payload)
    stored = []

    while box.replay_one(stored.append):
        pass

    assert stored == [b"first", b"second", b"third"]
    assert box.pending() == []


def test_a_failed_store_leaves_the_batch_for_the_next_attempt(tmp_path):
    box = spool.Spool(tmp_path, max_bytes=1000)
    box.put(b"batch")

    def fail(payload):
        raise ingest.StoreUnavailable("down")

    with pytest.raises(ingest.StoreUnavailable):
        box.replay_one(fail)
    assert [path.read_bytes() for path in box.pending()] == [b"batch"]


def test_a_batch_whose_store_failed_is_the_first_replayed_next(tmp_path):
    box = spool.Spool(tmp_path, max_bytes=1000)
    box.put(b"older")
    box.put(b"newer")

    def fail(payload):
        raise ingest.StoreUnavailable("down")

    with pytest.raises(ingest.StoreUnavailable):
        box.replay_one(fail)
    stored = []
    while box.replay_one(stored.append):
        pass

    assert stored == [b"older", b"newer"]


def test_batches_spooled_during_a_replay_come_after_those_before_it(tmp_path):
    # Replay works through one listing, then lists again: the new batch is last.
    box = spool.Spool(tmp_path, max_bytes=1000)
    box.put(b"first")
    box.put(b"second")
    stored = []

    assert box.replay_one(stored.append)
    box.put(b"third")
    while box.replay_one(stored.append):
        pass

    assert stored == [b"first", b"second", b"third"]
    assert box.pending() == []


def test_an_unreadable_batch_is_set_aside(tmp_path):
    box = spool.Spool(tmp_path, max_bytes=1000)
    box.put(b"garbage")

    def refuse(payload):
        raise spool.Unreadable("no")

    assert box.replay_one(refuse)
    assert box.pending() == []
    assert [path.read_bytes() for path in (tmp_path / "unreadable").iterdir()] == [b"garbage"]


def test_it_refuses_batches_past_its_size_and_when_turned_off(tmp_path):
    box = spool.Spool(tmp_path, max_bytes=10)
    assert box.put(b"123456")
    assert not box.put(b"12345")
    assert box.put(b"1234")
    assert box.stats().bytes == 10
    assert not spool.Spool(tmp_path / "off", max_bytes=0).put(b"x")


def test_room_comes_back_once_another_process_replayed(tmp_path):
    writer = spool.Spool(tmp_path, max_bytes=10)
    assert writer.put(b"1234567890")
    assert not writer.put(b"1")
    # Another process's replayer, sharing the folder.
    assert spool.Spool(tmp_path, max_bytes=10).replay_one(lambda payload: None)

    assert writer.put(b"1")


def test_a_batch_another_process_holds_is_skipped(tmp_path):
    box = spool.Spool(tmp_path, max_bytes=1000)
    box.put(b"held")
    box.put(b"free")
    fd = os.open(box.pending()[0], os.O_RDONLY)
    try:
        # flock locks belong to the open file, so this holds it as another process would.
        fcntl.flock(fd, fcntl.LOCK_EX)
        stored = []
        assert box.replay_one(stored.append)
        assert not box.replay_one(stored.append)
        assert stored == [b"free"]
    finally:
        os.close(fd)
    assert len(box.pending()) == 1


def test_temporary_files_of_dead_writers_are_never_replayed_and_get_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    abandoned = tmp_path / f"{spool.TEMPORARY_PREFIX}00000000000000000001-{pid}-00000000.otlp"
    abandoned.write_bytes(b"half a batch")
    mine = tmp_path / f"{spool.TEMPORARY_PREFIX}00000000000000000002-{os.getpid()}-00000000.otlp"
    mine.write_bytes(b"being written")
    box = spool.Spool(tmp_path, max_bytes=1000)

    assert box.pending() == []
    assert box.clean() == 1
    assert not abandoned.exists() and mine.exists()


@pytest.fixture
def stalled_database(transactional_db, settings):
    """Holds a lock every ingest transaction needs, until the returned event is set."""
    settings.MONOENV_INGEST_DB_TIMEOUT_SECONDS = 1
    release, locked = threading.Event(), threading.Event()
    # Django's own parameters: on the embedded default the host is a socket
    # folder that settings keep in OPTIONS, not in HOST.
    params = connection.get_connection_params()

    def hold():
        with psycopg.connect(
            dbname=params["dbname"], user=params.get("user"), host=params.get("host"),
            port=params.get("port"), password=params.get("password"),
        ) as other:  # fmt: skip
            other.execute("LOCK TABLE telemetry_pendingminute IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(30)
    yield release
    release.set()
    holder.join()


def test_a_stalled_database_spools_the_batch_and_the_replay_stores_it_once(
    post_traces, stalled_database, settings
):
    resource = {"service.name": "spooled"}
    response = post_traces(
        make_request([make_span(name="a"), make_span(name="b")], resource=resource)
    )
    assert response.status_code == 200, response.content
    # Within the probe pause, the next batch goes straight to disk.
    assert ingest.database_down()
    assert post_traces(make_request([make_span(name="c")], resource=resource)).status_code == 200
    box = ingest.current_spool()
    assert len(box.pending()) == 2
    kept = settings.MONOENV_SPOOL_DIR.parent / "copy"
    shutil.copytree(settings.MONOENV_SPOOL_DIR, kept)

    stalled_database.set()
    ingest._outage_until = 0.0
    assert ingest.replay_spool() == 2
    # As after a crash between the commit and the delete: the same files again.
    for path in kept.glob("*.otlp"):
        shutil.copy(path, settings.MONOENV_SPOOL_DIR)
    assert ingest.replay_spool() == 2

    spans = Span.objects.filter(service="spooled")
    assert sorted(spans.values_list("name", flat=True)) == ["a", "b", "c"]
    assert ServiceDay.objects.get(service="spooled").span_count == 3
    assert box.pending() == []


def test_when_the_spool_is_full_too_the_answer_is_503(post_traces, stalled_database, settings):
    settings.MONOENV_SPOOL_MAX_BYTES = 10
    settings.MONOENV_RETRY_AFTER_SECONDS = 3

    response = post_traces(make_request())

    assert response.status_code == 503
    assert response["Retry-After"] == "3"


def test_the_spool_command_shows_and_replays_the_spool(post_traces, stalled_database):
    assert post_traces(make_request(resource={"service.name": "by-command"})).status_code == 200
    out = io.StringIO()
    call_command("otlp_spool", stdout=out)
    assert ": 1 batch(es), " in out.getvalue()

    stalled_database.set()
    ingest._outage_until = 0.0
    out = io.StringIO()
    call_command("otlp_spool", "--replay", stdout=out)

    assert out.getvalue().startswith("replayed 1 batch(es)\n")
    assert ": 0 batch(es), 0 bytes" in out.getvalue()
    assert Span.objects.filter(service="by-command").count() == 1
