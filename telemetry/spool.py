"""A durable local spool for trace batches the database cannot take now.

Pure file handling with no Django imports; telemetry/ingest.py decides when
to spool and replays through the ordinary store.

Invariants:
- A batch is in the spool only as a complete file. It is written under a
  temporary name, fsynced, renamed into place and the directory fsynced
  before put() returns, so a receiver that answers success after put() has
  the batch on disk through kill -9 or power loss. A temporary file left by
  a killed writer is never replayed; clean() removes it.
- File names sort in arrival order (nanosecond clock, then pid and a
  counter), and replay takes the oldest first. Replay works through one
  listing of the folder before it lists it again: listing (and sorting) the
  whole backlog for every batch made draining n batches cost n² (3,640
  batches: 0.38 s a listing, under load).
- A file is deleted only after store() returned, that is after its spans
  were committed. A crash between the two replays it again; the store's
  (trace_id, span_id) deduplication keeps that exactly once.
- A file is claimed with an exclusive flock while it is replayed, so every
  process on a host can replay one spool together without doubling work.
- The spool holds about max_bytes at most: each process checks a total it
  rescans at most once a second plus what it wrote since, so processes that
  write at once can overshoot by what they write in that second.
- Every file holds one serialized ExportTraceServiceRequest (protobuf), the
  same bytes an OTLP/HTTP exporter would POST.
"""

import fcntl
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".otlp"
TEMPORARY_PREFIX = ".tmp-"
# A temporary file this old belongs to a writer that died mid-write.
ABANDONED_SECONDS = 300
RESCAN_SECONDS = 1.0


class Unreadable(Exception):
    """Raised by a store() that cannot decode a batch: it is set aside, not retried."""


@dataclass(frozen=True)
class SpoolStats:
    files: int
    bytes: int
    oldest_age_seconds: float | None


class Spool:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._known_bytes = 0
        self._scanned_at = float("-inf")
        # Names of one listing still to try, oldest first; shared by this process's replayers.
        self._to_replay: deque[str] = deque()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def put(self, payload: bytes) -> bool:
        """Write one batch durably; False when the spool is off or full."""
        if not self.enabled or not self._has_room(len(payload)):
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):08d}{SUFFIX}"
        temporary = self.directory / f"{TEMPORARY_PREFIX}{name}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
            os.rename(temporary, self.directory / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._fsync_directory()
        with self._lock:
            self._known_bytes += len(payload)
        return True

    def _has_room(self, size: int) -> bool:
        with self._lock:
            if self._known_bytes + size <= self.max_bytes:
                return True
        # Full as far as this process knows: others may have replayed since.
        self._rescan(force=True)
        with self._lock:
            return self._known_bytes + size <= self.max_bytes

    def _rescan(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._scanned_at < RESCAN_SECONDS:
            return
        total = sum(size for _, size in self._entries())
        with self._lock:
            self._known_bytes, self._scanned_at = total, now

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _entries(self) -> list[tuple[Path, int]]:
        """Complete batch files, oldest first, with their sizes."""
        try:
            scanned = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        entries = []
        for entry in scanned:
            if _is_batch(entry.name):
                try:
                    entries.append((Path(entry.path), entry.stat().st_size))
                except FileNotFoundError:
                    continue  # Replayed by another process meanwhile.
        return sorted(entries)

    def _names(self) -> list[str]:
        """Complete batch files' names, oldest first, without a stat for each."""
        try:
            with os.scandir(self.directory) as scanned:
                names = [entry.name for entry in scanned if _is_batch(entry.name)]
        except FileNotFoundError:
            return []
        return sorted(names)

    def pending(self) -> list[Path]:
        return [self.directory / name for name in self._names()]

    def stats(self) -> SpoolStats:
        entries = self._entries()
        oldest = None
        if entries:
            oldest = max(0.0, time.time() - int(entries[0][0].name.split("-")[0]) / 1e9)
        return SpoolStats(len(entries), sum(size for _, size in entries), oldest)

    def replay_one(self, store: Callable[[bytes], None]) -> bool:
        """Store the oldest batch no other process holds, then delete it.

        Returns False when there was none. A batch store() calls Unreadable
        is moved to unreadable/; anything else store() raises propagates and
        leaves the file in place, first in line for the next attempt.
        """
        listed_again = False
        while True:
            name = self._next_to_replay()
            if name is None:
                if listed_again:
                    return False
                self._list_again()
                listed_again = True
                continue
            try:
                if self._replay(self.directory / name, store):
                    return True
            except BaseException:
                with self._lock:
                    self._to_replay.appendleft(name)
                raise

    def _next_to_replay(self) -> str | None:
        with self._lock:
            return self._to_replay.popleft() if self._to_replay else None

    def _list_again(self) -> None:
        names = self._names()
        with self._lock:
            self._to_replay = deque(names)

    def _replay(self, path: Path, store: Callable[[bytes], None]) -> bool:
        """Replay one file unless it is gone or held: whether it was replayed (or set aside)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # Another process is replaying it.
            if os.fstat(fd).st_nlink == 0:
                return False  # Replayed and deleted before we got the lock.
            with os.fdopen(os.dup(fd), "rb") as file:
                payload = file.read()
            try:
                store(payload)
            except Unreadable:
                self.quarantine(path)
                return True
            # Deleted while still locked, so no one can replay it twice.
            path.unlink(missing_ok=True)
            with self._lock:
                self._known_bytes = max(0, self._known_bytes - len(payload))
            return True
        finally:
            os.close(fd)

    def quarantine(self, path: Path) -> Path:
        """Move a file that cannot be decoded out of the way, kept for inspection."""
        target = self.directory / "unreadable" / path.name
        target.parent.mkdir(exist_ok=True)
        os.rename(path, target)
        return target

    def clean(self) -> int:
        """Delete temporary files abandoned by killed writers; return how many."""
        removed = 0
        cutoff = time.time() - ABANDONED_SECONDS
        try:
            scanned = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in scanned:
            if entry.name.startswith(TEMPORARY_PREFIX) and _abandoned(entry, cutoff):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed


def _is_batch(name: str) -> bool:
    return name.endswith(SUFFIX) and not name.startswith(TEMPORARY_PREFIX)


def _abandoned(entry: os.DirEntry, cutoff: float) -> bool:
    pid = int(entry.name[len(TEMPORARY_PREFIX) :].split("-")[1])
    try:
        if entry.stat().st_mtime < cutoff:
            return True
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (FileNotFoundError, PermissionError):
        return False
    return False
