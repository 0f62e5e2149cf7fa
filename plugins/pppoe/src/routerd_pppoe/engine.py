"""The pppoe-client daemon's engine: glue between the sans-I/O core, the
packet sockets, the data-plane backend, netlink and the daemon's status and
events.

After every input (a frame, a timer, a command, a link change) the engine
*pumps*: it executes the core's outputs in order (discovery frames, PPP
control frames through the backend, events that open and close the backend
and apply or remove host state), re-arms the timer at
``core.next_deadline()``, saves the state file when the session changed and
publishes status. Everything runs on the engine thread; sockets, the backend
and netlink handles are made there.

The password is read from ``passwordFile`` at start and on reload, and
registered with the daemon's secret scrubber before anything can show it.
"""

from __future__ import annotations

from concurrent.futures import Future
import contextlib
import dataclasses
import functools
import math
import random
import select
from typing import Any

from routerd.config import SpecModel
from routerd.daemon.engine import CommandOutcome
from routerd.daemon.engine import DaemonContext
from routerd.daemon.engine import DaemonEngine
from routerd.daemon.loop import TimerHandle
from routerd.errors import CommandRejected
from routerd.errors import UnknownCommand
from routerd.model import Scalar
from routerd.model import Severity
from routerd.netapply import LinkState
from routerd.netapply import LinkWatcher
from routerd.packetstats import DropCounter
from routerd.timefmt import rfc3339

from routerd_pppoe import timing
from routerd_pppoe.apply import HostConfig
from routerd_pppoe.apply import PppApplier
from routerd_pppoe.apply import desired_config
from routerd_pppoe.apply import remove_dns_file
from routerd_pppoe.backend import BackendError
from routerd_pppoe.backend import DataPlane
from routerd_pppoe.backend import SessionParams
from routerd_pppoe.backend import choose
from routerd_pppoe.backend import open_backend
from routerd_pppoe.backend import ppp_ifname
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.codec import mac_to_str
from routerd_pppoe.codec import parse_mac
from routerd_pppoe.core import ClientConfig
from routerd_pppoe.core import PPPoEClientCore
from routerd_pppoe.core import SendDiscovery
from routerd_pppoe.core import SendPpp
from routerd_pppoe.core import State
from routerd_pppoe.events import AuthFailed
from routerd_pppoe.events import AuthSucceeded
from routerd_pppoe.events import CoreEvent
from routerd_pppoe.events import DiscoveryError
from routerd_pppoe.events import EchoReply
from routerd_pppoe.events import EchoTimeout
from routerd_pppoe.events import ExitReason
from routerd_pppoe.events import Ipv6Up
from routerd_pppoe.events import NetworkDown
from routerd_pppoe.events import NetworkUp
from routerd_pppoe.events import OfferIgnored
from routerd_pppoe.events import RedialScheduled
from routerd_pppoe.events import RedialStopped
from routerd_pppoe.events import SessionEnded
from routerd_pppoe.events import SessionEstablished
from routerd_pppoe.events import SessionFailed
from routerd_pppoe.events import StaleSessionClosed
from routerd_pppoe.events import StateChanged
from routerd_pppoe.kernel import kernel_ppp_available
from routerd_pppoe.pppcodec import split_protocol
from routerd_pppoe.spec import PasswordFileError
from routerd_pppoe.spec import PPPoESessionSpec
from routerd_pppoe.spec import read_password
from routerd_pppoe.transport import DiscoverySocket
from routerd_pppoe.transport import SessionSocket

TOPIC_UP = "routerd.pppoe.client.session.up"
TOPIC_DOWN = "routerd.pppoe.client.session.down"
TOPIC_FAILED = "routerd.pppoe.client.session.failed"
TOPIC_ESTABLISHED = "routerd.pppoe.client.session.established"
TOPIC_AUTH_FAILED = "routerd.pppoe.client.auth.failed"
TOPIC_AUTH_OK = "routerd.pppoe.client.auth.succeeded"
TOPIC_ECHO_TIMEOUT = "routerd.pppoe.client.echo.timeout"
TOPIC_REDIAL = "routerd.pppoe.client.redial.scheduled"
TOPIC_REDIAL_STOPPED = "routerd.pppoe.client.redial.stopped"
TOPIC_DISCOVERY_ERROR = "routerd.pppoe.client.discovery.error"
TOPIC_OFFER_IGNORED = "routerd.pppoe.client.offer.ignored"
TOPIC_STALE = "routerd.pppoe.client.stale.closed"
TOPIC_IPV6_UP = "routerd.pppoe.client.ipv6.up"
TOPIC_NETWORK_DOWN = "routerd.pppoe.client.network.down"
TOPIC_STATE = "routerd.pppoe.client.state.changed"
TOPIC_LINK_DOWN = "routerd.pppoe.client.link.down"
TOPIC_LINK_UP = "routerd.pppoe.client.link.up"
TOPIC_APPLY_FAILED = "routerd.pppoe.client.apply.failed"
TOPIC_BACKEND_FAILED = "routerd.pppoe.client.backend.failed"
#: Every topic this plugin emits (checked against docs/events.md by a test).
TOPICS = (
    TOPIC_UP,
    TOPIC_DOWN,
    TOPIC_FAILED,
    TOPIC_ESTABLISHED,
    TOPIC_AUTH_FAILED,
    TOPIC_AUTH_OK,
    TOPIC_ECHO_TIMEOUT,
    TOPIC_REDIAL,
    TOPIC_REDIAL_STOPPED,
    TOPIC_DISCOVERY_ERROR,
    TOPIC_OFFER_IGNORED,
    TOPIC_STALE,
    TOPIC_IPV6_UP,
    TOPIC_NETWORK_DOWN,
    TOPIC_STATE,
    TOPIC_LINK_DOWN,
    TOPIC_LINK_UP,
    TOPIC_APPLY_FAILED,
    TOPIC_BACKEND_FAILED,
)
#: Debug events: at most this many per window (a flood of PADOs must not
#: flood the event log; the counters count everything).
DEBUG_EVENT_BUDGET = 100
DEBUG_EVENT_WINDOW = 10.0
_STATE_VERSION = 1
#: Exit reasons that put the resource in ``Error`` until a session comes up.
_ERROR_EXITS = {
    ExitReason.PEER_AUTH_FAILED: "AuthFailed",
    ExitReason.CONNECT_FAILED: "NoAccessConcentrator",
    ExitReason.NEGOTIATION_FAILED: "NegotiationFailed",
    ExitReason.LOOPBACK: "LoopedBack",
}
_DIALING = (State.DISCOVERY, State.REQUEST)
_NEGOTIATING = (State.ESTABLISH, State.AUTHENTICATE, State.NETWORK)
#: How long ``renew`` waits for the Echo-Reply it asked for.
RENEW_ECHO_WAIT = 3.0


class PPPoEClientEngine(DaemonEngine):
    """One PPPoE client on one Ethernet interface (engine thread only)."""

    def __init__(self, ctx: DaemonContext) -> None:
        assert isinstance(ctx.spec, PPPoESessionSpec)
        self.ctx = ctx
        self.spec: PPPoESessionSpec = ctx.spec
        self.loop = ctx.loop
        self.rng = random.SystemRandom()
        self.ppp_ifname = ppp_ifname(ctx.resource.name)
        self.core: PPPoEClientCore | None = None
        self.password: bytes | None = None
        self.password_error: str | None = None
        self.applier: PppApplier | None = None
        self.watcher: LinkWatcher | None = None
        self.link = LinkState(self.spec.interface, None, False)
        self.mac: bytes | None = None
        self.disc: DiscoverySocket | None = None
        self.kernel_drops = DropCounter()
        self.socket_error: str | None = None
        self.backend: DataPlane | None = None
        self.early: SessionSocket | None = None
        self.backend_kind: str | None = None
        self.backend_error: str | None = None
        self.foreign_ppp = False
        self.timer: TimerHandle | None = None
        self.timer_at: float | None = None
        self.stale: tuple[int, bytes] | None = None
        self.applied = HostConfig()
        self.apply_errors: list[str] = []
        self.network: NetworkUp | None = None
        self.ipv6_local: str | None = None
        self.ipv6_peer: str | None = None
        self.session: SessionEstablished | None = None
        self.connected_since: float | None = None
        self.last_setup: float | None = None
        self.last_rtt: float | None = None
        self.auth_method: str | None = None
        self.auth_error: str | None = None
        self.echo_waiters: list[Future[CommandOutcome]] = []
        self.stopped = False
        self.last_error: str | None = None
        self.frame_drops: dict[str, int] = {}
        self.traffic: dict[str, int] = {}
        self.debug_budget = DEBUG_EVENT_BUDGET
        self.debug_window = 0.0
        self.debug_suppressed = 0

    # -- clocks ------------------------------------------------------------------
    def now(self) -> float:
        return self.loop.clock()

    def mono_to_wall(self, mono: float) -> float:
        return self.ctx.wall() - (self.loop.clock() - mono)

    def _iso(self, mono: float | None) -> str | None:
        return None if mono is None or math.isinf(mono) else rfc3339(self.mono_to_wall(mono))

    # -- lifecycle ----------------------------------------------------------------
    def start(self, ctx: DaemonContext) -> None:
        self._load_password()
        self._restore()
        self.applier = PppApplier()
        # A DNS file left by a run that ended without removing it (SIGKILL):
        # its session is gone, so are its servers.
        if self.applied.dns_file is not None and remove_dns_file(self.applied.dns_file) is None:
            self.applied = HostConfig()
        self._choose_backend()
        self.watcher = LinkWatcher({self.spec.interface, self.ppp_ifname})
        self.loop.add_reader(self.watcher.fileno(), self._on_link_readable)
        self._check_link()
        self._publish()

    def _refresh_password(self) -> None:
        """Re-read the password at each dial, as pppd reads its secrets at each
        authentication: a rotated password needs no restart and no reload.
        The Ethernet MTU is looked at again too (it bounds RFC 4638)."""
        core = self.core
        if core is None or self.password is None:
            return
        mtu = self._session_mtu()
        if core.config.mtu != mtu:
            core.config = dataclasses.replace(core.config, mtu=mtu)
        try:
            password = read_password(self.spec.password_file)
        except PasswordFileError as exc:
            # Keep dialing with the password we have; say why it was not re-read.
            self.last_error = (
                f"{exc.args[-1] if exc.args else exc} (using the password read before)"
            )
            self.ctx.log.warning("%s", self.last_error)
            return
        if password != self.password:
            self.ctx.add_secret(password.decode("utf-8", "replace"))
            self.password = password
            core.config = dataclasses.replace(core.config, password=password)

    def _load_password(self) -> None:
        try:
            password = read_password(self.spec.password_file)
        except PasswordFileError as exc:
            self.password_error = str(exc.args[-1] if exc.args else exc)
            self.ctx.log.error("%s", self.password_error)
            return
        # Before anything can show it (status, events, logs, errors).
        self.ctx.add_secret(password.decode("utf-8", "replace"))
        self.password = password
        self.password_error = None

    def _choose_backend(self) -> None:
        requested = self.spec.backend
        if requested == "kernel":
            why = kernel_ppp_available()
            if why is not None:
                self.backend_error = f"backend kernel is not available: {why}"
        self.backend_kind = choose(requested)

    def stop(self) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
        core = self.core
        if core is not None:
            now = self.now()
            if core.stop(now):
                self._pump(publish=False)
                self._wait_terminate_ack()
            core.finish_stop(self.now())
            self._pump(publish=False)
        for waiter in self.echo_waiters:
            if not waiter.done():
                waiter.set_exception(CommandRejected("stopping"))
        self._close_backend()
        self._close_early()
        self.applied, _ = self._withdraw()
        self._save()
        self._close_discovery()
        if self.watcher is not None:
            self.loop.remove_reader(self.watcher.fileno())
            self.watcher.close()
            self.watcher = None
        if self.applier is not None:
            with contextlib.suppress(Exception):
                self.applier.close()
            self.applier = None

    def _wait_terminate_ack(self) -> None:
        """Read the backend for the peer's Terminate-Ack, at most ``STOP_ACK_WAIT``."""
        deadline = self.now() + timing.STOP_ACK_WAIT
        while self.core is not None and self.core.link is not None and self.backend is not None:
            left = deadline - self.now()
            if left <= 0:
                return
            fds = self.backend.fds()
            try:
                ready, _, _ = select.select(fds, [], [], left)
            except (OSError, ValueError):
                return
            for fd in ready:
                self._on_backend(fd, publish=False)

    def reload(self, spec: SpecModel) -> str:
        assert isinstance(spec, PPPoESessionSpec)
        old = self.spec
        if spec.interface != old.interface:
            raise CommandRejected(
                f"interface cannot change live ({old.interface} -> {spec.interface}); "
                "restart the daemon"
            )
        changed = sorted(
            (info.alias or name)
            for name, info in type(spec).model_fields.items()
            if getattr(old, name) != getattr(spec, name)
        )
        self.spec = spec
        self._load_password()
        if old.backend != spec.backend:
            self.backend_error = None
            self._choose_backend()
        if self.core is not None and self.password is not None and self.mac is not None:
            # Session parameters apply at the next dial (reconnect applies them now).
            self.core.config = self._client_config(self.mac, self.password)
        elif self.core is None:
            self._check_link()
        self._reconverge()
        self._pump()
        return "changed: " + ", ".join(changed) if changed else "no change"

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome | Future[CommandOutcome]:
        if name not in ("renew", "reconnect"):
            raise UnknownCommand(f"pppoe-client has no command {name!r}")
        if self.core is None and self.password_error and name == "renew":
            # The way to retry after fixing the file: reload only reaches the
            # engine when the config itself changed.
            self._load_password()
            self._check_link()
        core = self.core
        if core is None:
            raise CommandRejected(self._blocked_reason() or "the client has not started")
        now = self.now()
        before = core.state.value
        if name == "reconnect":
            core.reconnect(now)
            self._pump()
            return CommandOutcome(
                "reconnecting", {"previousState": before, "state": core.state.value}
            )
        if core.state is State.RUNNING:
            if not core.echo_now(now):
                raise CommandRejected("LCP is not open")
            future: Future[CommandOutcome] = Future()
            self.echo_waiters.append(future)
            self.loop.call_later(RENEW_ECHO_WAIT, self._echo_timeout, future)
            self._pump()
            return future
        if core.dial_now(now):
            self._pump()
            return CommandOutcome(
                "dialing now", {"previousState": before, "state": core.state.value}
            )
        if not core.link_is_up:
            raise CommandRejected(f"interface {self.spec.interface} has no carrier")
        return CommandOutcome(
            f"already connecting (state {before})", {"previousState": before, "state": before}
        )

    def _echo_timeout(self, future: Future[CommandOutcome]) -> None:
        if future in self.echo_waiters:
            self.echo_waiters.remove(future)
        if not future.done():
            future.set_result(
                CommandOutcome(
                    f"no LCP Echo-Reply within {RENEW_ECHO_WAIT:g} s",
                    {"echoed": False, "rttMs": None},
                )
            )

    def _blocked_reason(self) -> str | None:
        if self.password_error:
            return self.password_error
        if self.foreign_ppp:
            return f"interface {self.ppp_ifname} exists and is not ours"
        if self.backend_error and self.spec.backend == "kernel":
            return self.backend_error
        if not self.link.exists:
            return f"interface {self.spec.interface} does not exist"
        return None

    # -- state file ----------------------------------------------------------------
    def _restore(self) -> None:
        data = self.ctx.state.load()
        if not data or data.get("version") != _STATE_VERSION:
            return
        if data.get("interface") != self.spec.interface:
            return
        self.applied = HostConfig.from_json(data.get("applied"))
        session = data.get("session")
        if isinstance(session, dict):
            sid = session.get("sessionId")
            mac = parse_mac(str(session.get("acMac") or ""))
            if isinstance(sid, int) and 0 < sid < 0xFFFF and mac is not None:
                self.stale = (sid, mac)

    def _save(self) -> None:
        session = self.session
        data = {
            "version": _STATE_VERSION,
            "interface": self.spec.interface,
            "pppInterface": self.ppp_ifname,
            "session": {"sessionId": session.session_id, "acMac": session.ac_mac}
            if session is not None
            else (
                {"sessionId": self.stale[0], "acMac": mac_to_str(self.stale[1])}
                if self.stale is not None
                else None
            ),
            "applied": self.applied.to_json(),
        }
        try:
            self.ctx.state.save(data)
        except OSError as exc:
            self.last_error = f"cannot save state: {exc}"
            self.ctx.log.warning("%s", self.last_error)

    # -- the Ethernet link and our PPP interface ------------------------------------
    def _on_link_readable(self) -> None:
        if self.watcher is not None:
            self.watcher.drain()
        self._check_link()

    def _check_link(self) -> None:
        if self.applier is None or self.stopped:
            return
        try:
            st = self.applier.link(self.spec.interface)
            ppp = self.applier.link(self.ppp_ifname)
        except Exception as exc:  # netlink trouble: keep the last view
            self.last_error = f"cannot read links: {exc}"
            return
        self.foreign_ppp = ppp.exists and self.backend is None
        self.link = st
        now = self.now()
        if not st.exists:
            self._close_discovery()
        elif self.disc is None or self.disc.index != st.index:
            self._close_discovery()
            self._open_discovery(st)
        core = self.core
        if core is None:
            if (
                self.disc is not None
                and self.mac is not None
                and self.password is not None
                and not self.foreign_ppp
            ):
                self._create_core(st.ready)
            self._pump()
            return
        if st.ready and not core.link_is_up:
            self.ctx.emit(
                TOPIC_LINK_UP,
                reason="LinkUp",
                message=f"{self.spec.interface} is up with carrier",
                interface=self.spec.interface,
            )
            core.link_up(now)
        elif not st.ready and core.link_is_up:
            core.link_down(now)
            self.ctx.emit(
                TOPIC_LINK_DOWN,
                reason="LinkDown",
                message=f"{self.spec.interface} lost its link ({st.operstate}); the session is gone",
                severity="warning",
                interface=self.spec.interface,
                operstate=st.operstate,
                exists=st.exists,
            )
        self._pump()

    def _open_discovery(self, st: LinkState) -> None:
        mac = parse_mac(st.mac or "")
        if mac is None or not any(mac):
            self.socket_error = f"{self.spec.interface} has no Ethernet address"
            return
        try:
            self.disc = DiscoverySocket(self.spec.interface, mac, drops=self.kernel_drops)
        except OSError as exc:
            self.socket_error = f"cannot open a packet socket on {self.spec.interface}: {exc}"
            self.disc = None
            return
        self.socket_error = None
        self.mac = mac
        self.loop.add_reader(self.disc.fileno(), self._on_discovery)

    def _close_discovery(self) -> None:
        if self.disc is not None:
            self.loop.remove_reader(self.disc.fileno())
            for reason, count in self.disc.dropped.items():
                self.frame_drops[reason] = self.frame_drops.get(reason, 0) + count
            self.disc.close()
            self.disc = None

    # -- the protocol core ---------------------------------------------------------
    def _session_mtu(self) -> int:
        """``mtu``, at most what the Ethernet carries: 8 bytes go to the PPPoE
        and PPP headers, so RFC 4638's 1500 needs an Ethernet MTU of 1508."""
        if self.link.mtu is None:
            return self.spec.mtu
        return max(576, min(self.spec.mtu, self.link.mtu - 8))

    def _client_config(self, mac: bytes, password: bytes) -> ClientConfig:
        spec = self.spec
        return ClientConfig(
            mac=mac,
            username=spec.username.encode(),
            password=password,
            auth_methods=spec.auth_methods,
            service_name=spec.service_name,
            ac_name=spec.ac_name,
            mtu=self._session_mtu(),
            ipv6=spec.ipv6,
            want_dns=spec.use_peer_dns,
            echo_interval=spec.lcp_echo_interval,
            echo_failure=spec.lcp_echo_failure,
            holdoff=spec.holdoff,
            maxfail=spec.maxfail,
            discovery_timeout=spec.discovery_timeout,
            discovery_attempts=spec.discovery_attempts,
        )

    def _create_core(self, link_ready: bool) -> None:
        assert self.mac is not None and self.password is not None
        if self.backend_error and self.spec.backend == "kernel":
            return  # Error: nothing can carry a session
        core = PPPoEClientCore(self._client_config(self.mac, self.password), self.rng)
        now = self.now()
        if not link_ready:
            core.link_down(now)
        self.core = core
        stale, self.stale = self.stale, None
        core.start(now, stale)

    def _pump(self, publish: bool = True) -> None:
        core = self.core
        if core is not None:
            for _ in range(1000):
                outputs = core.outputs()
                if not outputs:
                    break
                for out in outputs:
                    if isinstance(out, SendDiscovery):
                        self._send_discovery(out)
                    elif isinstance(out, SendPpp):
                        self._send_ppp(out)
                    else:
                        self._on_core_event(out)
            self._arm_timer()
        if publish:
            self._publish()

    def _send_discovery(self, out: SendDiscovery) -> None:
        if self.disc is None:
            return
        try:
            self.disc.send(out.dst, out.packet)
        except OSError as exc:
            self.last_error = f"sending {out.code} failed: {exc}"
            self.ctx.log.warning("%s", self.last_error)

    def _send_ppp(self, out: SendPpp) -> None:
        if self.backend is None:
            return
        try:
            self.backend.send_control(out.protocol, out.info)
        except OSError as exc:
            self.last_error = f"sending a PPP frame failed: {exc}"
            self.ctx.log.warning("%s", self.last_error)

    def _arm_timer(self) -> None:
        core = self.core
        when = None if core is None or self.stopped else core.next_deadline()
        if when == self.timer_at and (when is None or self.timer is not None):
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_at = when
        if when is not None:
            self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        if self.core is not None and not self.stopped:
            self.core.on_timer(self.now())
        self._pump()

    def _on_discovery(self) -> None:
        disc = self.disc
        if disc is None:
            return
        frames = disc.receive()
        core = self.core
        if core is None or self.stopped:
            return
        for src, dst, payload in frames:
            core.receive_discovery(src, dst, payload, self.now())
        self._pump()

    def _on_backend(self, fd: int, publish: bool = True) -> None:
        backend, core = self.backend, self.core
        if backend is None or core is None:
            return
        for frame in backend.read(fd):
            self._feed(frame)
        self._pump(publish=publish)

    def _feed(self, frame: bytes) -> None:
        core = self.core
        if core is None:
            return
        try:
            protocol, info = split_protocol(frame)
        except DecodeError:
            core.counters["dropped"]["malformed_ppp"] += 1
            return
        core.receive_ppp(protocol, info, self.now())

    # -- the backend ---------------------------------------------------------------
    def _open_early(self) -> None:
        """The session socket, opened when the PADR goes out: an AC sends its
        first LCP Configure-Request right after the PADS, before the data
        plane is open, and that request must not be lost."""
        self._close_early()
        if self.mac is None:
            return
        try:
            self.early = SessionSocket(self.spec.interface, self.mac, drops=self.kernel_drops)
        except OSError as exc:
            self.ctx.log.warning("cannot open the session socket early: %s", exc)

    def _close_early(self) -> None:
        if self.early is not None:
            self.early.close()
            self.early = None

    def _open_backend(self, event: SessionEstablished) -> None:
        core = self.core
        mac, ac_mac = self.mac, parse_mac(event.ac_mac)
        assert core is not None and mac is not None and ac_mac is not None
        link = core.link
        params = SessionParams(
            ifname=self.ppp_ifname,
            ethernet=self.spec.interface,
            mac=mac,
            ac_mac=ac_mac,
            session_id=event.session_id,
            mru=link.mru if link is not None else self.spec.mtu,
        )
        kind = self.backend_kind or "tun"
        early, self.early = self.early, None
        queued: list[bytes] = []
        if early is not None and kind == "kernel":
            # The kernel driver takes the session's frames once connected:
            # read what came before, then let the socket go.
            early.attach(ac_mac, event.session_id)
            queued = early.receive()
            early.close()
            early = None
        try:
            backend = open_backend(kind, params, early)
        except BackendError as exc:
            if early is not None:
                early.close()
            message = str(exc.args[-1] if exc.args else exc)
            self.backend_error = message
            if "is not ours" in message:
                self.foreign_ppp = True
            self.ctx.emit(
                TOPIC_BACKEND_FAILED,
                reason="BackendFailed",
                message=message,
                severity="error",
                backend=kind,
                interface=self.ppp_ifname,
            )
            core.backend_failed(self.now(), message)
            return
        self.backend_error = None
        self.backend = backend
        for fd in backend.fds():
            self.loop.add_reader(fd, functools.partial(self._on_backend, fd))
        for frame in queued:
            self._feed(frame)

    def _close_backend(self) -> None:
        backend = self.backend
        if backend is None:
            return
        for fd in backend.fds():
            self.loop.remove_reader(fd)
        self._keep_traffic(backend)
        for reason, count in backend.frame_drops.items():
            self.frame_drops[reason] = self.frame_drops.get(reason, 0) + count
        backend.close()
        self.backend = None

    def _keep_traffic(self, backend: DataPlane) -> None:
        for key, value in backend.stats().to_json().items():
            self.traffic[key] = self.traffic.get(key, 0) + value

    def _traffic(self) -> dict[str, int]:
        total = dict(self.traffic)
        if self.backend is not None:
            for key, value in self.backend.stats().to_json().items():
                total[key] = total.get(key, 0) + value
        for key in ("rxPackets", "rxBytes", "txPackets", "txBytes", "dropped"):
            total.setdefault(key, 0)
        return total

    # -- host state -----------------------------------------------------------------
    def _reconverge(self) -> None:
        applier = self.applier
        if applier is None or self.backend is None or self.network is None:
            return
        want = desired_config(self.spec, self.ppp_ifname, self.network, self.ipv6_local)
        self.applied, self.apply_errors = applier.apply(self.applied, want)
        for error in self.apply_errors:
            self.ctx.emit(
                TOPIC_APPLY_FAILED,
                reason="ApplyFailed",
                message=error,
                severity="error",
                interface=self.ppp_ifname,
            )

    def _withdraw(self) -> tuple[HostConfig, list[str]]:
        if self.applier is None:
            return self.applied, []
        return self.applier.withdraw(self.applied)

    # -- core events ------------------------------------------------------------------
    def _emit_debug(self, topic: str, reason: str, message: str, **attrs: Scalar) -> None:
        now = self.now()
        if now - self.debug_window >= DEBUG_EVENT_WINDOW:
            self.debug_window = now
            self.debug_budget = DEBUG_EVENT_BUDGET
        if self.debug_budget <= 0:
            self.debug_suppressed += 1
            return
        self.debug_budget -= 1
        self.ctx.emit(topic, reason=reason, message=message, severity="debug", **attrs)

    def _emit(
        self, topic: str, reason: str, message: str, severity: Severity, **attrs: Scalar
    ) -> None:
        """``ctx.emit`` with attributes merged from dicts (``_session_attrs``)."""
        self.ctx.emit(topic, reason=reason, message=message, severity=severity, **attrs)

    def _session_attrs(self) -> dict[str, Scalar]:
        session = self.session
        if session is None:
            return {}
        return {
            "sessionId": session.session_id,
            "acName": session.ac_name,
            "acMac": session.ac_mac,
            "interface": self.ppp_ifname,
            "backend": self.backend_kind,
        }

    def _on_core_event(self, event: CoreEvent) -> None:  # noqa: C901 - one case per event
        now = self.now()
        if isinstance(event, StateChanged):
            if event.new == State.DISCOVERY.value:
                self._refresh_password()
            if event.new == State.REQUEST.value:
                self._open_early()
            elif event.new != State.ESTABLISH.value:
                self._close_early()
            self._emit_debug(
                TOPIC_STATE,
                "StateChanged",
                f"{event.old} -> {event.new} ({event.reason})",
                old=event.old,
                new=event.new,
                why=event.reason,
            )
        elif isinstance(event, OfferIgnored):
            self._emit_debug(
                TOPIC_OFFER_IGNORED,
                "OfferIgnored",
                f"PADO from {event.ac_mac} ({event.ac_name}) not taken: {event.why}",
                acMac=event.ac_mac,
                acName=event.ac_name,
                why=event.why,
            )
        elif isinstance(event, DiscoveryError):
            self.ctx.emit(
                TOPIC_DISCOVERY_ERROR,
                reason="DiscoveryError",
                message=f"{event.code} from {event.ac_mac}: {event.tag} {event.text}",
                severity="warning",
                code=event.code,
                tag=event.tag,
                text=event.text,
                acMac=event.ac_mac,
            )
        elif isinstance(event, StaleSessionClosed):
            self.ctx.emit(
                TOPIC_STALE,
                reason="StaleSessionClosed",
                message=f"sent a PADT for session {event.session_id} with {event.ac_mac} "
                "left open by a previous run",
                sessionId=event.session_id,
                acMac=event.ac_mac,
            )
            self._save()
        elif isinstance(event, SessionEstablished):
            self.session = event
            self.auth_error = None
            self._open_backend(event)
            self._save()
            if self.backend is not None:
                self._emit(
                    TOPIC_ESTABLISHED,
                    "SessionEstablished",
                    f"PPPoE session {event.session_id} with {event.ac_name or '?'} "
                    f"({event.ac_mac}) on {self.spec.interface}",
                    "info",
                    serviceName=event.service_name,
                    maxPayload=event.max_payload,
                    **self._session_attrs(),
                )
        elif isinstance(event, AuthSucceeded):
            self.auth_method = event.method
            self.auth_error = None
            self.ctx.emit(
                TOPIC_AUTH_OK,
                reason="Authenticated",
                message=f"authenticated ({event.method})"
                + (f": {event.message}" if event.message else ""),
                method=event.method,
                peerMessage=event.message,
            )
        elif isinstance(event, AuthFailed):
            self.auth_error = f"{event.method.upper()}: {event.message}"
            self._emit(
                TOPIC_AUTH_FAILED,
                "AuthFailed",
                f"the access concentrator refused our {event.method.upper()} "
                f"credentials: {event.message}",
                "error",
                method=event.method,
                peerMessage=event.message,
                exitReason=ExitReason.PEER_AUTH_FAILED.value,
                **self._session_attrs(),
            )
        elif isinstance(event, NetworkUp):
            self._network_up(event, now)
        elif isinstance(event, Ipv6Up):
            self.ipv6_local, self.ipv6_peer = event.local, event.peer
            if self.backend is not None:
                self.backend.set_protocols(self.network is not None, True)
            self._reconverge()
            self.ctx.emit(
                TOPIC_IPV6_UP,
                reason="Ipv6Up",
                message=f"IPv6CP up: {event.local} peer {event.peer}",
                local=event.local,
                peer=event.peer,
                interface=self.ppp_ifname,
            )
        elif isinstance(event, NetworkDown):
            if event.protocol == "IPCP":
                self.network = None
                self.applied, _ = self._withdraw()
            else:
                self.ipv6_local = self.ipv6_peer = None
            if self.backend is not None:
                self.backend.set_protocols(self.network is not None, self.ipv6_local is not None)
            self.ctx.emit(
                TOPIC_NETWORK_DOWN,
                reason="NetworkDown",
                message=f"{event.protocol} left the Opened state",
                severity="warning",
                protocol=event.protocol,
            )
        elif isinstance(event, EchoReply):
            self.last_rtt = event.rtt
            waiters, self.echo_waiters = self.echo_waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(
                        CommandOutcome(
                            f"LCP Echo-Reply in {event.rtt * 1000:.1f} ms",
                            {"echoed": True, "rttMs": round(event.rtt * 1000, 3)},
                        )
                    )
        elif isinstance(event, EchoTimeout):
            self._emit(
                TOPIC_ECHO_TIMEOUT,
                "EchoTimeout",
                f"no LCP Echo-Reply to {event.missed} Echo-Requests "
                f"{event.interval:g} s apart: the peer is dead",
                "warning",
                missed=event.missed,
                interval=event.interval,
                exitReason=ExitReason.PEER_DEAD.value,
                **self._session_attrs(),
            )
        elif isinstance(event, SessionFailed):
            self.ctx.emit(
                TOPIC_FAILED,
                reason=_ERROR_EXITS.get(event.reason, "SessionFailed"),
                message=event.message,
                severity="warning",
                exitReason=event.reason.value,
                detail=event.detail,
                stage=event.stage,
            )
        elif isinstance(event, SessionEnded):
            self._session_ended(event)
        elif isinstance(event, RedialScheduled):
            self.ctx.emit(
                TOPIC_REDIAL,
                reason="RedialScheduled",
                message=f"redialing in {event.delay:g} s after {event.reason.value}",
                severity="warning" if event.reason is ExitReason.PEER_AUTH_FAILED else "info",
                delay=event.delay,
                at=self._iso(event.at),
                failures=event.failures,
                exitReason=event.reason.value,
            )
        elif isinstance(event, RedialStopped):
            self.ctx.emit(
                TOPIC_REDIAL_STOPPED,
                reason="MaxFailReached",
                message=f"{event.failures} attempts failed in a row (maxfail): not redialing; "
                "renew or reconnect to try again",
                severity="error",
                failures=event.failures,
                exitReason=event.reason.value,
            )

    def _network_up(self, event: NetworkUp, now: float) -> None:
        self.network = event
        if self.backend is not None:
            self.backend.set_protocols(True, self.ipv6_local is not None)
        self._reconverge()
        core = self.core
        session = core.session if core is not None else None
        if session is not None:
            self.last_setup = now - session.dial_started
        self.connected_since = self.ctx.wall()
        self._emit(
            TOPIC_UP,
            "SessionUp",
            f"{event.local} peer {event.peer} on {self.ppp_ifname} "
            f"(session {self.session.session_id if self.session else '?'})",
            "info",
            localAddress=event.local,
            peerAddress=event.peer,
            dns=",".join(event.dns),
            mtu=event.mtu,
            mru=event.mru,
            setupMs=round(self.last_setup * 1000, 1) if self.last_setup is not None else None,
            redialCount=core.redials if core is not None else 0,
            **self._session_attrs(),
        )

    def _session_ended(self, event: SessionEnded) -> None:
        attrs = self._session_attrs()
        self.applied, errors = self._withdraw()
        self._close_backend()
        for waiter in self.echo_waiters:
            if not waiter.done():
                waiter.set_result(CommandOutcome("the session ended", {"echoed": False}))
        self.echo_waiters = []
        self.network = None
        self.ipv6_local = self.ipv6_peer = None
        self.session = None
        self.connected_since = None
        self._save()
        for error in errors:
            self.ctx.emit(
                TOPIC_APPLY_FAILED,
                reason="ApplyFailed",
                message=error,
                severity="error",
                interface=self.ppp_ifname,
            )
        if not event.was_up:
            return  # session.failed tells the story of an attempt
        severity: Severity = "info" if event.reason is ExitReason.USER_REQUEST else "warning"
        self._emit(
            TOPIC_DOWN,
            "SessionDown",
            f"session {event.session_id} ended: {event.reason.value} ({event.detail})",
            severity,
            exitReason=event.reason.value,
            detail=event.detail,
            durationS=round(event.duration, 3),
            **attrs,
        )

    # -- status ---------------------------------------------------------------------
    def _counters(self) -> dict[str, Any]:
        core = self.core
        groups = core.all_counters() if core is not None else {}
        dropped = dict(groups.get("dropped", {}))
        for reason, count in self.frame_drops.items():
            dropped[reason] = dropped.get(reason, 0) + count
        sources = [self.disc] if self.disc is not None else []
        for sock in sources:
            for reason, count in sock.dropped.items():
                dropped[reason] = dropped.get(reason, 0) + count
        if self.backend is not None:
            for reason, count in self.backend.frame_drops.items():
                dropped[reason] = dropped.get(reason, 0) + count
        sent = dict(groups.get("sent", {}))
        received = dict(groups.get("received", {}))
        return {
            "sent": sum(sent.values()),
            "received": sum(received.values()),
            "dropped": sum(dropped.values()),
            "sentByType": sent,
            "receivedByType": received,
            "droppedByReason": dropped,
            "kernelDrops": self.kernel_drops.total,
            "suppressedDebugEvents": self.debug_suppressed,
        }

    def _publish(self) -> None:
        core = self.core
        network = self.network
        session = self.session
        link = core.link if core is not None else None
        observed: dict[str, Any] = {
            "state": core.state.value if core is not None else "STOPPED",
            "interface": self.spec.interface,
            "pppInterface": self.ppp_ifname,
            "backend": self.backend_kind,
            "mac": mac_to_str(self.mac) if self.mac else None,
            "linkReady": self.link.ready,
            "sessionId": session.session_id if session else None,
            "acName": session.ac_name if session else None,
            "acMac": session.ac_mac if session else None,
            "serviceName": session.service_name if session else None,
            "maxPayload": session.max_payload if session else None,
            "authMethod": self.auth_method if session else None,
            "localAddress": network.local if network else None,
            "peerAddress": network.peer if network else None,
            "dns": list(network.dns) if network else [],
            "mtu": network.mtu if network else None,
            "mru": network.mru if network else (link.mru if link is not None else None),
            "ipv6LinkLocal": self.ipv6_local,
            "ipv6PeerLinkLocal": self.ipv6_peer,
            "lcpEchoRttMs": round(self.last_rtt * 1000, 3) if self.last_rtt is not None else None,
            "connectedSince": rfc3339(self.connected_since) if self.connected_since else None,
            "lastSetupMs": round(self.last_setup * 1000, 1)
            if self.last_setup is not None
            else None,
            "redialCount": core.redials if core is not None else 0,
            "failures": core.failures if core is not None else 0,
            "lastExitReason": core.last_exit.value if core and core.last_exit else None,
            "lastExitDetail": core.last_detail if core is not None else None,
            "nextRedialAt": self._iso(core.redial_at)
            if core is not None and core.state is State.HOLDOFF
            else None,
            "traffic": self._traffic(),
            "applied": {
                "address": self.applied.address,
                "peer": self.applied.peer,
                "defaultRouteMetric": self.applied.default_route,
                "mtu": self.applied.mtu,
                "dnsFile": self.applied.dns_file,
            },
            "counters": self._counters(),
            "lastError": self.last_error or self.socket_error,
        }
        self.ctx.status.set_observed(observed)
        # The phase after what it sums up: a reader that sees Up (a test, a
        # dependent waiting on it) finds observed already RUNNING, never the
        # NETWORK of a moment before (status has no transaction).
        self._set_status()

    def _set_status(self) -> None:  # noqa: C901 - one decision table
        status = self.ctx.status
        core = self.core
        state = core.state if core is not None else None
        st = self.link
        ifname = self.spec.interface
        # LinkReady (the Ethernet under the session)
        if self.socket_error:
            status.set_condition("LinkReady", False, "SocketFailed", self.socket_error)
        elif not st.exists:
            status.set_condition("LinkReady", False, "InterfaceMissing", f"no interface {ifname}")
        elif not st.ready:
            why = "AdminDown" if not st.admin_up else "NoCarrier"
            status.set_condition("LinkReady", False, why, f"{ifname} is {st.operstate}")
        else:
            status.set_condition("LinkReady", True, "Up", f"{ifname} is up")
        # Discovered
        session = self.session
        last = core.last_exit if core is not None else None
        if session is not None:
            status.set_condition(
                "Discovered",
                True,
                "SessionEstablished",
                f"session {session.session_id} with {session.ac_name or '?'} ({session.ac_mac})",
            )
        elif state in _DIALING:
            status.set_condition(
                "Discovered",
                False,
                "Discovering" if state is State.DISCOVERY else "Requesting",
                "PADI sent, waiting for a PADO"
                if state is State.DISCOVERY
                else "PADR sent, waiting for the PADS",
            )
        elif last is ExitReason.CONNECT_FAILED and core is not None:
            status.set_condition(
                "Discovered", False, "NoAccessConcentrator", core.last_message or ""
            )
        else:
            status.set_condition("Discovered", False, "NoSession", state.value if state else "")
        # Authenticated
        if (self.auth_error and session is None) or (self.auth_error and state is State.TERMINATE):
            status.set_condition("Authenticated", False, "AuthFailed", self.auth_error or "")
        elif (
            session is not None
            and self.auth_method is not None
            and state
            in (
                State.NETWORK,
                State.RUNNING,
            )
        ):
            status.set_condition(
                "Authenticated", True, "Authenticated", f"method {self.auth_method}"
            )
        elif state is State.AUTHENTICATE:
            status.set_condition("Authenticated", False, "Authenticating", "")
        else:
            status.set_condition("Authenticated", False, "NoSession", "")
        # NetworkUp
        network = self.network
        if self.apply_errors:
            status.set_condition("NetworkUp", False, "ApplyFailed", "; ".join(self.apply_errors))
        elif network is not None and state is State.RUNNING:
            status.set_condition(
                "NetworkUp",
                True,
                "IpcpOpened",
                f"{network.local} peer {network.peer} on {self.ppp_ifname}",
            )
        elif state is State.NETWORK:
            status.set_condition("NetworkUp", False, "Negotiating", "IPCP")
        else:
            status.set_condition("NetworkUp", False, "NoSession", "")
        # Phase
        blocked = self._blocked_reason()
        if self.password_error:
            status.set_phase("Error", "PasswordFileRefused", self.password_error)
        elif self.foreign_ppp:
            status.set_phase(
                "Error",
                "InterfaceInUse",
                f"{self.ppp_ifname} exists and is not ours; waiting for it to go",
            )
        elif self.backend_error and (self.spec.backend == "kernel" or session is None):
            status.set_phase("Error", "BackendFailed", self.backend_error)
        elif self.socket_error:
            status.set_phase("Error", "SocketFailed", self.socket_error)
        elif self.apply_errors:
            status.set_phase("Error", "ApplyFailed", "; ".join(self.apply_errors))
        elif state is State.RUNNING and network is not None:
            status.set_phase("Up", "SessionUp", f"{network.local} on {self.ppp_ifname}")
        elif state is State.FAILED and core is not None:
            status.set_phase(
                "Error",
                "MaxFailReached",
                f"{core.failures} attempts failed ({last.value if last else '?'}): "
                f"{core.last_message or ''}",
            )
        elif last in _ERROR_EXITS and core is not None and core.failures > 0:
            assert last is not None
            status.set_phase(
                "Error", _ERROR_EXITS[last], f"{last.value}: {core.last_message or ''}"
            )
        elif blocked is not None:
            status.set_phase("Pending", "InterfaceMissing", blocked)
        elif not st.ready:
            status.set_phase("Pending", "LinkDown", f"{ifname} has no link")
        elif state in _DIALING:
            status.set_phase("Pending", "Discovering", "looking for an access concentrator")
        elif state in _NEGOTIATING or state is State.RUNNING:
            status.set_phase("Pending", "Negotiating", f"PPP {state.value if state else ''}")
        elif state is State.HOLDOFF and core is not None:
            status.set_phase(
                "Pending",
                "Redialing",
                f"{last.value if last else 'session ended'}; redialing at "
                f"{self._iso(core.redial_at)}",
            )
        else:
            status.set_phase("Pending", "Stopped", state.value if state else "not started")
