"""Atomic JSON state files that survive crashes and torn writes.

Written to a temporary file in the same directory, fsynced, renamed over the
old one, and the directory fsynced: a reader sees the old or the new file,
never half of one. A file that still cannot be parsed (disk trouble, a hand
edit) is moved aside to ``state.json.corrupt`` and counted, never fatal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
import threading
from typing import Any

from routerd.daemon.persistence import PersistenceHealth
from routerd.daemon.persistence import describe

log = logging.getLogger("routerd.state")


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    On any error the temporary file is removed again (on a full disk it would
    hold the very space the next attempt needs) and the error is raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class StateFile:
    """``state.json`` of one resource.

    With a :class:`~routerd.daemon.persistence.PersistenceHealth`, a save the
    disk refuses is reported there and its data kept: the health's retry
    thread writes the newest unsaved data with backoff until it lands or a
    newer save supersedes it (``clear`` drops it).
    """

    def __init__(
        self, path: Path, health: PersistenceHealth | None = None, writer: str = ""
    ) -> None:
        self.path = path
        self.corrupt_files = 0
        self.last_error: str | None = None
        self.failed_saves = 0
        self._lock = threading.Lock()
        self._health = health
        self._writer = writer or f"state file {path.name}"
        self._unsaved: bytes | None = None
        if health is not None:
            health.register(self._writer, self.retry)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.last_error = f"cannot read {self.path}: {exc}"
            log.warning("%s", self.last_error)
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("state is not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            self.corrupt_files += 1
            self.last_error = f"{self.path} is unreadable ({exc}); moved aside"
            log.warning("%s", self.last_error)
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
            return None
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Write the state atomically; raises ``OSError`` when the disk refuses.

        The caller may go on as if it were saved: with a health reporter the
        data is kept and written by the retry thread once the disk allows.
        """
        payload = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
        with self._lock:
            self._write_locked(payload)

    def retry(self) -> bool:
        """Write the newest unsaved data, if any; True when nothing is left unsaved."""
        with self._lock:
            if self._unsaved is None:
                if self._health is not None:
                    self._health.succeeded(self._writer)
                return True
            try:
                self._write_locked(self._unsaved)
            except OSError:
                return False
            return True

    @property
    def unsaved(self) -> bool:
        return self._unsaved is not None

    def _write_locked(self, payload: bytes) -> None:
        try:
            atomic_write(self.path, payload)
        except OSError as exc:
            self.failed_saves += 1
            self.last_error = f"cannot write {self.path}: {describe(exc)}"
            if self._health is not None:
                self._unsaved = payload
                self._health.failed(self._writer, self.path, exc)
            raise
        recovered = self._unsaved is not None
        self._unsaved = None
        if self._health is not None and recovered:
            self._health.succeeded(self._writer, "the newest state is saved")

    def clear(self) -> None:
        with self._lock:
            self._unsaved = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            if self._health is not None:
                self._health.succeeded(self._writer)
