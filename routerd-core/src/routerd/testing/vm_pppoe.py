"""Real PPPoE peers inside the test VM: rp-pppoe's ``pppoe-server`` and ``pppd``.

A :class:`VMPppoeLab` makes two network namespaces in a
:class:`~routerd.testing.vm.QemuVM`, ``ac-<tag>`` and ``cl-<tag>``, joined by a
veth pair ``ac0`` ↔ ``wan0``. In the first runs the access concentrator
(:class:`PppoeServer`: ``pppoe-server`` 3.15, which starts one ``pppd`` 2.4.9
per session); in the second the client under test: ``pppd`` with the
``rp-pppoe.so`` plugin (:class:`PppdClient`, the C anchor of the benchmark),
or routerd's own daemon started with :meth:`VMPppoeLab.spawn_client`::

    lab = VMPppoeLab(vm)
    ac = lab.start_ac(auth="chap", accounts={"alice": "s3cret"})
    client = lab.start_pppd("alice", "s3cret")
    up = client.wait_up()              # IpUp(interface="ppp0", local=..., ...)
    lab.vm.run(["ping", "-c1", "-W2", up.remote], netns=lab.client_ns)
    lab.close()                        # every process by PID, then the namespaces

Quirks of the Debian 12 versions handled here:

- Every ``pppd`` reads ``/etc/ppp/options`` first, and Debian's has ``auth``
  (a client would demand that the AC authenticate itself) and ``modem``,
  ``crtscts``, ``lock``. The lab replaces that file with an empty one; it can,
  because the VM's ``/etc`` is a tmpfs overlay on the host's.
- ``pppd`` 2.4.9 has no option naming the secrets files: the AC's ``pppd``
  reads ``/etc/ppp/pap-secrets`` and ``chap-secrets``, which the lab writes
  (mode 0600) in the VM. The client gets its password from an options file
  (mode 0600, ``password``), never from argv.
- Debian's ``pppoe-server`` has no kernel mode (``-k``): each session's
  ``pppd`` talks PPPoE through the user-space ``pppoe`` program on a pty.
- ``pppoe-server`` logs only to syslog, which the VM does not run: readiness
  is its packet socket for ethertype 0x8863 appearing in the AC namespace
  (``/proc/net/packet``), and sessions are seen in the AC ``pppd`` log.
- Exit codes of ``pppd`` (``man pppd``): 19 is "we failed to authenticate
  ourselves to the peer" (PEER_AUTH_FAILED in routerd's taxonomy), 10 a failed
  negotiation, 16 "the link was terminated by the modem hanging up", 15 the
  peer not answering echoes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import json
import re
import secrets
import signal
import time
from typing import Any
from typing import Literal

from routerd.testing.vm import QemuVM
from routerd.testing.vm import VMProcess

__all__ = [
    "PPPD_EXIT_NEGOTIATION_FAILED",
    "PPPD_EXIT_PEER_AUTH_FAILED",
    "IpUp",
    "PacketCapture",
    "PppdClient",
    "PppoeServer",
    "VMPppoeLab",
    "measure_pppd_session_up",
]

#: ``pppd`` exit status: "We failed to authenticate ourselves to the peer".
PPPD_EXIT_PEER_AUTH_FAILED = 19
#: ``pppd`` exit status: "The PPP negotiation failed".
PPPD_EXIT_NEGOTIATION_FAILED = 10

_ETH_P_PPP_DISC = 0x8863
_DEBIAN_SCRIPTS = ("ip-pre-up", "ip-up", "ip-down", "ipv6-up", "ipv6-down")
AuthMethod = Literal["pap", "chap"]

# The script pppd runs when IPCP is up; arguments per pppd(8): interface,
# tty, speed, local address, remote address, ipparam. DNS1/DNS2 are set in
# its environment with usepeerdns.
_IP_UP = """#!/bin/sh
echo "$(date +%s.%N) $1 $4 $5 ${{DNS1:--}} ${{DNS2:--}}" >> {out}
"""


@dataclass(frozen=True)
class IpUp:
    """One run of a ``pppd`` ip-up script: the session's network layer is up.

    :ivar time: the VM's wall clock when the script ran.
    :ivar dns: the DNS servers from IPCP (RFC 1877), when ``usepeerdns``.
    """

    time: float
    interface: str
    local: str
    remote: str
    dns: tuple[str, ...]

    @classmethod
    def parse(cls, line: str) -> IpUp:
        """Parse a line written by the lab's ip-up script."""
        ts, interface, local, remote, *dns = line.split()
        return cls(float(ts), interface, local, remote, tuple(d for d in dns if d != "-"))


def _wait(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(interval)


class VMPppoeLab:
    """Namespaces ``ac-<tag>`` and ``cl-<tag>`` in *vm*, joined by ``ac0`` ↔ ``wan0``.

    Everything started through the lab ends at :meth:`close`: its processes
    by PID, then whatever else is left in its namespaces (``ip netns pids``)
    by PID, then the namespaces. Files go under :attr:`dir` in the VM.

    With ``host_client=True`` (the VM booted with ``host_netns``) there is no
    client namespace in the VM: the VM's NIC becomes the AC's ``ac0``, and the
    client runs on the host, in :attr:`QemuVM.host_netns` on the tap
    :attr:`QemuVM.NIC_TAP` (:attr:`client_if`). When the lab's AC namespace is
    deleted the NIC, a physical device, returns to the VM's root namespace
    for the next lab.

    :param vm: a booted VM.
    :param client_mac: MAC address of ``wan0`` (random when ``None``).
    :param host_client: put the client side on the host (see above).
    """

    ac_if = "ac0"
    client_if = "wan0"

    def __init__(
        self, vm: QemuVM, *, client_mac: str | None = None, host_client: bool = False
    ) -> None:
        self.vm = vm
        self.tag = secrets.token_hex(3)
        self.ac_ns = f"ac-{self.tag}"
        self.client_ns = f"cl-{self.tag}"
        self.host_client = host_client
        self.dir = f"/tmp/pppoe-{self.tag}"
        self.processes: list[VMProcess] = []
        self._closed = False
        self._nic: str | None = None
        if host_client:
            if vm.host_netns is None:
                raise ValueError("host_client=True needs a VM booted with host_netns")
            self.client_if = vm.NIC_TAP
        mac = f" address {client_mac}" if client_mac else ""
        try:
            if host_client:
                nics: list[str] = []

                def nic_home() -> bool:
                    links = json.loads(vm.run(["ip", "-j", "link"]).stdout)
                    nics[:] = [x["ifname"] for x in links if x.get("address") == vm.nic_mac]
                    return bool(nics)

                # A previous host lab's namespace hands the NIC back
                # asynchronously (the kernel's netns clean-up runs later).
                try:
                    _wait(nic_home, 5.0, f"NIC {vm.nic_mac} in the VM's root namespace")
                except TimeoutError as e:
                    raise RuntimeError(str(e)) from None
                self._nic = nics[0]
                vm.sh(
                    f"set -e; mkdir -p {self.dir}\n"
                    f"ip netns add {self.ac_ns}; ip -n {self.ac_ns} link set lo up\n"
                    f"ip link set {nics[0]} netns {self.ac_ns}\n"
                    f"ip -n {self.ac_ns} link set {nics[0]} name {self.ac_if}\n"
                    f"ip -n {self.ac_ns} link set {self.ac_if} up\n"
                )
            else:
                vm.sh(
                    f"set -e; mkdir -p {self.dir}\n"
                    f"ip netns add {self.ac_ns}; ip netns add {self.client_ns}\n"
                    f"ip link add {self.ac_if} netns {self.ac_ns} type veth "
                    f"peer name {self.client_if}{mac} netns {self.client_ns}\n"
                    f"for ns in {self.ac_ns} {self.client_ns}; do ip -n $ns link set lo up; done\n"
                    f"ip -n {self.ac_ns} link set {self.ac_if} up\n"
                    f"ip -n {self.client_ns} link set {self.client_if} up\n"
                )
            # Debian's defaults (auth, modem, crtscts, lock) must not apply:
            # each pppd here gets all its options from the lab.
            vm.write_file("/etc/ppp/options", "# routerd test VM: no global options\n", 0o644)
            # pppd runs ip-pre-up before ip-up and waits for it; Debian's
            # run-parts scripts cost most of a second in the VM and would be
            # counted in the session set-up time. pppd skips missing scripts.
            vm.run(["rm", "-f", *(f"/etc/ppp/{s}" for s in _DEBIAN_SCRIPTS)])
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> VMPppoeLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, name: str) -> str:
        """Return the VM path of file *name* in the lab's directory."""
        return f"{self.dir}/{name}"

    def spawn(self, argv: Sequence[str], log: str, *, netns: str, **kw: Any) -> VMProcess:
        """Start *argv* in one of the lab's namespaces; it is stopped at :meth:`close`."""
        proc = self.vm.spawn(argv, log, netns=netns, **kw)
        self.processes.append(proc)
        return proc

    def spawn_client(
        self, argv: Sequence[str], log: str, *, env: dict[str, str] | None = None
    ) -> VMProcess:
        """Start a client under test (for example ``routerd daemon pppoe-client``)
        in the client namespace, where ``wan0`` faces the AC."""
        return self.spawn(argv, log, netns=self.client_ns, env=env)

    def start_ac(self, **kw: Any) -> PppoeServer:
        """Start a :class:`PppoeServer` in the AC namespace; see its parameters."""
        return PppoeServer(self, **kw).start()

    def start_pppd(self, user: str, password: str, **kw: Any) -> PppdClient:
        """Start a :class:`PppdClient` in the client namespace; see its parameters."""
        return PppdClient(self, user, password, **kw).start()

    def capture(self) -> PacketCapture:
        """Start a :class:`PacketCapture` of PPPoE frames on the AC's ``ac0``."""
        return PacketCapture(self).start()

    def netns_pids(self, ns: str) -> list[int]:
        """Return the PIDs of the processes in namespace *ns*."""
        res = self.vm.run(["ip", "netns", "pids", ns], check=False)
        return [int(p) for p in res.stdout.split() if p.isdigit()]

    def close(self) -> None:
        """End the lab's processes by PID, then the namespaces; idempotent."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as e:
                errors.append(e)
        # pppoe-server's session children (pppd, pppoe) are not ours: by PID.
        for ns in (self.ac_ns, *(() if self.host_client else (self.client_ns,))):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                pids = self.netns_pids(ns)
                for pid in pids:
                    self.vm.call("signal", pid=pid, sig=int(sig))
                try:
                    _wait(lambda ns=ns: not self.netns_pids(ns), 5.0, f"processes in {ns} ending")
                    break
                except TimeoutError as e:
                    if sig == signal.SIGKILL:
                        errors.append(e)
        if self._nic is not None:
            # The NIC returns to the root namespace under the name it has when
            # the namespace goes: give it back its own, or the next lab's
            # "ip link add ac0 ..." finds an ac0 there (EEXIST).
            # (Down first: the kernel renames before it applies flags, EBUSY when up.)
            for change in (["down"], ["name", self._nic]):
                self.vm.run(
                    ["ip", "-n", self.ac_ns, "link", "set", self.ac_if, *change], check=False
                )
        self.vm.run(["ip", "netns", "del", self.ac_ns], check=False)
        if not self.host_client:
            self.vm.run(["ip", "netns", "del", self.client_ns], check=False)
        self.vm.run(["rm", "-rf", self.dir], check=False)
        if errors:
            raise errors[0]


class PppoeServer:
    """``pppoe-server`` in the lab's AC namespace, authenticating with PAP or CHAP.

    :param lab: the lab.
    :param auth: what the AC's ``pppd`` requires: ``require-pap`` or ``require-chap``.
    :param accounts: user → password, written to ``/etc/ppp/{pap,chap}-secrets``.
    :param local: the AC's address on each session.
    :param remote_start: the first address of the pool handed to clients.
    :param sessions: how many sessions at once (``-N``).
    :param ac_name: the AC-Name tag (``-C``).
    :param service_name: a Service-Name to advertise (``-S``), if any.
    :param dns: RFC 1877 DNS servers offered (``ms-dns``), at most two.
    :param lcp_echo_interval: seconds between the AC's LCP echoes (0: none).
    :param extra_options: more ``pppd`` options for the AC's sessions.
    """

    def __init__(
        self,
        lab: VMPppoeLab,
        *,
        auth: AuthMethod = "pap",
        accounts: dict[str, str] | None = None,
        local: str = "10.64.0.1",
        remote_start: str = "10.64.0.100",
        sessions: int = 4,
        ac_name: str = "routerd-test-ac",
        service_name: str | None = None,
        dns: Sequence[str] = ("10.64.0.53", "10.64.0.54"),
        lcp_echo_interval: int = 0,
        extra_options: Sequence[str] = (),
    ) -> None:
        self.lab = lab
        self.auth = auth
        self.accounts = dict(accounts if accounts is not None else {"alice": "secret"})
        self.local = local
        self.remote_start = remote_start
        self.sessions = sessions
        self.ac_name = ac_name
        self.service_name = service_name
        self.dns = tuple(dns)
        self.lcp_echo_interval = lcp_echo_interval
        self.extra_options = tuple(extra_options)
        self.options_path = lab.path("ac-options")
        #: The AC's pppd log: every session appends to it.
        self.pppd_log = lab.path("ac-pppd.log")
        self.log = lab.path("pppoe-server.log")
        #: The AC's ip-up record, one :class:`IpUp` line per session.
        self.ip_up_out = lab.path("ac-ip-up.out")
        self.process: VMProcess | None = None

    def options(self) -> list[str]:
        """Return the options every session's ``pppd`` gets (``-O``)."""
        opts = [
            f"require-{self.auth}",
            "debug",
            f"logfile {self.pppd_log}",
            f"ip-up-script {self.lab.path('ac-ip-up')}",
            "nodefaultroute",
            "noproxyarp",
        ]
        opts += [f"ms-dns {d}" for d in self.dns]
        if self.lcp_echo_interval:
            opts += [f"lcp-echo-interval {self.lcp_echo_interval}", "lcp-echo-failure 3"]
        opts += self.extra_options
        return opts

    def argv(self) -> list[str]:
        """Return ``pppoe-server``'s command line (foreground, ``-F``)."""
        args = [
            "pppoe-server",
            "-F",
            "-I",
            self.lab.ac_if,
            "-L",
            self.local,
            "-R",
            self.remote_start,
            "-N",
            str(self.sessions),
            "-C",
            self.ac_name,
            "-O",
            self.options_path,
        ]
        if self.service_name is not None:
            args += ["-S", self.service_name]
        return args

    def write_secrets(self) -> None:
        """Write the accounts to both secrets files (the AC's pppd reads one)."""
        lines = "".join(f"{_quote(user)} * {_quote(pw)} *\n" for user, pw in self.accounts.items())
        for name in ("pap-secrets", "chap-secrets"):
            self.lab.vm.write_file(f"/etc/ppp/{name}", lines, 0o600)

    def start(self, timeout: float = 20.0) -> PppoeServer:
        """Write the files, start ``pppoe-server``, wait for its discovery socket."""
        vm = self.lab.vm
        self.write_secrets()
        vm.write_file(self.options_path, "\n".join(self.options()) + "\n", 0o600)
        vm.write_file(self.lab.path("ac-ip-up"), _IP_UP.format(out=self.ip_up_out), 0o755)
        self.process = self.lab.spawn(self.argv(), self.log, netns=self.lab.ac_ns)
        _wait(self._listening, timeout, f"{self.process!r} listening on {self.lab.ac_if}")
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise RuntimeError(
                f"{self.process!r} exited with {self.process.returncode}: "
                f"{self.process.log_text()[-2000:]}"
            )
        text = self.lab.vm.run(["cat", "/proc/net/packet"], netns=self.lab.ac_ns).stdout
        # Columns: sk RefCnt Type Proto Iface R Rmem User Inode (Proto in hex).
        return any(
            len(f) > 3 and f[3].lower() == f"{_ETH_P_PPP_DISC:x}"
            for f in (line.split() for line in text.splitlines()[1:])
        )

    def pppd_log_text(self) -> str:
        """Return the AC's ``pppd`` log (all sessions)."""
        return self.lab.vm.read_file(self.pppd_log).decode("utf-8", "replace")

    def ip_ups(self) -> list[IpUp]:
        """Return the AC-side ip-up records, one per session that came up."""
        text = self.lab.vm.read_file(self.ip_up_out).decode()
        return [IpUp.parse(line) for line in text.splitlines() if line.strip()]

    def stop(self) -> int | None:
        """Stop ``pppoe-server`` by PID (its sessions end with it)."""
        return None if self.process is None else self.process.stop()


class PppdClient:
    """``pppd`` with the ``rp-pppoe.so`` plugin on the lab's ``wan0``.

    The password goes into the options file (mode 0600), never into argv.

    :param lab: the lab.
    :param user: the account name.
    :param password: its password.
    :param usepeerdns: ask for RFC 1877 DNS servers.
    :param ac_name: only accept this AC (``rp_pppoe_ac``).
    :param service_name: ask for this Service-Name (``rp_pppoe_service``).
    :param extra_options: more ``pppd`` options.
    """

    def __init__(
        self,
        lab: VMPppoeLab,
        user: str,
        password: str,
        *,
        usepeerdns: bool = True,
        ac_name: str | None = None,
        service_name: str | None = None,
        extra_options: Sequence[str] = (),
    ) -> None:
        self.lab = lab
        self.user = user
        self.password = password
        self.usepeerdns = usepeerdns
        self.ac_name = ac_name
        self.service_name = service_name
        self.extra_options = tuple(extra_options)
        tag = secrets.token_hex(2)
        self.options_path = lab.path(f"client-{tag}.options")
        self.log = lab.path(f"client-{tag}.log")
        self.ip_up_out = lab.path(f"client-{tag}-ip-up.out")
        self._ip_up = lab.path(f"client-{tag}-ip-up")
        self.process: VMProcess | None = None

    def options(self) -> list[str]:
        """Return the options file's lines (the password among them)."""
        opts = [
            "plugin rp-pppoe.so",
            f"nic-{self.lab.client_if}",
            f"user {_quote(self.user)}",
            f"password {_quote(self.password)}",
            # The AC does not authenticate itself to its clients.
            "noauth",
            "noipdefault",
            "defaultroute",
            "nodetach",
            "maxfail 1",
            "debug",
            f"logfile {self.log}",
            f"ip-up-script {self._ip_up}",
            "ipparam routerd-test",
        ]
        if self.usepeerdns:
            opts.append("usepeerdns")
        if self.ac_name is not None:
            opts.append(f"rp_pppoe_ac {_quote(self.ac_name)}")
        if self.service_name is not None:
            opts.append(f"rp_pppoe_service {_quote(self.service_name)}")
        opts += self.extra_options
        return opts

    def start(self) -> PppdClient:
        """Write the options and ip-up script, and start ``pppd``."""
        vm = self.lab.vm
        vm.write_file(self.options_path, "\n".join(self.options()) + "\n", 0o600)
        vm.write_file(self._ip_up, _IP_UP.format(out=self.ip_up_out), 0o755)
        self.process = self.lab.spawn(
            ["pppd", "file", self.options_path],
            self.lab.path(f"{self.log}.out"),
            netns=self.lab.client_ns,
        )
        return self

    def ip_ups(self) -> list[IpUp]:
        """Return every ip-up record so far (several after redials)."""
        text = self.lab.vm.read_file(self.ip_up_out).decode()
        return [IpUp.parse(line) for line in text.splitlines() if line.strip()]

    def log_text(self) -> str:
        """Return ``pppd``'s log (``logfile``)."""
        return self.lab.vm.read_file(self.log).decode("utf-8", "replace")

    def wait_up(self, timeout: float = 30.0) -> IpUp:
        """Wait until IPCP is up (the ip-up script ran); return its record.

        :raises RuntimeError: ``pppd`` exited first (the message has its log).
        :raises TimeoutError: not up in time.
        """
        assert self.process is not None
        found: list[IpUp] = []

        def up() -> bool:
            found.extend(self.ip_ups())
            if found:
                return True
            if not self.process or not self.process.alive():
                raise RuntimeError(
                    f"pppd exited with {self.process.returncode if self.process else None} "
                    f"before IPCP was up; log tail:\n{self.log_text()[-3000:]}"
                )
            return False

        try:
            _wait(up, timeout, "pppd's IPCP up")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; log tail:\n{self.log_text()[-3000:]}") from None
        return found[0]

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for ``pppd`` to exit on its own; return its exit status."""
        assert self.process is not None
        return self.process.wait(timeout)

    @property
    def process_started(self) -> float:
        """The VM's wall clock when ``pppd`` was started."""
        assert self.process is not None
        return self.process.started

    def seconds_to_up(self, up: IpUp) -> float:
        """Seconds from ``pppd``'s start (the agent's fork) to *up*."""
        assert self.process is not None
        return up.time - self.process.started

    def stop(self) -> int | None:
        """Stop ``pppd`` by PID (it sends LCP Terminate-Request and PADT)."""
        return None if self.process is None else self.process.stop(10.0)


class PacketCapture:
    """``tcpdump`` of PPPoE frames on the AC's interface, with VM timestamps.

    Gives client-neutral timings: :meth:`padi_times` is when each PADI
    reached the AC, which the benchmark compares with when the client said
    it was up (``pppd``'s ip-up, routerd's ``Up`` event).
    """

    def __init__(self, lab: VMPppoeLab) -> None:
        self.lab = lab
        self.log = lab.path(f"capture-{secrets.token_hex(2)}.txt")
        self.process: VMProcess | None = None

    def start(self, timeout: float = 20.0) -> PacketCapture:
        """Start ``tcpdump`` and wait until it captures."""
        self.process = self.lab.spawn(
            [
                "tcpdump",
                "-i",
                self.lab.ac_if,
                "-n",
                "-e",
                "-l",
                "-tt",
                "--immediate-mode",
                "ether proto 0x8863 or ether proto 0x8864",
            ],
            self.log,
            netns=self.lab.ac_ns,
        )
        self.process.wait_for_log("listening on", timeout)
        return self

    def lines(self) -> list[str]:
        """Return the captured lines so far."""
        assert self.process is not None
        return self.process.log_text().splitlines()

    def times(self, pattern: str) -> list[float]:
        """Return the timestamps of captured frames matching *pattern* (a regex)."""
        rx = re.compile(pattern)
        out = []
        for line in self.lines():
            head, _, _ = line.partition(" ")
            if rx.search(line) and re.fullmatch(r"\d+\.\d+", head):
                out.append(float(head))
        return out

    def padi_times(self) -> list[float]:
        """Return when each PADI was captured."""
        return self.times(r"\bPADI\b")

    def ipcp_ack_times(self) -> list[float]:
        """Return when each IPCP Configure-Ack was captured (either direction).

        IPCP is up on both sides at the later of the two Acks of one
        exchange: a client-neutral "network layer up" time.
        """
        return self.times(r"IPCP \(0x8021\).*Conf-Ack")

    def padt_times(self) -> list[float]:
        """Return when each PADT was captured."""
        return self.times(r"\bPADT\b")

    def stop(self) -> None:
        """Stop ``tcpdump`` by PID."""
        if self.process is not None:
            self.process.stop()


def _quote(value: str) -> str:
    """Quote *value* for a pppd options or secrets file (double quotes, escapes)."""
    if re.search(r"[\x00-\x1f]", value):
        raise ValueError("control characters cannot be written to pppd files")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def measure_pppd_session_up(
    vm: QemuVM,
    *,
    runs: int = 3,
    auth: AuthMethod = "chap",
    timeout: float = 30.0,
) -> list[dict[str, float]]:
    """Measure ``pppd`` + ``rp-pppoe.so``'s session set-up against ``pppoe-server``.

    For the benchmark's C anchor: one AC, then *runs* client sessions one
    after another, each stopped (Terminate + PADT) before the next starts.

    :returns: one dict per run: ``padi_to_up`` (the first PADI captured at
        the AC to the client's ip-up, both on the VM's clock),
        ``padi_to_ipcp`` (that PADI to the last IPCP Configure-Ack before
        ip-up, the same measure any client gets) and ``start_to_up``
        (``pppd``'s fork to ip-up).
    """
    results: list[dict[str, float]] = []
    with VMPppoeLab(vm) as lab:
        lab.start_ac(auth=auth, accounts={"bench": "bench-password"})
        capture = lab.capture()
        for _ in range(runs):
            client = lab.start_pppd("bench", "bench-password")
            up = client.wait_up(timeout)
            padis = [t for t in capture.padi_times() if t >= client.process_started]
            acks = [t for t in capture.ipcp_ack_times() if t <= up.time]
            if not padis or not acks:
                raise RuntimeError(f"capture missed the session: {capture.lines()[-20:]}")
            results.append(
                {
                    "padi_to_up": up.time - padis[0],
                    "padi_to_ipcp": acks[-1] - padis[0],
                    "start_to_up": client.seconds_to_up(up),
                }
            )
            client.stop()
    return results
