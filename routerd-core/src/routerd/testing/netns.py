"""Network-namespace test lab: namespaces, veth pairs and processes ended by PID.

Every real-server test in routerd builds its topology with this module, and
third-party plugin authors can do the same::

    with Lab() as lab:
        client, server = lab.netns(), lab.netns()
        lab.veth(client, "wan0", server, "srv0")
        server.addr_add("srv0", "192.0.2.1/24")
        proc = lab.spawn(server, ["dnsmasq", ...], tmp_path / "dnsmasq.log")
        proc.wait_for_log("started")

Ownership and tear-down:

- a :class:`ManagedProcess` is tracked by the :class:`Netns` it runs in;
- a :class:`Netns` made through a :class:`Lab` is tracked by that lab;
- :meth:`Lab.close` runs registered cleanups, then stops every tracked process
  (SIGTERM, then SIGKILL, always by PID), then deletes every namespace, which
  first kills by PID whatever else is still inside (``ip netns pids``), for
  example a client that daemonized itself;
- an :mod:`atexit` hook closes whatever labs and namespaces are still open.

IPv6 duplicate address detection is *disabled* in lab namespaces by default
(``accept_dad=0`` for ``all``, ``default`` and every veth end created here):
link-local addresses are usable as soon as the link has carrier, which DHCPv6
clients and Kea need. Pass ``dad=True`` to keep DAD, and use
:meth:`Netns.wait_for_ipv6_dad` to wait for it to finish.

Nothing here needs pytest except :func:`require_netns_prereqs`, which imports it
lazily so that benchmarks can use the lab too.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
import contextlib
import functools
import ipaddress
import json
import os
from pathlib import Path
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from types import TracebackType
from typing import Any
from typing import Self

__all__ = [
    "Lab",
    "ManagedProcess",
    "Netns",
    "ProcessExitedError",
    "close_all",
    "find_tool",
    "log_tail",
    "open_namespaces",
    "require_netns_prereqs",
    "veth",
]

#: Prefix of every namespace and temporary interface name this module makes.
NAME_PREFIX = "rdt"
#: Directories searched after ``PATH``: non-login root shells often lack them.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
#: Interval between two looks at a state we wait for (a log, a process, DAD).
POLL_INTERVAL = 0.02
DEFAULT_TIMEOUT = 10.0
_NFT_TABLE = "routerd_test"


def find_tool(name: str) -> str | None:
    """Return the absolute path of executable *name*, or ``None``.

    Searches ``PATH`` and then the sbin directories, which ``PATH`` often
    lacks outside login shells.

    :param name: a bare program name, or a path (returned if executable).
    """
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found is not None:
        return found
    return shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))


def _resolve_argv(argv: Sequence[str | os.PathLike[str]]) -> list[str]:
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("empty argv")
    resolved = find_tool(args[0])
    if resolved is not None:
        args[0] = resolved
    return args


def _ip() -> str:
    return find_tool("ip") or "ip"


def _host_run(
    argv: Sequence[str], *, check: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run *argv* in the host namespace, raising with its stderr on failure."""
    args = _resolve_argv(argv)
    proc = subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(
            proc.returncode, args, output=proc.stdout, stderr=proc.stderr
        )
    return proc


@functools.cache
def _netns_probe() -> str | None:
    """Return why ``ip netns`` is unusable here, or ``None`` when it works."""
    name = f"{NAME_PREFIX}-probe{secrets.token_hex(3)}"
    try:
        _host_run(["ip", "netns", "add", name])
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", None) or str(e)
        return f"`ip netns add` failed: {detail.strip()}"
    try:
        _host_run(["ip", "netns", "del", name], check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return None


def require_netns_prereqs(tools: Iterable[str] = ()) -> None:
    """Skip the calling test unless namespaces and *tools* are usable.

    Checks, in order: running as root, ``ip`` present and ``ip netns add``
    working, then each tool on ``PATH`` or in the sbin directories. When
    ``CI=true`` a missing prerequisite fails the test instead: a green CI must
    mean these tests ran.

    :param tools: program names the test needs, for example ``["kea-dhcp4"]``.
    """
    import pytest  # NOTE: lazily, so the lab works outside pytest.

    reason: str | None = None
    if os.geteuid() != 0:
        reason = "network-namespace tests need root"
    elif find_tool("ip") is None:
        reason = "missing tool: ip (iproute2)"
    else:
        reason = _netns_probe()
        if reason is None:
            missing = [t for t in tools if find_tool(t) is None]
            if missing:
                reason = "missing tool(s): " + ", ".join(missing)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and netns prerequisite missing: {reason}")
    pytest.skip(reason)


def log_tail(text: str, lines: int = 30) -> str:
    """Return the last *lines* lines of *text*, for error messages."""
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    """Tell whether *pid* exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # The state follows the parenthesised comm, which may contain spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL
) -> bool:
    """Poll *predicate* until it is true or *timeout* seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ProcessExitedError(RuntimeError):
    """A managed process ended while a caller waited for it to log something."""


class ManagedProcess:
    """A process started inside a namespace, logging to a file, ended by PID.

    stdout and stderr both go to *log_path*. The process is started at
    construction through ``ip netns exec``, which execs the program in place,
    so :attr:`pid` is the program's own PID.

    :param ns: the namespace to run in.
    :param argv: the program and its arguments; a bare program name is
        resolved through ``PATH`` and the sbin directories.
    :param log_path: file receiving stdout and stderr.
    :param env: the full environment, or ``None`` to inherit ours.
    :param append: append to *log_path* instead of truncating it (a server
        restarted keeps one log; pass ``since=`` to :meth:`wait_for_log`).
    """

    def __init__(
        self,
        ns: Netns,
        argv: Sequence[str | os.PathLike[str]],
        log_path: str | os.PathLike[str],
        *,
        env: dict[str, str] | None = None,
        append: bool = False,
    ) -> None:
        self.ns = ns
        self.argv = _resolve_argv(argv)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the descriptor; ours closes at once.
        with open(self.log_path, "ab" if append else "wb") as log:
            self._popen = subprocess.Popen(
                [_ip(), "netns", "exec", ns.name, *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own session: a ^C on the terminal must not reach it; we end it.
                start_new_session=True,
            )
        self.pid: int = self._popen.pid
        ns._track(self)

    def __repr__(self) -> str:
        return f"<ManagedProcess pid={self.pid} {self.argv[0]} in {self.ns.name}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), ``None`` if running."""
        return self._popen.poll()

    def alive(self) -> bool:
        """Tell whether the process is still running."""
        return self._popen.poll() is None

    def log_text(self) -> str:
        """Return everything the process has logged so far."""
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
        """Wait until the log contains *pattern*; return the matching line.

        :param pattern: a substring, or a compiled regular expression.
        :param timeout: seconds to wait.
        :param since: ignore log text before this offset (see :meth:`mark`).
        :raises TimeoutError: not logged in time; the message has the log tail.
        :raises ProcessExitedError: the process ended without logging it.
        """
        deadline = time.monotonic() + timeout
        while True:
            # Read the exit status before the log, so a final line is not missed.
            exited = not self.alive()
            text = self.log_text()
            found = _search(pattern, text, since)
            if found is not None:
                return found
            if exited:
                raise ProcessExitedError(
                    f"{self!r} exited with {self.returncode} before logging "
                    f"{_pattern_str(pattern)!r}; log tail:\n{log_tail(text)}"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self!r} did not log {_pattern_str(pattern)!r} within "
                    f"{timeout}s; log tail:\n{log_tail(text)}"
                )
            time.sleep(POLL_INTERVAL)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the process to exit on its own; return its exit code.

        :raises subprocess.TimeoutExpired: still running after *timeout*.
        """
        return self._popen.wait(timeout)

    def stop(self, timeout: float = 5.0) -> int:
        """End the process by PID: SIGTERM, wait, then SIGKILL; return exit code.

        Idempotent: once ended, returns the recorded exit code.

        :param timeout: seconds to wait after SIGTERM before SIGKILL.
        """
        if self._popen.poll() is None:
            _signal_pid(self.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_pid(self.pid, signal.SIGKILL)
                self._popen.wait(timeout)
        code = self._popen.returncode
        assert code is not None
        return code

    def kill(self) -> int:
        """Send SIGKILL by PID and reap the process; return its exit code."""
        if self._popen.poll() is None:
            _signal_pid(self.pid, signal.SIGKILL)
        return self._popen.wait(DEFAULT_TIMEOUT)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send *sig* to the process by PID (for example SIGHUP to reload)."""
        if self._popen.poll() is None:
            _signal_pid(self.pid, sig)


def _pattern_str(pattern: str | re.Pattern[str]) -> str:
    return pattern if isinstance(pattern, str) else pattern.pattern


def _search(pattern: str | re.Pattern[str], text: str, since: int) -> str | None:
    """Return the line of *text* (from *since*) where *pattern* matches."""
    if isinstance(pattern, str):
        pos = text.find(pattern, since)
    else:
        m = pattern.search(text, since)
        pos = -1 if m is None else m.start()
    if pos < 0:
        return None
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start : len(text) if end < 0 else end]


class Netns:
    """A network namespace with a unique name, ``lo`` up, deleted idempotently.

    :param prefix: name prefix; the name is ``<prefix>-<hex>``, at most 15
        characters.
    :param dad: keep IPv6 duplicate address detection (off by default, see
        the module docstring).
    """

    def __init__(self, prefix: str = NAME_PREFIX, *, dad: bool = False) -> None:
        suffix = secrets.token_hex(4)
        self.name = f"{prefix}-{suffix}"[:15]
        self.dad = dad
        self._processes: list[ManagedProcess] = []
        self._deleted = False
        _host_run(["ip", "netns", "add", self.name])
        _registry.add_netns(self)
        try:
            self.ip("link", "set", "lo", "up")
            if not dad:
                self.sysctl(
                    {
                        "net.ipv6.conf.all.accept_dad": "0",
                        "net.ipv6.conf.default.accept_dad": "0",
                    }
                )
        except BaseException:
            self.delete()
            raise

    def __repr__(self) -> str:
        return f"<Netns {self.name}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    @property
    def deleted(self) -> bool:
        """Tell whether :meth:`delete` has run."""
        return self._deleted

    # -- running things ------------------------------------------------------

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run *argv* inside the namespace and wait for it (``ip netns exec``).

        :param argv: the program and its arguments.
        :param check: raise :class:`subprocess.CalledProcessError` (carrying
            stdout and stderr) on a non-zero exit.
        :param timeout: seconds before :class:`subprocess.TimeoutExpired`.
        :param input: text for the program's stdin.
        :param env: the full environment, or ``None`` to inherit ours.
        """
        args = [_ip(), "netns", "exec", self.name, *_resolve_argv(argv)]
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(
                proc.returncode, args, output=proc.stdout, stderr=proc.stderr
            )
        return proc

    def popen(
        self,
        argv: Sequence[str | os.PathLike[str]],
        log_path: str | os.PathLike[str],
        *,
        env: dict[str, str] | None = None,
        append: bool = False,
    ) -> ManagedProcess:
        """Start *argv* in the namespace, logging to *log_path*; don't wait.

        The process is tracked: :meth:`delete` stops it by PID. See
        :class:`ManagedProcess` for the arguments.
        """
        return ManagedProcess(self, argv, log_path, env=env, append=append)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ip -n NAME ARGS`` (no mount-namespace setup, so cheaper)."""
        return _host_run(["ip", "-n", self.name, *args], check=check)

    def ip_json(self, *args: str) -> Any:
        """Run ``ip -j -n NAME ARGS`` and return the decoded JSON."""
        out = _host_run(["ip", "-j", "-n", self.name, *args]).stdout
        return json.loads(out) if out.strip() else []

    def sysctl(self, values: dict[str, str]) -> None:
        """Set sysctls inside the namespace, for example ``accept_dad``."""
        self.run(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])

    # -- links and addresses -------------------------------------------------

    def addr_add(self, ifname: str, cidr: str, *extra: str) -> None:
        """Add address *cidr* (``"192.0.2.1/24"``, ``"2001:db8::1/64"``).

        :param extra: more ``ip addr add`` words, for example ``"nodad"``.
        """
        self.ip("addr", "add", cidr, "dev", ifname, *extra)

    def addr_del(self, ifname: str, cidr: str) -> None:
        """Remove address *cidr* from *ifname*."""
        self.ip("addr", "del", cidr, "dev", ifname)

    def link_set(self, ifname: str, up: bool) -> None:
        """Set *ifname* administratively up or down.

        Setting one veth end down makes its peer lose carrier (``NO-CARRIER``,
        operstate ``LOWER_LAYER_DOWN`` or ``DOWN``): the way to simulate an
        unplugged cable for the client on the other end.
        """
        self.ip("link", "set", "dev", ifname, "up" if up else "down")

    def link(self, ifname: str) -> dict[str, Any]:
        """Return ``ip -j link show dev IFNAME`` for *ifname*."""
        links = self.ip_json("link", "show", "dev", ifname)
        if not links:
            raise LookupError(f"no link {ifname} in {self.name}")
        result: dict[str, Any] = links[0]
        return result

    def link_mac(self, ifname: str) -> str:
        """Return the MAC address of *ifname*, lower-case, colon-separated."""
        return str(self.link(ifname)["address"]).lower()

    def has_carrier(self, ifname: str) -> bool:
        """Tell whether *ifname* has carrier (``LOWER_UP``)."""
        return "LOWER_UP" in self.link(ifname).get("flags", [])

    def links(self) -> list[str]:
        """Return the interface names in the namespace."""
        return [str(link["ifname"]) for link in self.ip_json("link", "show")]

    def addresses(self, ifname: str, family: int | None = None) -> list[dict[str, Any]]:
        """Return the ``addr_info`` entries of *ifname* from ``ip -j addr``.

        Each has at least ``family``, ``local``, ``prefixlen`` and ``scope``,
        plus flags such as ``tentative``, ``dynamic`` or ``deprecated``.

        :param family: 4 or 6 to filter, ``None`` for both.
        """
        args = ["addr", "show", "dev", ifname]
        if family is not None:
            args.insert(0, f"-{family}")
        out: list[dict[str, Any]] = []
        for link in self.ip_json(*args):
            out.extend(link.get("addr_info", []))
        return out

    def routes(self, family: int = 4, table: str = "main") -> list[dict[str, Any]]:
        """Return ``ip -j -<family> route show table TABLE``."""
        routes: list[dict[str, Any]] = self.ip_json(f"-{family}", "route", "show", "table", table)
        return routes

    def link_local(self, ifname: str) -> str | None:
        """Return the IPv6 link-local address of *ifname*, or ``None``."""
        for info in self.addresses(ifname, 6):
            if info.get("scope") == "link" and not info.get("tentative"):
                return str(info["local"])
        return None

    def wait_for_link_local(self, ifname: str, timeout: float = 5.0) -> str:
        """Wait until *ifname* has a usable IPv6 link-local address; return it.

        It appears once the link is up *and* has carrier (both veth ends up).
        """
        found: list[str] = []

        def ready() -> bool:
            addr = self.link_local(ifname)
            if addr is not None:
                found.append(addr)
            return addr is not None

        if not _wait_until(ready, timeout):
            raise TimeoutError(
                f"no link-local address on {ifname} in {self.name} within {timeout}s"
            )
        return found[0]

    def wait_for_ipv6_dad(self, ifname: str, timeout: float = 5.0) -> None:
        """Wait until no IPv6 address of *ifname* is ``tentative``.

        Needed only in namespaces created with ``dad=True``; elsewhere DAD is
        off and this returns at once.
        """

        def done() -> bool:
            return not any(i.get("tentative") for i in self.addresses(ifname, 6))

        if not _wait_until(done, timeout):
            raise TimeoutError(
                f"IPv6 DAD on {ifname} in {self.name} not done within {timeout}s: "
                f"{self.addresses(ifname, 6)}"
            )

    # -- nftables outages ----------------------------------------------------

    def nft_block(
        self,
        proto: str | None = None,
        daddr: str | None = None,
        dport: int | None = None,
    ) -> None:
        """Drop matching traffic in table ``inet routerd_test``.

        The same drop rule goes into an input and an output chain, so it
        works on either side: in the server namespace it drops requests
        arriving for *daddr*:*dport*; in the client namespace it drops them
        leaving (a UDP sender sees ``EPERM``; TCP retransmits its SYN until
        its timeout). Calls accumulate rules.

        NOTE: traffic sent or received on packet sockets (DHCPv4 clients and
        Kea's default ``raw`` socket type) bypasses these hooks; simulate
        such outages with :meth:`link_set` instead.

        :param proto: ``"tcp"``, ``"udp"``, ``"icmp"``, ``"ipv6-icmp"``...
        :param daddr: an address or prefix, IPv4 or IPv6.
        :param dport: a destination port (with no *proto*: TCP and UDP).
        """
        match: list[str] = []
        if proto is not None:
            match.append(f"meta l4proto {proto}")
        if daddr is not None:
            net = ipaddress.ip_network(daddr, strict=False)
            match.append(f"{'ip' if net.version == 4 else 'ip6'} daddr {net}")
        if dport is not None:
            if proto is None:
                match.append("meta l4proto { tcp, udp }")
            match.append(f"th dport {int(dport)}")
        rule = " ".join(match)
        script = [f"add table inet {_NFT_TABLE}"]
        for chain in ("input", "output"):
            script.append(
                f"add chain inet {_NFT_TABLE} {chain} "
                f"{{ type filter hook {chain} priority -10; policy accept; }}"
            )
            script.append(f"add rule inet {_NFT_TABLE} {chain} {rule} counter drop")
        self.run(["nft", "-f", "-"], input="\n".join(script) + "\n")

    def nft_unblock(self) -> None:
        """Delete table ``inet routerd_test`` (no-op when absent)."""
        self.run(["nft", "delete", "table", "inet", _NFT_TABLE], check=False)

    # -- processes and tear-down ---------------------------------------------

    def _track(self, proc: ManagedProcess) -> None:
        if self._deleted:
            proc.kill()
            raise RuntimeError(f"{self.name} is deleted")
        self._processes.append(proc)

    @property
    def processes(self) -> list[ManagedProcess]:
        """The managed processes started in this namespace."""
        return list(self._processes)

    def pids(self) -> list[int]:
        """Return the PIDs of every live process in the namespace."""
        res = _host_run(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in res.stdout.split() if p.isdigit()]

    def stop_processes(self, timeout: float = 5.0) -> None:
        """Stop the managed processes, then kill by PID whatever else remains."""
        for proc in reversed(self._processes):
            proc.stop(timeout)
        self.kill_all(timeout)

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGTERM every process in the namespace by PID, then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in self.pids() if _pid_alive(p)]
            if not pids:
                return
            for pid in pids:
                _signal_pid(pid, sig)
            if _wait_until(lambda: not any(_pid_alive(p) for p in self.pids()), timeout):
                return

    def delete(self, timeout: float = 5.0) -> None:
        """End every process inside by PID, then ``ip netns del``; idempotent."""
        if self._deleted:
            return
        try:
            self.stop_processes(timeout)
        finally:
            self._deleted = True
            _registry.discard_netns(self)
            _host_run(["ip", "netns", "del", self.name], check=False)


def veth(
    ns_a: Netns,
    if_a: str,
    ns_b: Netns,
    if_b: str,
    mac_a: str | None = None,
    mac_b: str | None = None,
) -> None:
    """Join *ns_a* and *ns_b* with a veth pair *if_a* ↔ *if_b*, both up.

    The pair is made in the host under temporary unique names (so two labs
    never collide), each end is moved into its namespace, renamed, and set
    up. In namespaces without DAD, the ends get ``accept_dad=0`` too.

    :param mac_a: MAC for *if_a* (random when ``None``).
    :param mac_b: MAC for *if_b* (random when ``None``).
    """
    tag = secrets.token_hex(4)
    tmp_a, tmp_b = f"{NAME_PREFIX}{tag}a", f"{NAME_PREFIX}{tag}b"
    add = ["ip", "link", "add", tmp_a]
    if mac_a is not None:
        add += ["address", mac_a]
    add += ["type", "veth", "peer", "name", tmp_b]
    if mac_b is not None:
        add += ["address", mac_b]
    _host_run(add)
    # Where end A is now, so a failure deletes the pair and nothing else.
    a_where: tuple[Netns | None, str] = (None, tmp_a)
    try:
        _host_run(["ip", "link", "set", "dev", tmp_a, "netns", ns_a.name])
        a_where = (ns_a, tmp_a)
        _host_run(["ip", "link", "set", "dev", tmp_b, "netns", ns_b.name])
        ns_a.ip("link", "set", "dev", tmp_a, "name", if_a)
        a_where = (ns_a, if_a)
        ns_b.ip("link", "set", "dev", tmp_b, "name", if_b)
        for ns, name in ((ns_a, if_a), (ns_b, if_b)):
            if not ns.dad:
                ns.sysctl({f"net.ipv6.conf.{name}.accept_dad": "0"})
        ns_a.link_set(if_a, True)
        ns_b.link_set(if_b, True)
    except BaseException:
        # Deleting either end deletes the pair.
        where_ns, where_name = a_where
        if where_ns is None:
            _host_run(["ip", "link", "del", where_name], check=False)
        else:
            where_ns.ip("link", "del", where_name, check=False)
        raise


class Lab:
    """Owns namespaces and processes made through it; :meth:`close` ends all.

    Tear-down order: cleanups registered with :meth:`add_cleanup` (last
    first), then every process in every namespace (by PID), then the
    namespaces. :meth:`close` carries on past errors and re-raises the first
    one at the end. An :mod:`atexit` hook closes labs left open.

    :param dad: default for :meth:`netns`'s ``dad`` argument.
    """

    def __init__(self, *, dad: bool = False) -> None:
        self.dad = dad
        self.namespaces: list[Netns] = []
        self._cleanups: list[Callable[[], object]] = []
        self._closed = False
        _registry.add_lab(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def netns(self, prefix: str = NAME_PREFIX, *, dad: bool | None = None) -> Netns:
        """Create a namespace owned by this lab."""
        if self._closed:
            raise RuntimeError("lab is closed")
        ns = Netns(prefix, dad=self.dad if dad is None else dad)
        self.namespaces.append(ns)
        return ns

    def veth(
        self,
        ns_a: Netns,
        if_a: str,
        ns_b: Netns,
        if_b: str,
        mac_a: str | None = None,
        mac_b: str | None = None,
    ) -> None:
        """Join two namespaces with a veth pair; see :func:`veth`."""
        veth(ns_a, if_a, ns_b, if_b, mac_a=mac_a, mac_b=mac_b)

    def spawn(
        self,
        ns: Netns,
        argv: Sequence[str | os.PathLike[str]],
        log_path: str | os.PathLike[str],
        *,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        """Start *argv* in *ns*; it is ended by :meth:`close`."""
        return ns.popen(argv, log_path, env=env)

    def add_cleanup(self, callback: Callable[[], object]) -> None:
        """Run *callback* at :meth:`close`, before processes are stopped."""
        self._cleanups.append(callback)

    @property
    def closed(self) -> bool:
        """Tell whether :meth:`close` has run."""
        return self._closed

    def close(self) -> None:
        """Tear everything down: cleanups, processes, then namespaces."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []

        def attempt(fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as e:  # keep tearing down
                errors.append(e)

        while self._cleanups:
            attempt(self._cleanups.pop())
        for ns in reversed(self.namespaces):
            attempt(ns.stop_processes)
        for ns in reversed(self.namespaces):
            attempt(ns.delete)
        _registry.discard_lab(self)
        if errors:
            raise errors[0]


class _Registry:
    """Labs and namespaces still open, for the :mod:`atexit` safety net."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labs: dict[int, Lab] = {}
        self._netns: dict[str, Netns] = {}

    def add_lab(self, lab: Lab) -> None:
        with self._lock:
            self._labs[id(lab)] = lab

    def discard_lab(self, lab: Lab) -> None:
        with self._lock:
            self._labs.pop(id(lab), None)

    def add_netns(self, ns: Netns) -> None:
        with self._lock:
            self._netns[ns.name] = ns

    def discard_netns(self, ns: Netns) -> None:
        with self._lock:
            self._netns.pop(ns.name, None)

    def open_namespaces(self) -> list[str]:
        """Names of the namespaces this process made and has not deleted."""
        with self._lock:
            return list(self._netns)

    def close_all(self) -> None:
        with self._lock:
            labs = list(self._labs.values())
            namespaces = list(self._netns.values())
        for lab in labs:
            with contextlib.suppress(Exception):
                lab.close()
        for ns in namespaces:
            with contextlib.suppress(Exception):
                ns.delete()


_registry = _Registry()


def close_all() -> None:
    """Close every lab and delete every namespace this process left open."""
    _registry.close_all()


def open_namespaces() -> list[str]:
    """Return the names of namespaces made here and not yet deleted."""
    return _registry.open_namespaces()


atexit.register(close_all)
