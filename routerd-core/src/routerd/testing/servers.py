"""Real DHCP and DNS servers for lab tests: dnsmasq, Kea DHCPv4, Kea DHCPv6.

Each server runs inside a :class:`~routerd.testing.netns.Netns` on one
interface, keeps its configuration, lease file and log in a work directory of
its own, and is ended by PID (its process is tracked by the namespace, so a
:class:`~routerd.testing.netns.Lab` tears it down even if the test forgot)::

    kea = KeaDhcp4(pair.server, "srv0", tmp_path / "kea4").start()
    ...
    kea.wait_for_log("DHCP4_LEASE_ALLOC")
    assert kea_command(kea.control_socket_path, "status-get")["result"] == 0

Quirks of the Debian 12 versions (dnsmasq 2.90, Kea 2.2.0) handled here:

- dnsmasq pings an address before offering it and waits up to 3 s for an
  echo; ``--no-ping`` is passed so an OFFER is immediate.
- dnsmasq normally drops privileges to ``nobody``; it runs as root here
  (``--user=root``) so its files in a root-only work directory stay writable.
- Kea writes a PID file and a logger lock file under ``/run/kea`` unless
  ``KEA_PIDFILE_DIR`` and ``KEA_LOCKFILE_DIR`` say otherwise; both point into
  the work directory, so several instances run at once.
- Kea 2.2 has no DHCPv4 rapid commit (``rapid-commit`` in ``subnet4`` is a
  syntax error; later Kea versions have it), so :class:`KeaDhcp4` has no such
  option. DHCPv6 rapid commit is supported.
- Kea 2.2 does not NAK a REQUEST for an address outside every pool; it
  drops it (``DHCP4_UNKNOWN_ADDRESS_REQUESTED``). It NAKs a client with a
  reservation for another address (``ALLOC_ENGINE_V4_REQUEST_INVALID``), so
  :class:`KeaDhcp4` takes ``reservations``.
- Kea's memfile appends a row per lease change; the last row for an address
  wins, and a released or reclaimed lease has ``valid_lifetime`` 0 or a
  non-zero ``state``. The lease-file cleanup (LFC) is disabled.
- Kea DHCPv6 persists its server DUID in ``/var/lib/kea`` by default, and
  fails to start where it cannot write there. Here each :class:`KeaDhcp6`
  has its own DUID-EN (:attr:`KeaDhcp6.server_duid`), stable across
  restarts and not persisted.
- Kea DHCPv6 opens a socket on an interface only if the interface has a
  non-tentative link-local address at start; :meth:`KeaDhcp6.start` waits
  for one. A directly connected client is matched to its subnet by the
  subnet's ``interface``, which is therefore set.
- A Unix socket path is limited to 107 bytes; a control socket that would
  not fit goes in a short temporary directory instead.
"""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import json
import os
from pathlib import Path
import re
import secrets
import shutil
import socket
import tempfile
import time
from types import TracebackType
from typing import Any
from typing import ClassVar
from typing import Self
from typing import TypedDict
import weakref

from routerd.testing.netns import DEFAULT_TIMEOUT
from routerd.testing.netns import POLL_INTERVAL
from routerd.testing.netns import ManagedProcess
from routerd.testing.netns import Netns
from routerd.testing.netns import find_tool
from routerd.testing.netns import log_tail

__all__ = [
    "Dnsmasq",
    "DnsmasqLease",
    "Kea4Lease",
    "Kea6Lease",
    "KeaCommandError",
    "KeaDhcp4",
    "KeaDhcp6",
    "ServerError",
    "kea_command",
]

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_UNIX_PATH = 107


class ServerError(RuntimeError):
    """A server could not start, or could not apply a new configuration."""


class KeaCommandError(RuntimeError):
    """Kea's control socket could not be reached or answered nonsense."""


class DnsmasqLease(TypedDict):
    """One DHCPv4 lease from dnsmasq's lease file."""

    expire: int
    hwaddr: str
    address: str
    hostname: str
    client_id: str


class Kea4Lease(TypedDict):
    """One DHCPv4 lease from Kea's memfile (the last row for its address)."""

    address: str
    hwaddr: str
    client_id: str
    valid_lifetime: int
    expire: int
    subnet_id: int
    hostname: str
    state: int


class Kea6Lease(TypedDict):
    """One DHCPv6 lease from Kea's memfile (the last row for its prefix).

    ``lease_type`` is ``"IA_NA"``, ``"IA_TA"`` or ``"IA_PD"``; ``address``
    is the address or, for IA_PD, the delegated prefix without its length.
    """

    address: str
    prefix_len: int
    lease_type: str
    duid: str
    iaid: int
    valid_lifetime: int
    preferred_lifetime: int
    expire: int
    subnet_id: int
    hwaddr: str
    state: int


def kea_command(
    socket_path: str | os.PathLike[str],
    command: str,
    arguments: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Send *command* to a Kea daemon's Unix control socket; return the answer.

    The protocol: one JSON request ``{"command": ..., "arguments": ...}``;
    the daemon answers with one JSON object and closes the connection, so
    the answer is read until EOF. ``result`` 0 means success (1 error,
    2 unsupported, 3 empty).

    :param socket_path: the daemon's ``control-socket`` ``socket-name``.
    :param command: for example ``"status-get"`` or ``"config-reload"``.
    :param arguments: the command's ``arguments`` map, if any.
    :param timeout: seconds for the whole exchange.
    :raises KeaCommandError: unreachable, timed out, or not a JSON object.
    """
    request: dict[str, Any] = {"command": command}
    if arguments is not None:
        request["arguments"] = arguments
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(os.fspath(socket_path))
            sock.sendall(json.dumps(request).encode())
            # NOTE: no shutdown(SHUT_WR): Kea may take the half-close for a
            # dropped client. It closes the connection after answering.
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as e:
        raise KeaCommandError(f"{command} on {socket_path}: {e}") from e
    raw = b"".join(chunks)
    try:
        answer = json.loads(raw)
    except ValueError as e:
        raise KeaCommandError(f"{command}: not JSON: {raw[:200]!r}") from e
    # The Control Agent wraps answers in a list, one per service; daemons don't.
    if isinstance(answer, list) and answer:
        answer = answer[0]
    if not isinstance(answer, dict):
        raise KeaCommandError(f"{command}: unexpected answer {answer!r}")
    return answer


class _Server:
    """Common life cycle: start and wait until ready, stop by PID, logs."""

    #: Program name, resolved through PATH and the sbin directories.
    binary: ClassVar[str]
    #: Log text, seen after start, that means "ready".
    ready_pattern: ClassVar[str | re.Pattern[str]]
    #: Log text meaning the server runs but is not usable (e.g. no socket).
    failure_pattern: ClassVar[re.Pattern[str] | None] = None

    def __init__(self, ns: Netns, interface: str, workdir: str | os.PathLike[str]) -> None:
        self.ns = ns
        self.interface = interface
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.binary}.log"
        self.process: ManagedProcess | None = None

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"<{type(self).__name__} {self.interface} in {self.ns.name} pid={pid}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- to be provided by subclasses ----------------------------------------

    def argv(self) -> list[str]:
        """Return the command line."""
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        """Return the environment, or ``None`` to inherit ours."""
        return None

    def prepare(self) -> None:
        """Write configuration files before a start."""

    def wait_ready(self, since: int, deadline: float) -> None:
        """Wait for anything besides the ready log line (e.g. a socket)."""

    # -- life cycle ----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The server's PID while it runs."""
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        """Tell whether the server process is running."""
        return self.process is not None and self.process.alive()

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> Self:
        """Start the server and wait until it is ready; return ``self``.

        :raises ServerError: it exited, logged a failure, or was not ready in
            time; the message has the log tail. The process is stopped.
        """
        if self.alive():
            raise ServerError(f"{self!r} already running")
        if find_tool(self.binary) is None:
            raise FileNotFoundError(f"{self.binary} not found on PATH or in sbin")
        self.prepare()
        since = len(self.log_text())
        deadline = time.monotonic() + timeout
        self.process = self.ns.popen(self.argv(), self.log_path, env=self.env(), append=True)
        try:
            self.process.wait_for_log(self.ready_pattern, timeout, since=since)
            self.wait_ready(since, deadline)
            if self.failure_pattern is not None:
                m = self.failure_pattern.search(self.log_text(), since)
                if m is not None:
                    raise ServerError(f"{self!r}: {m.group(0)}")
        except (TimeoutError, RuntimeError) as e:
            self.process.stop()
            message = f"{self!r} did not start: {e}"
            if "log tail:" not in message:
                message += f"\nlog tail:\n{log_tail(self.log_text())}"
            raise ServerError(message) from e
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the server by PID (SIGTERM, then SIGKILL); return its exit code.

        Returns ``None`` if it was never started; idempotent.
        """
        if self.process is None:
            return None
        return self.process.stop(timeout)

    def restart(self, timeout: float = DEFAULT_TIMEOUT) -> Self:
        """Stop, then start again with the current configuration."""
        self.stop()
        return self.start(timeout)

    def log_text(self) -> str:
        """Return the server's whole log, across restarts."""
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """Return the current log length, to pass as ``since=`` later."""
        return len(self.log_text())

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        timeout: float = DEFAULT_TIMEOUT,
        *,
        since: int = 0,
    ) -> str:
        """Wait until the log (from *since*) has *pattern*; return the line.

        :raises TimeoutError: not logged in time (the message has the tail).
        """
        if self.process is None:
            raise ServerError(f"{self!r} was never started")
        return self.process.wait_for_log(pattern, timeout, since=since)


class Dnsmasq(_Server):
    """dnsmasq as a DHCPv4 server and DNS server on one interface.

    :param ns: namespace to run in.
    :param interface: interface to serve; it must already have an address.
    :param workdir: directory for the lease file, PID file and log.
    :param dhcp_range: ``(first, last, netmask)`` of the pool.
    :param lease_time: lease time in seconds (dnsmasq's minimum is 120).
    :param router: value of option 3, or ``None``.
    :param dns_records: ``{name: address}`` answered by the DNS server.
    :param dns_port: DNS port; 0 disables DNS.
    :param dhcp: serve DHCPv4.
    :param extra_args: more dnsmasq arguments, e.g. ``("--dhcp-rapid-commit",)``.
    """

    binary = "dnsmasq"
    ready_pattern = "started, version"

    def __init__(
        self,
        ns: Netns,
        interface: str,
        workdir: str | os.PathLike[str],
        *,
        dhcp_range: tuple[str, str, str] = (
            "192.0.2.100",
            "192.0.2.150",
            "255.255.255.0",
        ),
        lease_time: int = 120,
        router: str | None = "192.0.2.1",
        dns_records: dict[str, str] | None = None,
        dns_port: int = 53,
        dhcp: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(ns, interface, workdir)
        self.dhcp_range = dhcp_range
        self.lease_time = lease_time
        self.router = router
        self.dns_records = dict(dns_records or {})
        self.dns_port = dns_port
        self.dhcp = dhcp
        self.extra_args = tuple(extra_args)
        self.lease_path = self.workdir / "dnsmasq.leases"
        self.pid_path = self.workdir / "dnsmasq.pid"

    def argv(self) -> list[str]:
        """Return the dnsmasq command line."""
        args = [
            self.binary,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--log-facility=-",
            "--log-dhcp",
            "--log-queries",
            "--user=root",
            "--group=root",
            f"--pid-file={self.pid_path}",
            f"--interface={self.interface}",
            "--bind-interfaces",
            f"--port={self.dns_port}",
        ]
        for name, address in self.dns_records.items():
            args.append(f"--host-record={name},{address}")
        if self.dhcp:
            first, last, mask = self.dhcp_range
            args += [
                f"--dhcp-range={first},{last},{mask},{self.lease_time}",
                f"--dhcp-leasefile={self.lease_path}",
                "--dhcp-authoritative",
                # Quirk: without this, each OFFER waits up to 3 s on a ping.
                "--no-ping",
            ]
            if self.router is not None:
                args.append(f"--dhcp-option=option:router,{self.router}")
        args += self.extra_args
        return args

    def prepare(self) -> None:
        """Create an empty lease file, so :meth:`leases` works at once."""
        if self.dhcp:
            self.lease_path.touch()

    def leases(self) -> list[DnsmasqLease]:
        """Parse the lease file (``expiry mac ip hostname client-id`` lines)."""
        try:
            lines = self.lease_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        leases: list[DnsmasqLease] = []
        for line in lines:
            fields = line.split()
            # DHCPv6 entries follow a "duid ..." line and have a different shape.
            if len(fields) < 5 or fields[0] == "duid" or ":" in fields[2]:
                continue
            leases.append(
                DnsmasqLease(
                    expire=int(fields[0]),
                    hwaddr=fields[1].lower(),
                    address=fields[2],
                    hostname=fields[3],
                    client_id=fields[4],
                )
            )
        return leases


class _Kea(_Server):
    """What Kea DHCPv4 and DHCPv6 share: JSON config, env, control socket."""

    family: ClassVar[int]
    #: Names :meth:`reconfigure` accepts: the constructor's keyword arguments.
    settable: ClassVar[frozenset[str]]
    failure_pattern = re.compile(r"DHCPSRV_OPEN_SOCKET_FAIL.*|DHCPSRV_NO_SOCKETS_OPEN.*")

    def __init__(
        self,
        ns: Netns,
        interface: str,
        workdir: str | os.PathLike[str],
        *,
        control_socket: bool,
        log_severity: str,
        log_debuglevel: int,
    ) -> None:
        super().__init__(ns, interface, workdir)
        self.control_socket = control_socket
        self.log_severity = log_severity
        self.log_debuglevel = log_debuglevel
        self.config_path = self.workdir / f"kea-dhcp{self.family}.json"
        self.lease_path = self.workdir / f"kea-leases{self.family}.csv"
        self._short_dir: str | None = None

    @property
    def control_socket_path(self) -> Path:
        """Path of the Unix control socket (see :func:`kea_command`)."""
        path = self.workdir / f"kea{self.family}-ctrl.sock"
        if len(os.fsencode(path)) <= _MAX_UNIX_PATH:
            return path
        if self._short_dir is None:
            self._short_dir = tempfile.mkdtemp(prefix="rdt-kea-")
            # Removed by stop(), or at the latest when this object goes away.
            weakref.finalize(self, shutil.rmtree, self._short_dir, True)
        return Path(self._short_dir) / f"kea{self.family}.sock"

    def argv(self) -> list[str]:
        """Return ``kea-dhcpN -c CONFIG``."""
        return [self.binary, "-c", os.fspath(self.config_path)]

    def env(self) -> dict[str, str]:
        """Point Kea's PID and lock files into the work directory."""
        env = dict(os.environ)
        env["KEA_PIDFILE_DIR"] = os.fspath(self.workdir)
        env["KEA_LOCKFILE_DIR"] = os.fspath(self.workdir)
        return env

    def config(self) -> dict[str, Any]:
        """Return the whole configuration, ``{"DhcpN": {...}}``."""
        raise NotImplementedError

    def _common_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "interfaces-config": {"interfaces": [self.interface]},
            "lease-database": {
                "type": "memfile",
                "persist": True,
                "name": os.fspath(self.lease_path),
                # The lease-file cleanup would rewrite the file under a test.
                "lfc-interval": 0,
            },
            "loggers": [
                {
                    "name": self.binary,
                    "output_options": [{"output": "stdout", "flush": True}],
                    "severity": self.log_severity,
                    "debuglevel": self.log_debuglevel,
                }
            ],
        }
        if self.control_socket:
            conf["control-socket"] = {
                "socket-type": "unix",
                "socket-name": os.fspath(self.control_socket_path),
            }
        return conf

    def prepare(self) -> None:
        """Write the JSON configuration; drop a stale control socket."""
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")
        if self.control_socket:
            with contextlib.suppress(FileNotFoundError):
                self.control_socket_path.unlink()

    def wait_ready(self, since: int, deadline: float) -> None:
        """Wait for the control socket to answer ``status-get``."""
        if not self.control_socket:
            return
        while True:
            try:
                if self.command("status-get", timeout=1.0)["result"] == 0:
                    return
            except KeaCommandError:
                pass
            if self.process is not None and not self.process.alive():
                raise ServerError(f"{self!r} exited")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.control_socket_path} did not answer")
            time.sleep(POLL_INTERVAL)

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop Kea by PID; remove a temporary socket directory."""
        code = super().stop(timeout)
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self._short_dir = None
        return code

    def command(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Send *command* to this server's control socket (:func:`kea_command`)."""
        return kea_command(self.control_socket_path, command, arguments, timeout)

    def reconfigure(self, **changes: Any) -> None:
        """Change constructor settings and apply them to the running server.

        Rewrites the configuration and sends ``config-reload`` when the
        control socket is on, or restarts the server otherwise. Leases
        survive (memfile). To make Kea 2.2 NAK a bound DHCPv4 client, reserve
        it another address (``reservations={mac: other}``): a pool moved away
        from its address only makes Kea drop its requests.

        :raises ValueError: an unknown setting.
        :raises ServerError: Kea rejected the configuration.
        """
        unknown = set(changes) - self.settable
        if unknown:
            raise ValueError(f"unknown setting(s): {sorted(unknown)}")
        for name, value in changes.items():
            setattr(self, name, value)
        if not self.alive():
            self.prepare()
            return
        if not self.control_socket:
            self.restart()
            return
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")
        answer = self.command("config-reload")
        if answer.get("result") != 0:
            raise ServerError(f"config-reload failed: {answer}")

    def _rows(self) -> list[dict[str, str]]:
        try:
            with open(self.lease_path, newline="") as f:
                return list(csv.DictReader(f))
        except FileNotFoundError:
            return []


def _int(value: str | None) -> int:
    return int(value) if value else 0


def _pool(pool: tuple[str, str]) -> dict[str, str]:
    return {"pool": f"{pool[0]} - {pool[1]}"}


class KeaDhcp4(_Kea):
    """Kea DHCPv4 server (``kea-dhcp4``) on one interface, raw sockets.

    :param ns: namespace to run in.
    :param interface: interface to serve; it must have an address in *subnet*.
    :param workdir: directory for config, memfile, PID and lock files, log.
    :param subnet: the subnet.
    :param pool: ``(first, last)`` addresses handed out.
    :param router: value of option 3, or ``None``.
    :param dns: option 6 addresses.
    :param valid_lifetime: lease time in seconds.
    :param renew_timer: T1 in seconds (``None``: Kea's default, no option 58).
    :param rebind_timer: T2 in seconds (``None``: Kea's default).
    :param control_socket: open the Unix control socket.
    :param authoritative: NAK requests for unknown addresses or clients.
    :param match_client_id: identify clients by client-id (else by MAC).
    :param reservations: ``{mac: address}`` host reservations. Giving a bound
        client a different address is how to make Kea 2.2 NAK it: a pool that
        no longer holds its address only makes Kea drop the request
        (``DHCP4_UNKNOWN_ADDRESS_REQUESTED``).
    :param log_severity: ``"INFO"`` or ``"DEBUG"``.
    :param log_debuglevel: with DEBUG: 45 logs each packet received and sent (type names).
    """

    binary = "kea-dhcp4"
    family = 4
    ready_pattern = "DHCP4_STARTED"
    settable = frozenset(
        {
            "subnet",
            "pool",
            "router",
            "dns",
            "valid_lifetime",
            "renew_timer",
            "rebind_timer",
            "authoritative",
            "match_client_id",
            "reservations",
        }
    )

    def __init__(
        self,
        ns: Netns,
        interface: str,
        workdir: str | os.PathLike[str],
        *,
        subnet: str = "192.0.2.0/24",
        pool: tuple[str, str] = ("192.0.2.100", "192.0.2.200"),
        router: str | None = "192.0.2.1",
        dns: tuple[str, ...] = ("192.0.2.1",),
        valid_lifetime: int = 120,
        renew_timer: int | None = None,
        rebind_timer: int | None = None,
        control_socket: bool = True,
        authoritative: bool = True,
        match_client_id: bool = True,
        reservations: dict[str, str] | None = None,
        log_severity: str = "DEBUG",
        log_debuglevel: int = 45,
    ) -> None:
        super().__init__(
            ns,
            interface,
            workdir,
            control_socket=control_socket,
            log_severity=log_severity,
            log_debuglevel=log_debuglevel,
        )
        self.subnet = subnet
        self.pool = pool
        self.router = router
        self.dns = tuple(dns)
        self.valid_lifetime = valid_lifetime
        self.renew_timer = renew_timer
        self.rebind_timer = rebind_timer
        self.authoritative = authoritative
        self.match_client_id = match_client_id
        self.reservations = dict(reservations or {})

    def config(self) -> dict[str, Any]:
        """Return ``{"Dhcp4": {...}}``."""
        options: list[dict[str, Any]] = []
        if self.router is not None:
            options.append({"name": "routers", "data": self.router})
        if self.dns:
            options.append({"name": "domain-name-servers", "data": ", ".join(self.dns)})
        subnet: dict[str, Any] = {
            "id": 1,
            "subnet": str(ipaddress.ip_network(self.subnet)),
            "pools": [_pool(self.pool)],
            "option-data": options,
            "reservations": [
                {"hw-address": mac, "ip-address": ip} for mac, ip in self.reservations.items()
            ],
        }
        conf = self._common_config()
        conf["interfaces-config"]["dhcp-socket-type"] = "raw"
        conf.update(
            {
                "valid-lifetime": self.valid_lifetime,
                "authoritative": self.authoritative,
                "match-client-id": self.match_client_id,
                "subnet4": [subnet],
            }
        )
        if self.renew_timer is not None:
            conf["renew-timer"] = self.renew_timer
        if self.rebind_timer is not None:
            conf["rebind-timer"] = self.rebind_timer
        return {"Dhcp4": conf}

    def leases(self, *, active_only: bool = False) -> list[Kea4Lease]:
        """Parse the memfile: one entry per address, from its last row.

        :param active_only: drop leases released, declined or reclaimed
            (``valid_lifetime`` 0 or ``state`` not 0).
        """
        by_address: dict[str, Kea4Lease] = {}
        for row in self._rows():
            lease = Kea4Lease(
                address=row["address"],
                hwaddr=row.get("hwaddr", "").lower(),
                client_id=row.get("client_id", "").lower(),
                valid_lifetime=_int(row.get("valid_lifetime")),
                expire=_int(row.get("expire")),
                subnet_id=_int(row.get("subnet_id")),
                hostname=row.get("hostname", ""),
                state=_int(row.get("state")),
            )
            by_address[lease["address"]] = lease
        leases = list(by_address.values())
        if active_only:
            leases = [x for x in leases if x["valid_lifetime"] and not x["state"]]
        return leases


_LEASE6_TYPES = {"0": "IA_NA", "1": "IA_TA", "2": "IA_PD"}
_ISC_ENTERPRISE_ID = 2495


class KeaDhcp6(_Kea):
    """Kea DHCPv6 server (``kea-dhcp6``) with addresses and prefix delegation.

    The interface needs a link-local address (waited for at start) and, for
    clients to be matched to *subnet*, a global address in it.

    :param ns: namespace to run in.
    :param interface: interface to serve.
    :param workdir: directory for config, memfile, PID and lock files, log.
    :param subnet: the on-link subnet.
    :param pool: ``(first, last)`` IA_NA addresses, or ``None`` for none.
    :param pd_pool: ``(prefix, prefix_len, delegated_len)``, or ``None``.
    :param preferred_lifetime: seconds.
    :param valid_lifetime: seconds.
    :param renew_timer: T1 in seconds (``None``: Kea computes it).
    :param rebind_timer: T2 in seconds (``None``: Kea computes it).
    :param rapid_commit: answer a Solicit with Rapid Commit by a Reply.
    :param dns: option 23 addresses.
    :param domain_search: option 24 domains.
    :param preference: option 7 value; 255 makes clients take the first
        Advertise at once instead of collecting for a second (RFC 9915 §18.2.1).
    :param control_socket: open the Unix control socket.
    :param log_severity: ``"INFO"`` or ``"DEBUG"``.
    :param log_debuglevel: with DEBUG: 45 logs each packet received and sent (type names).
    """

    binary = "kea-dhcp6"
    family = 6
    ready_pattern = "DHCP6_STARTED"
    settable = frozenset(
        {
            "subnet",
            "pool",
            "pd_pool",
            "preferred_lifetime",
            "valid_lifetime",
            "renew_timer",
            "rebind_timer",
            "rapid_commit",
            "dns",
            "domain_search",
            "preference",
        }
    )

    def __init__(
        self,
        ns: Netns,
        interface: str,
        workdir: str | os.PathLike[str],
        *,
        subnet: str = "2001:db8:1::/64",
        pool: tuple[str, str] | None = ("2001:db8:1::100", "2001:db8:1::1ff"),
        pd_pool: tuple[str, int, int] | None = ("2001:db8:100::", 48, 60),
        preferred_lifetime: int = 90,
        valid_lifetime: int = 120,
        renew_timer: int | None = None,
        rebind_timer: int | None = None,
        rapid_commit: bool = False,
        dns: tuple[str, ...] = ("2001:db8:1::1",),
        domain_search: tuple[str, ...] = (),
        preference: int | None = None,
        control_socket: bool = True,
        log_severity: str = "DEBUG",
        log_debuglevel: int = 45,
    ) -> None:
        super().__init__(
            ns,
            interface,
            workdir,
            control_socket=control_socket,
            log_severity=log_severity,
            log_debuglevel=log_debuglevel,
        )
        self.subnet = subnet
        self.pool = pool
        self.pd_pool = pd_pool
        self.preferred_lifetime = preferred_lifetime
        self.valid_lifetime = valid_lifetime
        self.renew_timer = renew_timer
        self.rebind_timer = rebind_timer
        self.rapid_commit = rapid_commit
        self.dns = tuple(dns)
        self.domain_search = tuple(domain_search)
        self.preference = preference
        self._duid_identifier = secrets.token_hex(6)

    def config(self) -> dict[str, Any]:
        """Return ``{"Dhcp6": {...}}``."""
        options: list[dict[str, Any]] = []
        if self.dns:
            options.append({"name": "dns-servers", "data": ", ".join(self.dns)})
        if self.domain_search:
            search = ", ".join(self.domain_search)
            options.append({"name": "domain-search", "data": search})
        if self.preference is not None:
            # Kea sends option-data only when the client's ORO asks for it, and
            # clients do not request Preference (RFC 9915 §21.8): always-send.
            options.append(
                {"name": "preference", "data": str(self.preference), "always-send": True}
            )
        subnet: dict[str, Any] = {
            "id": 1,
            "subnet": str(ipaddress.ip_network(self.subnet)),
            # Directly connected clients come from link-local addresses; Kea
            # then selects the subnet by the interface it is bound to.
            "interface": self.interface,
            "rapid-commit": self.rapid_commit,
            "pools": [_pool(self.pool)] if self.pool else [],
            "option-data": options,
        }
        if self.pd_pool is not None:
            prefix, prefix_len, delegated_len = self.pd_pool
            subnet["pd-pools"] = [
                {
                    "prefix": prefix,
                    "prefix-len": prefix_len,
                    "delegated-len": delegated_len,
                }
            ]
        conf = self._common_config()
        # Quirk: by default Kea persists its DUID in /var/lib/kea, which may
        # not be writable or be shared with a system Kea.
        conf["server-id"] = {
            "type": "EN",
            "enterprise-id": _ISC_ENTERPRISE_ID,
            "identifier": self._duid_identifier,
            "persist": False,
        }
        conf.update(
            {
                "preferred-lifetime": self.preferred_lifetime,
                "valid-lifetime": self.valid_lifetime,
                "subnet6": [subnet],
            }
        )
        if self.renew_timer is not None:
            conf["renew-timer"] = self.renew_timer
        if self.rebind_timer is not None:
            conf["rebind-timer"] = self.rebind_timer
        return {"Dhcp6": conf}

    @property
    def server_duid(self) -> str:
        """The server's DUID (type 2, DUID-EN) as colon-separated hex."""
        raw = (2).to_bytes(2, "big") + _ISC_ENTERPRISE_ID.to_bytes(4, "big")
        raw += bytes.fromhex(self._duid_identifier)
        return raw.hex(":")

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> Self:
        """Wait for the interface's link-local address, then start Kea."""
        self.ns.wait_for_link_local(self.interface, timeout)
        return super().start(timeout)

    def leases(self, *, active_only: bool = False) -> list[Kea6Lease]:
        """Parse the memfile: one entry per (type, address), from its last row.

        :param active_only: drop leases released, declined or reclaimed.
        """
        by_key: dict[tuple[str, str], Kea6Lease] = {}
        for row in self._rows():
            lease = Kea6Lease(
                address=row["address"],
                prefix_len=_int(row.get("prefix_len")),
                lease_type=_LEASE6_TYPES.get(row.get("lease_type", ""), "unknown"),
                duid=row.get("duid", "").lower(),
                iaid=_int(row.get("iaid")),
                valid_lifetime=_int(row.get("valid_lifetime")),
                preferred_lifetime=_int(row.get("pref_lifetime")),
                expire=_int(row.get("expire")),
                subnet_id=_int(row.get("subnet_id")),
                hwaddr=row.get("hwaddr", "").lower(),
                state=_int(row.get("state")),
            )
            by_key[(lease["lease_type"], lease["address"])] = lease
        leases = list(by_key.values())
        if active_only:
            leases = [x for x in leases if x["valid_lifetime"] and not x["state"]]
        return leases
