"""The impression log: what each search showed, and the feedback joined to it, in rotated JSON Lines files.

Every answered search records an Impression (the shown products in order, the experiment arm that placed each,
the model versions); a feedback event that names its request is recorded as an Interaction. Experiments are judged
offline from these files, which pandas (`read_json(path, lines=True)`) and pyarrow (`pyarrow.json.read_json`) read
as they are; `read_log` reads a whole directory.

    search path (event loop)          writer thread
    record(item) ──► bounded queue ──► encode ──► append to the active file ──► fsync, at most once a second
        └─ full or closed: False, counted            └─ rotate by size or age; retention by age, then size

record() takes a lock, appends to a deque and returns: no I/O and no encoding on the caller's thread, so a slow or
full disk can neither fail nor slow a search; what it cannot take is counted (`counts`, and the metrics
shoprank_impression_log_records{outcome} and shoprank_impression_log_queued). The writer encodes at most CHUNK_S
(half a millisecond) of records between two writes, and a write releases the GIL, so the thread never holds the
interpreter away from the search path for longer (benchmarks/impression_log.py measures it).

Files are named impressions-<UTC start time, 20261207T083000>-<pid>-<seq>.jsonl, so that they sort by time, and are
created exclusively (O_EXCL), so that processes sharing a directory never write into each other's files. Each line
is one JSON object, {"kind": "impression" | "interaction", ...the dataclass's fields}; a line counts once its
newline is written, and readers skip a last line without one (a write cut short).

Durability: the active file is fsynced at most once a second, at rotation and at close. A crash of the machine loses
at most the last second of records, a crash of the process what was still queued: fine for an analytics log, where
an fsync per record would cost the disk far more than those records are worth.

Errors: a failed write (ENOSPC, EFBIG, EIO, EACCES...) drops the rest of its batch, counted as dropped_error, is
logged at most once a minute, and cuts the file back to its last whole line; the next batch reopens the file and
tries again, so the log recovers by itself when space returns. Nothing the writer meets reaches a search or stops
the thread.

Retention: the log's files last written more than retention_s ago are deleted, then the oldest while they hold
more than max_total_bytes together. A file a writer holds (each keeps an flock on its active file) is never
deleted, nor is anything not named like the log's files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from orchestrator.metrics import Metrics

log = logging.getLogger(__name__)

FILE_PATTERN = re.compile(r"impressions-\d{8}T\d{6}-\d+-\d+\.jsonl")
OUTCOMES = ("written", "dropped_full", "dropped_error", "dropped_closed")
# The writer holds the GIL while it encodes, and gives it up in each write: a chunk is what it encodes between two
# writes, at most CHUNK_S of the search path's wait for the interpreter (and CHUNK_RECORDS, to keep writes small).
CHUNK_S = 0.0005
CHUNK_RECORDS = 256
POLL_S = 0.05  # how often the writer looks at the queue when record() has not woken it
FSYNC_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 60.0
ERROR_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Impression:
    """What one answered search showed. Not to be changed once recorded (the writer reads it later)."""

    request_id: str
    time: float  # seconds since the epoch
    shop: str
    user: str  # keyed hash of the user id; "" when anonymous
    query: str  # as typed
    products: tuple[str, ...]  # shown product ids, in order (position = index + 1)
    arms: tuple[str, ...]  # per shown product, the experiment arm that placed it ("" outside experiments)
    experiment: str = ""  # the experiment's name, "" when none
    model_versions: dict[str, str] = field(default_factory=dict)
    corrected_query: str = ""
    degraded: bool = False


@dataclass(frozen=True)
class Interaction:
    """A feedback event that names the request it came from."""

    request_id: str
    time: float
    event_id: str
    user: str  # keyed hash
    product_id: str
    type: str  # "view" | "click" | "cart" | "purchase"
    position: int  # 1-based position in the impression; 0 when unknown
    arm: str = ""  # the arm that placed the product, "" when not joined or no experiment
    experiment: str = ""
    joined: bool = False  # the impression was found (this replica served it recently)


KINDS = {Impression: "impression", Interaction: "interaction"}
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(item: Impression | Interaction) -> bytes:
    """One line of the log. KeyError for another type, ValueError or TypeError for a field JSON cannot hold."""
    return (_ENCODER.encode({"kind": KINDS[type(item)], **vars(item)}) + "\n").encode("ascii")


def _write_all(fd: int, data: bytes) -> tuple[int, OSError | None]:
    """Write data at the end of fd: the bytes written, and the error that stopped the write short (None if none)."""
    view, done = memoryview(data), 0
    try:
        while done < len(data):
            done += os.write(fd, view[done:])
    except OSError as error:
        return done, error
    return done, None


class ImpressionLog:
    """Impressions and interactions, queued by the search path and written to `directory` by a thread of its own."""

    def __init__(self, directory: Path, *, queue_size: int = 10000, rotate_bytes: int = 64 * 2**20,
                 rotate_s: float = 3600.0, retention_s: float = 7 * 86400.0, max_total_bytes: int = 2 * 2**30,
                 metrics: Metrics | None = None) -> None:
        for name, value, least in (("queue_size", queue_size, 1), ("rotate_bytes", rotate_bytes, 1),
                                   ("max_total_bytes", max_total_bytes, 0)):
            if value < least:
                raise ConfigError(f"impression log {name} is {value}; at least {least} is needed")
        for name, seconds in (("rotate_s", rotate_s), ("retention_s", retention_s)):
            if not seconds > 0:
                raise ConfigError(f"impression log {name} is {seconds}; a positive number of seconds is needed")
        self.directory = Path(directory)
        self.queue_size = queue_size
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.retention_s = retention_s
        self.max_total_bytes = max_total_bytes

        # Shared by record() and the writer, under _lock.
        self._lock = threading.Lock()
        self._queue: deque[Impression | Interaction] = deque()
        self._closed = False
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._in_flight = 0  # taken by the writer, neither written nor dropped yet
        self._wake = threading.Event()
        self._wake_at = max(1, queue_size // 4)  # below this the writer's poll is soon enough
        self._thread: threading.Thread | None = None

        # The writer's own. _path stays set while a failed write has left the file closed, to be reopened.
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # bytes of whole lines in the active file
        self._opened_at = 0.0
        self._seq = 0
        self._dirty = False
        self._last_sync = 0.0
        self._prune_due = True
        self._last_error_log = float("-inf")
        self._errors_unlogged = 0

        # Drops reach the counter at once (they matter most while the writer is stuck), the writer's own outcomes
        # after each batch; the gauge is read at each scrape.
        self._records = None if metrics is None else {
            outcome: metrics.impression_log_records.labels(outcome=outcome) for outcome in OUTCOMES}
        self._published = {"written": 0, "dropped_error": 0}
        if metrics is not None:
            metrics.impression_log_queued.set_function(lambda: self.counts["queued"])

    def start(self) -> ImpressionLog:
        """Create the directory and start the writer. ConfigError when the directory cannot be used."""
        if self._thread is not None or self._closed:
            return self
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"impression log directory {self.directory} cannot be created "
                              f"({error.strerror or error})") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise ConfigError(f"impression log directory {self.directory} is not writable by this process")
        self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
        self._thread.start()
        return self

    def record(self, item: Impression | Interaction) -> bool:
        """Queue an item for the writer. Never blocks, never raises: False (and counted) when full or closed."""
        with self._lock:
            if not self._closed and len(self._queue) < self.queue_size:
                self._queue.append(item)
                if len(self._queue) == self._wake_at:
                    self._wake.set()
                return True
            outcome = "dropped_closed" if self._closed else "dropped_full"
            self._counts[outcome] += 1
        if self._records is not None:
            self._records[outcome].inc()
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, fsync and stop the writer, waiting at most timeout_s (so not on the event loop)."""
        unwritten = 0
        with self._lock:
            self._closed = True
            if self._thread is None:  # never started: nothing will write what is queued
                unwritten = len(self._queue)
                self._counts["dropped_closed"] += unwritten
                self._queue.clear()
        if unwritten and self._records is not None:
            self._records["dropped_closed"].inc(unwritten)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("impression log %s: the writer did not finish within %.1f s; %d records are still "
                            "queued", self.directory, timeout_s, self.counts["queued"])

    @property
    def counts(self) -> dict[str, int]:
        """Records written and dropped (by reason) so far, and those queued for the writer."""
        with self._lock:
            return {**self._counts, "queued": len(self._queue) + self._in_flight}

    # The writer thread.

    def _run(self) -> None:
        next_prune = 0.0
        while True:
            self._wake.wait(POLL_S)
            self._wake.clear()
            with self._lock:
                batch, self._queue = self._queue, deque()
                closing = self._closed
                self._in_flight = len(batch)
            try:
                self._write(batch)
                now = time.monotonic()
                if self._path is not None and (closing or now - self._opened_at >= self.rotate_s):
                    self._finish_file()
                elif self._dirty and now - self._last_sync >= FSYNC_INTERVAL_S:
                    self._sync()
                if self._prune_due or now >= next_prune:
                    self._prune()
                    next_prune = now + RETENTION_INTERVAL_S
            except OSError as error:  # an fsync or close: what was written may be lost; a new file comes next
                self._abandon(error, keep_file=False)
            except Exception as error:  # a bug here must neither stop the log nor reach a search
                log.exception("impression log %s: unexpected error in the writer", self.directory)
                self._abandon(error, keep_file=False)
            with self._lock:
                self._counts["dropped_error"] += self._in_flight
                self._in_flight = 0
            self._publish()
            if closing:
                return

    def _write(self, batch: deque[Impression | Interaction]) -> None:
        """Encode and append the batch a chunk at a time; after a failed write the rest is dropped."""
        while batch:
            lines = []
            deadline = time.perf_counter() + CHUNK_S
            while batch and len(lines) < CHUNK_RECORDS and time.perf_counter() < deadline:
                item = batch.popleft()
                try:
                    lines.append(encode(item))
                except (KeyError, TypeError, ValueError) as error:
                    self._settle(dropped_error=1)
                    self._report(f"a {type(item).__name__} cannot be encoded ({error!r}); it is dropped")
            if lines and not self._append(lines):
                return  # the loop counts what is left in flight as dropped_error

    def _append(self, lines: list[bytes]) -> bool:
        """Append whole lines to the active file, rotating it when full. False when a write failed."""
        index = 0
        while index < len(lines):
            if self._path is not None and self._size and self._size + len(lines[index]) > self.rotate_bytes:
                self._finish_file()
            try:
                if self._fd is None:
                    self._open()
            except OSError as error:
                self._abandon(error, keep_file=True)
                return False
            end, size = index + 1, len(lines[index])  # at least one line, even one longer than rotate_bytes
            while end < len(lines) and self._size + size + len(lines[end]) <= self.rotate_bytes:
                size += len(lines[end])
                end += 1
            data = b"".join(lines[index:end])
            done, error = _write_all(self._fd, data)
            whole = data.rfind(b"\n", 0, done) + 1  # bytes of the lines written to their newline
            self._size += whole
            self._dirty = self._dirty or whole > 0
            self._settle(written=data.count(b"\n", 0, whole))
            if error is not None:
                self._abandon(error, keep_file=True)
                return False
            index = end
        return True

    def _open(self) -> None:
        """Open the active file: the one a failed write closed, else a new one."""
        self.directory.mkdir(parents=True, exist_ok=True)  # it may have been removed under a running log
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        if self._path is not None:
            fd = os.open(self._path, flags, 0o644)
            try:
                self._size = os.fstat(fd).st_size
            except OSError:
                os.close(fd)
                raise
        else:
            while True:
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
                path = self.directory / f"impressions-{stamp}-{os.getpid()}-{self._seq:06d}.jsonl"
                self._seq += 1
                try:
                    fd = os.open(path, flags | os.O_EXCL, 0o644)
                    break
                except FileExistsError:  # another log in this directory, of this pid, in this second
                    continue
            self._path, self._size, self._opened_at = path, 0, time.monotonic()
            _fsync_directory(self.directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # retention keeps the files writers hold
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def _sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._last_sync = time.monotonic()

    def _finish_file(self) -> None:
        """fsync and close the active file (removed if it holds nothing); the next write starts a new one."""
        fd, path = self._fd, self._path
        self._fd, self._path, self._prune_due = None, None, True
        try:
            if fd is not None and self._dirty:
                os.fsync(fd)
            if self._size == 0 and path is not None:
                path.unlink(missing_ok=True)
        finally:
            self._dirty = False
            self._last_sync = time.monotonic()
            if fd is not None:
                os.close(fd)

    def _abandon(self, error: BaseException, *, keep_file: bool) -> None:
        """After a failed write, cut the file back to its last whole line and close it; the next batch reopens it
        (or starts a new file, when the cut failed or keep_file is False)."""
        self._report(f"cannot write {self._path or self.directory}: {error}; records are dropped until writes "
                     "succeed")
        fd, self._fd, self._dirty = self._fd, None, False
        if fd is None:
            return
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            keep_file = False  # a partial line may remain: never append after it
        try:
            os.close(fd)
        except OSError:
            pass  # nothing more to lose: the file is not written again unless it is kept
        if not keep_file:
            self._path = None

    def _prune(self) -> None:
        self._prune_due = False
        try:
            prune(self.directory, retention_s=self.retention_s, max_total_bytes=self.max_total_bytes)
        except OSError as error:  # the directory cannot be listed: the active file is not to blame
            self._report(f"cannot apply retention: {error}")

    def _settle(self, *, written: int = 0, dropped_error: int = 0) -> None:
        with self._lock:
            self._counts["written"] += written
            self._counts["dropped_error"] += dropped_error
            self._in_flight -= written + dropped_error

    def _report(self, message: str) -> None:
        """Log a write error, at most once every ERROR_LOG_INTERVAL_S (a full disk fails every batch)."""
        self._errors_unlogged += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL_S:
            log.error("impression log %s: %s (failures since the last report: %d)", self.directory, message,
                      self._errors_unlogged)
            self._last_error_log, self._errors_unlogged = now, 0

    def _publish(self) -> None:
        """Add the records written and dropped by the writer since the last call to the counter."""
        if self._records is None:
            return
        counts = self.counts
        for outcome, published in self._published.items():
            if counts[outcome] > published:
                self._records[outcome].inc(counts[outcome] - published)
                self._published[outcome] = counts[outcome]


def _fsync_directory(directory: Path) -> None:
    """Make a new file's name durable; some file systems cannot, which costs nothing but that."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def log_files(directory: Path) -> list[Path]:
    """The log's files in the directory, oldest first (by name); [] when there is no such directory."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Path(directory) / name for name in sorted(names) if FILE_PATTERN.fullmatch(name)]


def prune(directory: Path, *, retention_s: float, max_total_bytes: int, now: float | None = None) -> list[Path]:
    """Delete the log's files last written more than retention_s ago, then the oldest while they hold more than
    max_total_bytes together, keeping those a writer holds. The files deleted."""
    now = time.time() if now is None else now
    files = []
    for path in log_files(directory):
        try:
            stat = path.stat()
        except FileNotFoundError:  # pruned by another process since the listing
            continue
        files.append((path, stat.st_size, stat.st_mtime))
    total = sum(size for _, size, _ in files)
    deleted: list[Path] = []
    failures: list[str] = []

    def delete(path: Path, size: int) -> None:
        nonlocal total
        try:
            if _delete_unless_held(path):
                deleted.append(path)
                total -= size
        except OSError as error:
            failures.append(f"{path.name}: {error.strerror or error}")

    for path, size, mtime in files:
        if mtime < now - retention_s:
            delete(path, size)
    for path, size, _ in files:
        if total <= max_total_bytes:
            break
        if path not in deleted:
            delete(path, size)
    if failures:
        log.warning("impression log %s: %d files past retention cannot be deleted (%s)", directory, len(failures),
                    "; ".join(failures[:3]))
    return deleted


def _delete_unless_held(path: Path) -> bool:
    """Delete a file unless a writer holds its lock; False when it was kept (or is gone already)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def read_log(directory: Path) -> Iterator[dict]:
    """Every record of every file of the log, oldest file first. A last line without its newline (a write cut short,
    or under way) is skipped; DataError for a missing directory or a line that is not JSON."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"impression log directory {directory} does not exist")
    for path in log_files(directory):
        try:
            handle = open(path, "rb")
        except FileNotFoundError:  # deleted by retention since the listing
            continue
        with handle:
            for number, line in enumerate(handle, 1):
                if not line.endswith(b"\n"):
                    break
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as error:
                    raise DataError(f"{path}, line {number}: not JSON ({error})") from None
                yield record
