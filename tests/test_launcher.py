"""The launcher's pieces: its tokens and the order it stops things in."""

import sys
import time
from pathlib import Path

import pytest
from honcho.printer import Printer

from monoenv_site import launcher
from telemetry.models import ApiToken


@pytest.mark.django_db
def test_the_ingest_token_can_only_ingest_and_ci_gets_its_own(tmp_path):
    ingest = launcher.ensure_token(tmp_path, *launcher.INGEST_TOKEN)
    ci = launcher.ensure_token(tmp_path, *launcher.CI_TOKEN)

    assert (tmp_path / "ingest-token.txt").read_text().strip() == ingest
    assert (tmp_path / "ci-token.txt").read_text().strip() == ci
    assert ApiToken.objects.get(token_hash=ApiToken.hash(ingest)).scopes == ["ingest"]
    assert sorted(ApiToken.objects.get(token_hash=ApiToken.hash(ci)).scopes) == ["deploy", "read"]
    assert (tmp_path / "ci-token.txt").stat().st_mode & 0o777 == 0o600


@pytest.mark.django_db
def test_a_stored_token_that_still_works_is_kept(tmp_path):
    first = launcher.ensure_token(tmp_path, *launcher.INGEST_TOKEN)

    assert launcher.ensure_token(tmp_path, *launcher.INGEST_TOKEN) == first
    assert ApiToken.objects.count() == 1


@pytest.mark.django_db
def test_an_old_three_scope_ingest_token_is_revoked_and_replaced(tmp_path):
    old, raw = ApiToken.issue(name="local-ingest", scopes=["ingest", "read", "deploy"])
    (tmp_path / "ingest-token.txt").write_text(raw + "\n")

    new = launcher.ensure_token(tmp_path, *launcher.INGEST_TOKEN)

    assert new != raw
    old.refresh_from_db()
    assert old.revoked_at is not None
    assert ApiToken.objects.active().get().scopes == ["ingest"]


# A process that takes a moment to stop, as a Celery worker does, and writes
# down when it got SIGTERM and when it was done.
SLOW_TO_STOP = """
import signal, sys, time
log = open(sys.argv[1], "a")
def stop(signum, frame):
    log.write(f"{sys.argv[2]} signalled {time.time()}\\n"); log.flush()
    time.sleep(float(sys.argv[3]))
    log.write(f"{sys.argv[2]} exited {time.time()}\\n"); log.flush()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
log.write(f"{sys.argv[2]} up\\n"); log.flush()
while True:
    time.sleep(0.05)
"""


def _wait_for_lines(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"only {path.read_text() if path.exists() else 'nothing'}")


def test_redis_is_stopped_only_after_everything_that_uses_it(tmp_path, capsys):
    import os
    import shlex
    import signal
    import threading

    log = tmp_path / "events.log"
    script = tmp_path / "slow.py"
    script.write_text(SLOW_TO_STOP)
    manager = launcher.Supervisor(printer=Printer(sys.stdout))
    for name, delay in (("redis", "0"), ("worker", "0.5"), ("beat", "0.2")):
        # exec, as the launcher's command lines do: the pid honcho knows is the process.
        command = [sys.executable, str(script), str(log), name, delay]
        manager.add_process(name, shlex.join(["exec", *command]))

    def stop_when_up():
        _wait_for_lines(log, 3)
        os.kill(os.getpid(), signal.SIGTERM)  # as Ctrl-C or a service manager would

    threading.Thread(target=stop_when_up, daemon=True).start()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        assert launcher.supervise(manager) == 0
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    events = {}
    for line in log.read_text().splitlines():
        name, what, *at = line.split()
        if at:
            events[(name, what)] = float(at[0])
    assert events[("redis", "signalled")] >= events[("worker", "exited")]
    assert events[("redis", "signalled")] >= events[("beat", "exited")]
    assert events[("worker", "signalled")] < events[("worker", "exited")]


def test_on_the_demo_the_worker_and_beat_start_only_once_the_backfill_is_in(tmp_path):
    from django.conf import settings

    manager = launcher.build_manager(settings, tmp_path, own_redis=False, demo=True)
    lines = {name: process["obj"].cmd for name, process in manager._processes.items()}
    marker = str(launcher.backfilled_marker(tmp_path))

    for name in ("worker", "beat"):
        waits, run = lines[name].split(" && exec ")
        assert waits.endswith(f"wait-file {marker}") and "celery" in run
    assert f"--ready-file {marker}" in lines["demo"]
    # Ingest never waits: the backfill goes through it.
    assert "wait-file" not in lines["otlp"] + lines["grpc"]


def test_waiting_for_the_backfill_ends_when_its_marker_appears(tmp_path):
    import threading

    marker = tmp_path / "demo-backfilled"
    threading.Timer(0.3, marker.touch).start()
    started = time.monotonic()

    assert launcher.wait_for_file(marker, timeout=60)
    assert time.monotonic() - started < 60
    assert not launcher.wait_for_file(tmp_path / "never", timeout=0.5)
