"""waitress on a Unix socket, with a graceful stop from any thread.

waitress has no public stop(); the sequence below (python-stack.md §1) was
measured to stop cleanly under load with long-polls open: stop accepting,
wake the long-polls, let workers finish, then close every channel in-loop.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import logging
import os
from pathlib import Path
import socket
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from routerd.permissions import GROUP
from routerd.permissions import RUNTIME_ROOT_MODE
from routerd.permissions import SOCKET_DIR_MODE
from routerd.permissions import ensure_dir
from routerd.permissions import group_id

log = logging.getLogger("routerd.server")
THREADS = 64
MAX_WAITERS = 48
CONNECTION_LIMIT = 256


class SocketInUse(RuntimeError):
    """Another live process answers on the socket path."""


def prepare_socket_path(
    path: Path,
    *,
    root: Path | None = None,
    dir_mode: int = SOCKET_DIR_MODE,
    dir_group: str | None = GROUP,
) -> None:
    """Make the socket's directory; refuse a socket someone serves; remove a stale one.

    ``root`` is the runtime root routerd owns (``/run/routerd``): it is made
    (or fixed to) 0755 so the status socket in it is reachable, and a socket
    directory below it gets ``dir_mode`` and ``dir_group``. A socket outside
    ``root`` (``--socket`` chosen by the operator) gets its directory created
    the same way when missing, but an existing one is left alone.
    """
    parent = path.parent
    if root is not None and parent.is_relative_to(root):
        ensure_dir(root, RUNTIME_ROOT_MODE)
        if parent != root:
            ensure_dir(parent, dir_mode, dir_group)
    else:
        ensure_dir(parent, dir_mode, dir_group, fix=False)
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
        group: str | None = GROUP,
        root: Path | None = None,
        dir_mode: int = SOCKET_DIR_MODE,
    ) -> None:
        prepare_socket_path(path, root=root, dir_mode=dir_mode, dir_group=group)
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
        gid = group_id(group)
        if gid is not None:
            try:
                os.chown(path, -1, gid)
            except OSError as exc:  # not root and not a member of the group
                log.warning("cannot give %s to group %s: %s", path, group, exc.strerror)
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
