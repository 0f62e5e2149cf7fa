"""The ``PPPoESession`` resource spec (field names are the config contract)
and the password file.

The password is never in the config, argv or the environment: ``passwordFile``
names a file readable by root only (a world-readable one is refused, as
pppd's ``pap-secrets`` would be a mistake at mode 0644). Its first line is the
password; a trailing newline is not part of it.
"""

from __future__ import annotations

import errno
import os
from pathlib import PurePosixPath
import re
import stat
from typing import Literal

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator
from routerd.config import Duration
from routerd.config import SpecModel

from routerd_pppoe import timing

__all__ = ["MAX_PASSWORD_FILE", "PPPoESessionSpec", "PasswordFileError", "read_password"]

_IFNAME = re.compile(r"^[^/\s:]{1,15}$")
#: A password file larger than this is not a password file.
MAX_PASSWORD_FILE = 4096


class PasswordFileError(OSError):
    """The password file cannot be used; the message says why (never its content)."""


class PPPoESessionSpec(SpecModel):
    """A PPPoE session on one Ethernet interface, and what of it to apply."""

    interface: str = Field(min_length=1, max_length=15)
    username: str = Field(min_length=1, max_length=255)
    password_file: str = Field(min_length=2, max_length=4096)
    service_name: str = Field(default="", max_length=255)
    ac_name: str | None = Field(default=None, min_length=1, max_length=255)
    auth_method: Literal["chap", "pap", "both"] = "both"
    mtu: int = Field(default=timing.PPPOE_MRU, ge=576, le=1500)
    ipv6: bool = False
    default_route: bool = True
    route_metric: int = Field(default=100, ge=0, le=0xFFFFFFFF)
    use_peer_dns: bool = Field(default=True, alias="usePeerDNS")
    dns_file: str | None = None
    lcp_echo_interval: Duration = 10.0
    lcp_echo_failure: int = Field(default=3, ge=1, le=100)
    holdoff: Duration = 5.0
    maxfail: int = Field(default=0, ge=0, le=10000)
    backend: Literal["auto", "kernel", "tun"] = "auto"
    discovery_timeout: Duration = timing.DISCOVERY_TIMEOUT
    discovery_attempts: int = Field(default=timing.DISCOVERY_ATTEMPTS, ge=1, le=20)

    @field_validator("interface")
    @classmethod
    def _ifname(cls, value: str) -> str:
        if not _IFNAME.match(value) or value in (".", ".."):
            raise ValueError("not an interface name (1-15 characters, no '/', ':' or spaces)")
        return value

    @field_validator("password_file", "dns_file")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if not path.is_absolute() or path.name in ("", ".", ".."):
            raise ValueError("expected an absolute file path")
        return str(path)

    @field_validator("username", "service_name", "ac_name")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and any(not c.isprintable() for c in value):
            raise ValueError("must be printable text")
        if value is not None and len(value.encode()) > 255:
            raise ValueError("at most 255 bytes (UTF-8)")
        return value

    @field_validator("lcp_echo_interval")
    @classmethod
    def _echo(cls, value: float) -> float:
        if value != 0 and not 0.1 <= value <= 3600:
            raise ValueError("0 (no keepalive) or 100ms to 1h")
        return value

    @field_validator("holdoff")
    @classmethod
    def _holdoff(cls, value: float) -> float:
        if value > 3600:
            raise ValueError("at most 1h")
        return value

    @field_validator("discovery_timeout")
    @classmethod
    def _discovery(cls, value: float) -> float:
        if not 0.05 <= value <= 60:
            raise ValueError("50ms to 60s")
        return value

    @model_validator(mode="after")
    def _dns(self) -> PPPoESessionSpec:
        if self.dns_file is not None and not self.use_peer_dns:
            raise ValueError("dnsFile needs usePeerDNS: true (there is nothing to write otherwise)")
        return self

    @property
    def auth_methods(self) -> frozenset[str]:
        if self.auth_method == "both":
            return frozenset({"pap", "chap"})
        return frozenset({self.auth_method})


def read_password(path: str) -> bytes:
    """The password in ``path``; raises :class:`PasswordFileError` naming the problem.

    Refused: not a regular file, readable by every user (mode ``o+r``), empty,
    larger than 4 KiB, or a password over 255 bytes (RFC 1334 §2.2.1: one
    octet of length). The error never quotes the file.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise PasswordFileError(
            exc.errno or errno.EIO, f"passwordFile {path}: {exc.strerror}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PasswordFileError(errno.EINVAL, f"passwordFile {path} is not a regular file")
        if st.st_mode & stat.S_IROTH:
            raise PasswordFileError(
                errno.EPERM,
                f"passwordFile {path} is readable by every user (mode {stat.S_IMODE(st.st_mode):04o});"
                f" refusing to use it: chmod o-r {path} (0600 or 0640 root:root)",
            )
        if st.st_size > MAX_PASSWORD_FILE:
            raise PasswordFileError(
                errno.EFBIG, f"passwordFile {path} is larger than {MAX_PASSWORD_FILE} bytes"
            )
        data = os.read(fd, MAX_PASSWORD_FILE + 1)
    finally:
        os.close(fd)
    password = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not password:
        raise PasswordFileError(errno.EINVAL, f"passwordFile {path} holds no password")
    if len(password) > 255:
        raise PasswordFileError(
            errno.EINVAL, f"passwordFile {path}: the password is longer than 255 bytes"
        )
    return password
