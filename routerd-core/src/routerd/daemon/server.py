"""waitress on a Unix socket, with a graceful stop from any thread.

waitress has no public stop(); the sequence below (python-stack.md §1) was
measured to stop cleanly under load with long-polls open: stop accepting,
wake the long-polls, let workers finish, then close every channel in-loop.

Two things waitress does not do are added by a channel and a server subclass:

* its own errors (bad request line, headers or body over the limit, an
  exception escaping the app) come as the JSON error body of DESIGN.md §4,
  not ``text/plain``;
* a slow client cannot hold the socket: a request must arrive whole within
  ``request_timeout`` of its first byte (else ``408``), and past
  ``max_connections`` each new connection evicts the connection that has
  waited longest without a request in flight (``503``). waitress alone only
  closes connections idle for ``channel_timeout`` and stops accepting at its
  limit, so 300 clients trickling a byte a second kept healthz unanswered.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import heapq
import logging
import os
from pathlib import Path
import socket
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import UnixWSGIServer
from waitress.task import ErrorTask

from routerd.daemon.listen import BACKLOG
from routerd.daemon.listen import MAX_WAITERS
from routerd.daemon.listen import THREADS
from routerd.daemon.listen import SocketInUse
from routerd.daemon.listen import prepare_socket_path
from routerd.httpapi import MAX_BODY
from routerd.httpapi import error_body
from routerd.permissions import GROUP
from routerd.permissions import SOCKET_DIR_MODE
from routerd.permissions import group_id

__all__ = ["MAX_WAITERS", "THREADS", "SocketInUse", "UnixServer", "prepare_socket_path"]
log = logging.getLogger("routerd.server")
#: Connections kept open; one more evicts the one waiting longest.
CONNECTION_LIMIT = 256
#: Past CONNECTION_LIMIT, when every connection has a request in flight,
#: waitress accepts this many more and then stops accepting until one ends.
_HARD_EXTRA = 64
#: From a request's first byte (or the connection's opening) to its last.
#: Local clients send a request in well under a millisecond.
REQUEST_TIMEOUT = 10.0
#: Request line plus headers; 32 topic globs of the longest kind fit.
MAX_REQUEST_HEADER = 32 * 1024


class JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """waitress' own error responses, in the JSON error body of every routerd socket."""

    def execute(self) -> None:
        err = self.request.error
        body = error_body(err.reason, str(err.body))
        self.status = f"{err.code} {err.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GuardedChannel(HTTPChannel):  # type: ignore[misc]
    """A channel whose unfinished request has a deadline (the loop thread checks it)."""

    error_task_class = JsonErrorTask

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The first request is due from the opening: a client that connects
        # and sends nothing is as slow as one that sends a byte a second.
        self.request_started: float | None = time.monotonic()
        self.served_at = 0.0
        super().__init__(*args, **kwargs)

    def received(self, data: bytes) -> bool:
        before = self.request
        result: bool = super().received(data)
        if self.request is None:
            self.request_started = None  # every request so far is complete
        elif self.request is not before:
            self.request_started = time.monotonic()
        return result

    def service(self) -> None:
        try:
            super().service()
        finally:
            # A pipelined request read during a long-poll is timed from here.
            self.served_at = time.monotonic()

    def waiting_since(self) -> float | None:
        """When this connection began waiting on its client; None while a request is served."""
        if self.requests:
            return None
        if self.request_started is None:
            return self.served_at  # idle between requests
        return max(self.request_started, self.served_at)

    def refuse(self, status: str, title: str, description: str) -> None:
        """Answer with a JSON error if the socket takes it now, then close (loop thread)."""
        body = error_body(title, description)
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            self.socket.send(head + body, socket.MSG_DONTWAIT)
        self.will_close = True
        self.handle_close()


class GuardedUnixServer(UnixWSGIServer):  # type: ignore[misc]
    """waitress' Unix server with request deadlines and eviction past the connection limit."""

    channel_class = GuardedChannel

    def __init__(
        self, app: Any, *, request_timeout: float, max_connections: int, **kw: Any
    ) -> None:
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.timed_out = 0
        self.evicted = 0
        # The listener and the trigger are in waitress' count too.
        kw["connection_limit"] = max_connections + _HARD_EXTRA + 2
        super().__init__(app, **kw)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # closes connections idle for channel_timeout
        cutoff = time.monotonic() - self.request_timeout
        for channel in list(self.active_channels.values()):
            since = channel.waiting_since()
            if channel.request_started is not None and since is not None and since < cutoff:
                self.timed_out += 1
                channel.refuse(
                    "408 Request Timeout",
                    "Request Timeout",
                    f"the request did not arrive within {self.request_timeout:g} s",
                )

    def handle_accept(self) -> None:
        super().handle_accept()
        excess = len(self.active_channels) - self.max_connections
        if excess <= 0:
            return
        # A connection part-way through a request it is sending slowly goes
        # first: a slowloris client reconnects at once, so its connections are
        # all young, and "oldest first" alone would shed a well-behaved client
        # whose whole request is in the socket, not read yet (seen under 300
        # trickling connections: one healthz refused in about 2,000).
        waiting = [
            (channel.request is None, since, channel)
            for channel in self.active_channels.values()
            if (since := channel.waiting_since()) is not None
        ]
        for *_, channel in heapq.nsmallest(excess, waiting, key=lambda item: item[:2]):
            self.evicted += 1
            channel.refuse(
                "503 Service Unavailable",
                "Too many connections",
                f"more than {self.max_connections} open connections; this one waited longest",
            )


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
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = CONNECTION_LIMIT,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: a listener already bound at ``path`` (:func:`routerd.daemon.listen.bind_listener`,
        which also set its mode and group); without it the socket is made here."""
        if sock is None:
            prepare_socket_path(path, root=root, dir_mode=dir_mode, dir_group=group)
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        self.path = path
        self.srv = GuardedUnixServer(
            app,
            _sock=sock,
            bind_socket=sock is None,
            backlog=BACKLOG,
            request_timeout=request_timeout,
            max_connections=max_connections,
            unix_socket=str(path),
            unix_socket_perms=perms,
            threads=threads,
            asyncore_use_poll=True,
            channel_timeout=120,
            cleanup_interval=1,  # request deadlines are checked every second
            max_request_header_size=MAX_REQUEST_HEADER,
            max_request_body_size=MAX_BODY,
            ident="routerd",
        )
        gid = group_id(group) if sock is None else None
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
