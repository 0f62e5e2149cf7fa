"""The daemon's listening socket, made before the HTTP stack is imported.

A daemon binds its socket first (refusing to start when another instance
answers on it), then starts its protocol engine, and only then imports
falcon and waitress and serves the socket: the first packet goes out
without waiting for the HTTP stack, and a client that connects meanwhile
waits in the listen backlog until waitress takes it (docs/decisions.md,
"Process model").
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
import socket

from routerd.permissions import GROUP
from routerd.permissions import RUNTIME_ROOT_MODE
from routerd.permissions import SOCKET_DIR_MODE
from routerd.permissions import ensure_dir
from routerd.permissions import group_id

log = logging.getLogger("routerd.server")
#: waitress worker threads of a daemon, and how many of them long-polls may
#: hold: the rest always answer healthz, status and commands (DESIGN.md §4).
#: A daemon's long-poll clients are serve's follower and a few `routerctl
#: events --follow`; 8, 16 and 64 threads served /v1/status at the same rate
#: here, and each thread costs memory in every daemon (docs/decisions.md).
THREADS = 16
MAX_WAITERS = 12
BACKLOG = 1024


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


def bind_listener(
    path: Path,
    *,
    perms: int = 0o660,
    group: str | None = GROUP,
    root: Path | None = None,
    dir_mode: int = SOCKET_DIR_MODE,
) -> socket.socket:
    """A listening Unix socket at ``path`` with ``perms`` and ``group`` (see
    :func:`prepare_socket_path`); connections queue until someone accepts.

    Raises :class:`SocketInUse`, or ``OSError`` when it cannot be bound.
    """
    prepare_socket_path(path, root=root, dir_mode=dir_mode, dir_group=group)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, perms)
        gid = group_id(group)
        if gid is not None:
            try:
                os.chown(path, -1, gid)
            except OSError as exc:  # not root and not a member of the group
                log.warning("cannot give %s to group %s: %s", path, group, exc.strerror)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            if path.is_socket():
                path.unlink()
        raise
    return sock
