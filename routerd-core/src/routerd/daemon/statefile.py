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

log = logging.getLogger("routerd.state")


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class StateFile:
    """``state.json`` of one resource."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.corrupt_files = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()

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
        """Write the state atomically; raises ``OSError`` when the disk refuses."""
        payload = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
        with self._lock:
            atomic_write(self.path, payload)

    def clear(self) -> None:
        with self._lock, contextlib.suppress(FileNotFoundError):
            self.path.unlink()
