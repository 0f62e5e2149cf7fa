"""Who may reach what (DESIGN.md §9): modes and groups of routerd's directories and files.

* The runtime root (``/run/routerd``) is 0755: the 0666 status socket in it
  must be reachable by any local user.
* The main socket is 0660 and each daemon-kind directory 0750, both of group
  ``routerd`` when that group exists (root's group otherwise): members of
  ``routerd`` may use the control API and the daemon sockets, nobody else.
* The state root (``/var/lib/routerd``) is 0750 and its files are not
  world-readable; ``routerd daemon`` and ``routerd serve`` run with umask 027.

The runtime and state roots belong to routerd (like systemd's
``RuntimeDirectory=``/``StateDirectory=``): at start their modes are set
again, so a directory left by an older version or a hand-made one is fixed.
A directory owned by another user, or a sticky one such as ``/tmp``, is
never changed.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
from pathlib import Path
import stat

log = logging.getLogger("routerd.permissions")

#: The group whose members may use the main socket and the daemon sockets.
GROUP = "routerd"
#: Process umask of ``routerd daemon`` and ``routerd serve``: nothing new is world-readable.
UMASK = 0o027
RUNTIME_ROOT_MODE = 0o755
SOCKET_DIR_MODE = 0o750
STATE_DIR_MODE = 0o750
#: Missing ancestors routerd has to create (e.g. ``/run/routerd`` itself) stay traversable.
ANCESTOR_MODE = 0o755


def group_id(name: str | None = GROUP) -> int | None:
    """The gid of group ``name``, or None when it does not exist (or no name)."""
    if name is None:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def set_umask() -> int:
    """Set the process umask of a routerd daemon or ``routerd serve``; returns the old one."""
    return os.umask(UMASK)


def _ours(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & stat.S_ISVTX


def ensure_dir(path: Path, mode: int, group: str | None = None, *, fix: bool = True) -> None:
    """Create ``path`` (and missing ancestors, ``0755``) with ``mode``; fix an existing one.

    ``mode`` is applied with ``chmod`` (the umask does not narrow it). With
    ``group``, the directory gets that group when it exists and our own group
    otherwise, so a directory of a removed group does not stay open to it.
    With ``fix=False`` an existing directory is left as it is (a socket path
    the operator chose, e.g. in ``/run``).
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another routerd process won the race
            directory.mkdir()
            os.chmod(directory, mode if directory == path else ANCESTOR_MODE)
    if not fix and path not in missing:
        return
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} is not a directory")
    if not _ours(st):
        if stat.S_IMODE(st.st_mode) != mode:
            log.warning(
                "%s is mode %o and not ours to change (want %o)",
                path,
                stat.S_IMODE(st.st_mode),
                mode,
            )
        return
    if group is not None:
        gid = group_id(group)
        want_gid = gid if gid is not None else os.getegid()
        if st.st_gid != want_gid:
            try:
                os.chown(path, -1, want_gid)
            except OSError as exc:  # not root and not a member of the group
                log.warning("cannot give %s to group %s: %s", path, group, exc.strerror)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def private_file(path: Path, mode: int = 0o640) -> None:
    """Make sure ``path`` exists and is not world-accessible, before anyone writes to it.

    SQLite creates its ``-wal`` and ``-shm`` files with the mode of the
    database file, so creating ``routerd.db`` 0640 first keeps all three
    private whatever the process umask.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        no_world_access(path)
    else:
        os.fchmod(fd, mode)
        os.close(fd)


def no_world_access(path: Path) -> None:
    """Take the world bits off an existing file of ours (an older version left it 0644)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o007:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o007)
