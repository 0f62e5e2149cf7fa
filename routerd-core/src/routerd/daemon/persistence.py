"""Disk trouble of a daemon's writers, reported through one place.

Every writer of a daemon (the event log and its cursor file, state files,
and whatever writes later) reports each failed and each successful write to
one :class:`PersistenceHealth`. It keeps the per-writer fault, logs one line
per change of state (not one per failed write), tells listeners (the runtime
maps them onto the ``PersistenceDegraded`` condition) and runs one retry
thread that calls each failing writer's retry function with exponential
backoff until it succeeds. A writer never raises a disk error into the code
that asked it to write something: it keeps the data and reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import errno
import logging
import os
from pathlib import Path
import threading
import time
from typing import Any

from routerd.timefmt import rfc3339

log = logging.getLogger("routerd.persistence")

#: First retry after this many seconds, doubling up to :data:`RETRY_CAP`.
RETRY_BASE = 0.2
RETRY_CAP = 2.0

#: Errors a disk recovers from by itself (space freed, quota raised, a device
#: back, a remount read-write). At start, any other error on a daemon's own
#: file (a directory where the file should be, no permission) is a broken
#: setup that is reported as such instead of being retried for ever.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EROFS,
        errno.EFBIG,
        errno.EAGAIN,
        errno.EINTR,
        errno.ENOMEM,
    }
)

#: Condition reasons for the errors a disk usually gives.
_REASONS = {
    errno.ENOSPC: "NoSpace",
    errno.EDQUOT: "QuotaExceeded",
    errno.EIO: "IOError",
    errno.EROFS: "ReadOnlyFilesystem",
    errno.EFBIG: "FileTooLarge",
}

CONDITION = "PersistenceDegraded"


class StorageUnusable(RuntimeError):
    """A daemon's own file or directory cannot be used at all (not retried).

    The message is one line naming the path and what is wrong with it.
    """


def describe(exc: OSError) -> str:
    """``[Errno 28] No space left on device (ENOSPC)``, without the file name."""
    if exc.errno is None:
        return str(exc)
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return f"[Errno {exc.errno}] {exc.strerror or os.strerror(exc.errno)} ({name})"


def is_transient(exc: OSError) -> bool:
    return exc.errno in TRANSIENT_ERRNOS


@dataclass
class WriterFault:
    """The current fault of one writer."""

    writer: str
    path: str
    error: str
    errno: str | None
    reason: str
    since: float  # wall clock
    failures: int
    next_retry: float  # monotonic

    def to_dict(self) -> dict[str, Any]:
        return {
            "writer": self.writer,
            "path": self.path,
            "error": self.error,
            "errno": self.errno,
            "since": rfc3339(self.since),
            "failedAttempts": self.failures,
        }


Listener = Callable[[list[WriterFault]], None]


class PersistenceHealth:
    """Thread-safe registry of writer faults with one retry thread."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        retry_base: float = RETRY_BASE,
        retry_cap: float = RETRY_CAP,
    ) -> None:
        self._wall = wall
        self._mono = monotonic
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._cond = threading.Condition(threading.Lock())
        self._faults: dict[str, WriterFault] = {}
        self._retry: dict[str, Callable[[], object]] = {}
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._started = False  # start() was called: the thread runs once something fails
        self._stopping = False
        self.episodes = 0  # how many times a healthy writer started failing
        self.recoveries = 0

    # -- writers -------------------------------------------------------------
    def register(self, writer: str, retry: Callable[[], object]) -> None:
        """``retry()`` is called from the retry thread while ``writer`` fails."""
        with self._cond:
            self._retry[writer] = retry

    def failed(self, writer: str, path: Path | str, exc: OSError) -> None:
        """A write of ``writer`` to ``path`` failed; schedule the next retry."""
        now = self._mono()
        code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
        error = describe(exc)
        with self._cond:
            fault = self._faults.get(writer)
            # The same error on another file of the writer is no news.
            changed = fault is None or fault.error != error
            if fault is None:
                self.episodes += 1
                fault = WriterFault(
                    writer,
                    str(path),
                    error,
                    code,
                    _REASONS.get(exc.errno or 0, "WriteFailed"),
                    self._wall(),
                    0,
                    now,
                )
                self._faults[writer] = fault
            fault.path, fault.error, fault.errno = str(path), error, code
            fault.reason = _REASONS.get(exc.errno or 0, "WriteFailed")
            fault.failures += 1
            delay = min(self.retry_cap, self.retry_base * 2 ** min(fault.failures - 1, 30))
            fault.next_retry = now + delay
            self._cond.notify_all()
            faults = list(self._faults.values())
            self._start_thread_locked()
        if changed:
            log.error(
                "%s: cannot write %s: %s; keeping the data in memory and retrying with backoff",
                writer,
                path,
                error,
            )
            self._notify(faults)

    def succeeded(self, writer: str, note: str = "") -> None:
        """A write of ``writer`` worked (cheap when it was not failing)."""
        if writer not in self._faults:  # a racy read is fine: re-checked under the lock
            return
        with self._cond:
            fault = self._faults.pop(writer, None)
            faults = list(self._faults.values())
            if fault is not None:
                self.recoveries += 1
        if fault is None:
            return
        took = max(0.0, self._wall() - fault.since)
        log.warning(
            "%s: %s is writable again after %.1f s (%d failed attempts)%s",
            writer,
            fault.path,
            took,
            fault.failures,
            f"; {note}" if note else "",
        )
        self._notify(faults)

    def retry_due(self, writer: str) -> bool:
        """True when ``writer`` is healthy or its backoff has run out."""
        fault = self._faults.get(writer)
        return fault is None or self._mono() >= fault.next_retry

    def failing(self, writer: str) -> bool:
        return writer in self._faults

    # -- readers -------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        return bool(self._faults)

    def faults(self) -> list[WriterFault]:
        with self._cond:
            return [WriterFault(**vars(f)) for f in self._faults.values()]

    def add_listener(self, listener: Listener) -> None:
        """``listener(faults)`` after each change; runs on the writer's thread."""
        self._listeners.append(listener)

    def _notify(self, faults: list[WriterFault]) -> None:
        for listener in self._listeners:
            try:
                listener(faults)
            except Exception:
                log.exception("persistence listener failed")

    def to_dict(self) -> dict[str, Any]:
        faults = self.faults()
        return {
            "degraded": bool(faults),
            "faults": [f.to_dict() for f in faults],
            "episodes": self.episodes,
            "recoveries": self.recoveries,
        }

    # -- the retry thread ----------------------------------------------------
    def start(self) -> None:
        """Retry failing writers from now on.

        The thread itself starts at the first failure (at once if one is
        already recorded): a daemon whose disk takes every write never
        has it, and its start does not wait for a thread to come up.
        """
        with self._cond:
            self._started = True
            self._stopping = False
            if self._faults:
                self._start_thread_locked()

    def _start_thread_locked(self) -> None:
        if not self._started or self._stopping or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="persistence-retry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._stopping = True
            self._started = False
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = self._mono()
                due = [
                    (w, self._retry[w])
                    for w, f in self._faults.items()
                    if f.next_retry <= now and w in self._retry
                ]
                if not due:
                    waits = [f.next_retry - now for f in self._faults.values()]
                    self._cond.wait(min(waits) if waits else None)
                    continue
            for writer, retry in due:
                try:
                    retry()
                except Exception:
                    log.exception("%s: retry failed", writer)
                with self._cond:
                    # A retry that reported nothing must still back off.
                    fault = self._faults.get(writer)
                    if fault is not None and fault.next_retry <= now:
                        fault.next_retry = self._mono() + self.retry_cap
