"""Where a daemon's socket is: ``<daemon-kind>/<resource>`` or a path, and socket discovery.

``<runtime>/<daemon-kind>/<resource>.sock`` (DESIGN.md §2); routerd's own
``routerd.sock`` and ``routerd-status.sock`` sit at the top level and are not
daemons.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
import re
import stat

from routerd.client import daemon_socket_path

#: A daemon kind or a resource name: starts with a letter or digit, no path separators.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}"
_TARGET = re.compile(rf"^({_SEGMENT})/({_SEGMENT})$")
SOCKET_SUFFIX = ".sock"
TOP_LEVEL_SOCKETS = frozenset({"routerd.sock", "routerd-status.sock"})


@dataclass(frozen=True)
class Target:
    """A daemon to talk to: by name (resolved under the runtime dir) or by socket path."""

    text: str
    daemon_kind: str | None = None
    resource: str | None = None
    path: str | None = None
    kind: str | None = None  # a routerd resource, <Kind>/<name>: through routerd serve
    name: str | None = None

    @property
    def via_router(self) -> bool:
        return self.kind is not None

    def socket_path(self, runtime_dir: str) -> str:
        if self.path is not None:
            return self.path
        assert self.daemon_kind is not None and self.resource is not None
        return daemon_socket_path(self.daemon_kind, self.resource, runtime_dir)

    def __str__(self) -> str:
        return self.text


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def parse_target(text: str) -> Target:
    """``healthcheck/lo`` or a socket path; ``ValueError`` (a usage error) otherwise."""
    if "/" in text and text.endswith(SOCKET_SUFFIX):
        return Target(text, path=text)
    if _is_socket(text):
        return Target(text, path=text)
    match = _TARGET.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is neither <Kind>/<name> (e.g. HealthCheck/internet, through routerd), "
            "<daemon-kind>/<resource> (e.g. healthcheck/internet) "
            "nor the path of a socket (e.g. /run/routerd/healthcheck/internet.sock)"
        )
    if match.group(1)[0].isupper():  # resource kinds are CamelCase, daemon kinds lower-case
        return Target(text, kind=match.group(1), name=match.group(2))
    return Target(text, daemon_kind=match.group(1), resource=match.group(2))


@dataclass(frozen=True)
class FoundSocket:
    daemon_kind: str
    resource: str
    path: str


def discover(runtime_dir: str) -> list[FoundSocket]:
    """Every ``<runtime>/<kind>/<resource>.sock``, sorted; missing dirs are empty.

    Raises ``PermissionError`` when the runtime dir itself cannot be listed;
    a kind directory that cannot be listed is skipped.
    """
    found: list[FoundSocket] = []
    try:
        kinds = sorted(os.scandir(runtime_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for kind_entry in kinds:
        if kind_entry.name in TOP_LEVEL_SOCKETS or not kind_entry.is_dir(follow_symlinks=False):
            continue
        try:
            entries = sorted(os.scandir(kind_entry.path), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith(SOCKET_SUFFIX) or entry.name == SOCKET_SUFFIX:
                continue
            try:
                if not stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                    continue
            except OSError:
                continue
            found.append(
                FoundSocket(kind_entry.name, entry.name[: -len(SOCKET_SUFFIX)], entry.path)
            )
    return found
