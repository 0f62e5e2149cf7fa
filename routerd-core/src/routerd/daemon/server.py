"""waitress on a Unix socket, with a graceful stop from any thread.

waitress has no public stop(); the sequence below (python-stack.md §1) was
measured to stop cleanly under load with long-polls open: stop accepting,
wake the long-polls, let workers finish, then close every channel in-loop.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import grp
import logging
import os
from pathlib import Path
import socket
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger("routerd.server")
THREADS = 64
MAX_WAITERS = 48
CONNECTION_LIMIT = 256


class SocketInUse(RuntimeError):
    """Another live process answers on the socket path."""


def prepare_socket_path(path: Path, dir_mode: int = 0o750) -> None:
    """Create the directory; refuse a socket someone serves; remove a stale one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path.parent, dir_mode)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # stale: nobody listens
        return
    finally:
        probe.close()
    raise SocketInUse(f"{path} is served by another running process")


class UnixServer:
    """A WSGI app served by waitress on a Unix socket."""

    def __init__(
        self,
        app: Any,
        path: Path,
        *,
        threads: int = THREADS,
        perms: str = "660",
        group: str | None = "routerd",
    ) -> None:
        prepare_socket_path(path)
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.path = path
        self.srv = create_server(
            app,
            unix_socket=str(path),
            unix_socket_perms=perms,
            threads=threads,
            connection_limit=CONNECTION_LIMIT,
            asyncore_use_poll=True,
            channel_timeout=120,
            ident="routerd",
        )
        if group is not None:
            with contextlib.suppress(KeyError, OSError):
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
        self._stopped = threading.Event()

    def run(self) -> None:
        """Serve until :meth:`graceful_stop`; then remove the socket file."""
        try:
            self.srv.run()
        finally:
            with contextlib.suppress(OSError):
                if self.path.is_socket():
                    self.path.unlink()
            self._stopped.set()

    def graceful_stop(
        self, wake_waiters: Callable[[], None] | None = None, drain: float = 1.5
    ) -> None:
        """Stop from any thread but the loop thread."""
        srv = self.srv
        done = threading.Event()

        def close_listener() -> None:
            wasyncore.dispatcher.close(srv)
            done.set()

        srv.trigger.pull_trigger(close_listener)
        done.wait(1.0)
        if wake_waiters is not None:
            wake_waiters()
        srv.task_dispatcher.shutdown(cancel_pending=True, timeout=drain)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and any(
            getattr(c, "total_outbufs_len", 0) for c in list(srv._map.values())
        ):
            time.sleep(0.01)
        srv.trigger.pull_trigger(lambda: wasyncore.close_all(srv._map))

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)
