"""A small real tmpfs for disk-full tests, filled to the last byte on demand.

Mounting needs root: :func:`require_mount_prereqs` skips the calling test
without it, or fails it when ``CI=true`` (a green CI means these tests ran).
Every mount has a unique source name (``rdt-tmpfs-<hex>``) and is unmounted
when the ``with`` block ends, whatever happened in it::

    with small_tmpfs(state_dir, "1m") as fs:
        filler = fill(fs)  # now every block is used: writes get ENOSPC
        ...
        filler.unlink()  # the space is back
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import errno
import os
from pathlib import Path
import secrets
import shutil
import subprocess

__all__ = ["fill", "free_bytes", "require_mount_prereqs", "small_tmpfs"]


def require_mount_prereqs() -> None:
    """Skip the calling test unless it may mount a tmpfs (fail under ``CI=true``)."""
    import pytest  # NOTE: lazily, so the helpers work outside pytest.

    reason: str | None = None
    if os.geteuid() != 0:
        reason = "mounting a tmpfs needs root"
    elif shutil.which("mount") is None or shutil.which("umount") is None:
        reason = "missing tool: mount/umount (util-linux)"
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and tmpfs prerequisite missing: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``mount -o size=``) on ``where``; unmount after."""
    where.mkdir(parents=True, exist_ok=True)
    source = f"rdt-tmpfs-{secrets.token_hex(4)}"
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", source, str(where)],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        done = subprocess.run(["umount", str(where)], capture_output=True)
        if done.returncode != 0:
            # Something still holds a file open there (a daemon that did not
            # stop): detach it now, the kernel frees it when the last user goes.
            subprocess.run(["umount", "-l", str(where)], check=True, capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(fs: Path, name: str = ".filler") -> Path:
    """Fill the filesystem holding ``fs`` to the last byte with one file; return it.

    Afterwards no write can take a new block: appending to another file
    only still succeeds inside its last, partly used block (and is cut short
    there), which is exactly what a full disk does.
    """
    path = fs / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        chunk = 1 << 20
        while chunk:
            try:
                if os.write(fd, b"\0" * chunk) < chunk:
                    chunk //= 2
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    if free_bytes(fs) != 0:
        raise AssertionError(f"{fs} still has {free_bytes(fs)} bytes free after filling")
    return path
