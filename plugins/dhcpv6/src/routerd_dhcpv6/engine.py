"""The dhcpv6-client daemon's engine: the sans-I/O core glued to a socket,
timers, netlink link events, the host's addresses and routes, and state files.

Everything runs on the engine thread (the runtime calls ``start``, ``command``,
``reload`` and ``stop`` there; timers and readers fire there), so nothing here
needs a lock. After every input (a datagram, a timer, a link event, a command)
:meth:`Dhcpv6Engine._pump` drains the core: packets out to the socket, events
to the event log, binding changes to ``state.json`` and to the host, then the
phase, conditions and ``observed``, then the next timer.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
import datetime as dt
import errno
import math
from pathlib import Path
import random
import select
from typing import Any
import uuid

from routerd.config import SpecModel
from routerd.daemon.engine import CommandOutcome
from routerd.daemon.engine import DaemonContext
from routerd.daemon.engine import DaemonEngine
from routerd.daemon.loop import TimerHandle
from routerd.daemon.statefile import StateFile
from routerd.errors import CommandRejected
from routerd.errors import UnknownCommand
from routerd.model import Scalar
from routerd.model import Severity
from routerd.netapply import ApplyError
from routerd.netapply import LinkLocal
from routerd.netapply import LinkState
from routerd.netapply import LinkWatcher
from routerd.netapply import NetApplier
from routerd.timefmt import rfc3339

from routerd_dhcpv6.apply import Assignment
from routerd_dhcpv6.apply import Item
from routerd_dhcpv6.apply import desired_items
from routerd_dhcpv6.codec import EncodeError
from routerd_dhcpv6.codec import encode
from routerd_dhcpv6.core import Binding
from routerd_dhcpv6.core import ClientConfig
from routerd_dhcpv6.core import CoreEvent
from routerd_dhcpv6.core import MessageDropped
from routerd_dhcpv6.core import MessageReceived
from routerd_dhcpv6.core import MessageSent
from routerd_dhcpv6.core import PdClient
from routerd_dhcpv6.core import PrefixBound
from routerd_dhcpv6.core import PrefixChanged
from routerd_dhcpv6.core import PrefixExpired
from routerd_dhcpv6.core import PrefixRebound
from routerd_dhcpv6.core import PrefixReleased
from routerd_dhcpv6.core import PrefixRenewed
from routerd_dhcpv6.core import ServerChanged
from routerd_dhcpv6.core import State
from routerd_dhcpv6.core import StateChanged
from routerd_dhcpv6.duid import DuidError
from routerd_dhcpv6.duid import duid_ll
from routerd_dhcpv6.duid import duid_llt
from routerd_dhcpv6.duid import duid_uuid
from routerd_dhcpv6.duid import iaid_from_name
from routerd_dhcpv6.duid import parse_duid
from routerd_dhcpv6.spec import DHCPv6PrefixDelegationSpec
from routerd_dhcpv6.transport import Transport
from routerd_dhcpv6.transport import TransportError

TOPIC_LINK_UP = "routerd.dhcpv6.client.link.up"
TOPIC_LINK_DOWN = "routerd.dhcpv6.client.link.down"
TOPIC_LINKLOCAL_LOST = "routerd.dhcpv6.client.linklocal.lost"
TOPIC_LINKLOCAL_AVAILABLE = "routerd.dhcpv6.client.linklocal.available"
TOPIC_DOWNSTREAM_ASSIGNED = "routerd.dhcpv6.client.downstream.assigned"
TOPIC_DOWNSTREAM_REMOVED = "routerd.dhcpv6.client.downstream.removed"
TOPIC_DOWNSTREAM_FAILED = "routerd.dhcpv6.client.downstream.failed"
TOPIC_DUID_CREATED = "routerd.dhcpv6.client.duid.created"

#: The core's event classes; their ``topic`` is emitted as is.
CORE_EVENTS: tuple[type[Any], ...] = (
    PrefixBound,
    PrefixRenewed,
    PrefixRebound,
    PrefixChanged,
    PrefixExpired,
    PrefixReleased,
    ServerChanged,
    StateChanged,
    MessageSent,
    MessageReceived,
    MessageDropped,
)
#: Every topic this plugin emits (checked against docs/events.md by a test).
TOPICS: tuple[str, ...] = (
    *(str(cls.topic) for cls in CORE_EVENTS),
    TOPIC_LINK_UP,
    TOPIC_LINK_DOWN,
    TOPIC_LINKLOCAL_LOST,
    TOPIC_LINKLOCAL_AVAILABLE,
    TOPIC_DOWNSTREAM_ASSIGNED,
    TOPIC_DOWNSTREAM_REMOVED,
    TOPIC_DOWNSTREAM_FAILED,
    TOPIC_DUID_CREATED,
)

#: How long ``stop`` waits for the Reply to its Release (the daemon must be
#: gone within 2 s and the runtime gives ``stop`` 1.2 s).
RELEASE_WAIT = 0.8
#: Retry opening the socket this often while it fails (port taken, ...).
SOCKET_RETRY = 5.0
#: Send errors that mean the WAN has no IPv6 source address to send from:
#: no link-local (IPv6 off, MTU below 1280, DAD failed) or no IPv6 route.
_NO_SOURCE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN})
DUID_FILE = "duid.json"
STATE_VERSION = 1

_SEVERITIES: dict[str, Severity] = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "error": "error",
}
_PREFIX_EVENTS = (PrefixBound, PrefixChanged, PrefixExpired, PrefixReleased)
_STATE_REASONS = {
    State.INIT: "Waiting",
    State.SOLICIT: "Soliciting",
    State.REQUEST: "Requesting",
    State.RENEW: "Renewing",
    State.REBIND: "Rebinding",
    State.RELEASE: "Released",
    State.LINK_DOWN: "LinkDown",
    State.STOPPED: "Stopped",
    State.BOUND: "Bound",
}


def _time(value: float | None) -> str | None:
    return None if value is None or math.isinf(value) else rfc3339(value)


def _seconds(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


def _message(ev: CoreEvent) -> str:
    """One line for people; the attributes carry the same facts for programs."""
    if isinstance(ev, PrefixRenewed):
        return f"{', '.join(ev.prefixes)} renewed (valid {ev.valid_lifetime} s)"
    if isinstance(ev, PrefixRebound):
        return f"{', '.join(ev.prefixes)} rebound (valid {ev.valid_lifetime} s)"
    if isinstance(ev, PrefixBound):
        return (
            f"{', '.join(ev.prefixes)} delegated by {ev.server_duid} (valid {ev.valid_lifetime} s)"
        )
    if isinstance(ev, PrefixChanged):
        return f"prefix changed from {', '.join(ev.old) or '-'} to {', '.join(ev.new)}"
    if isinstance(ev, PrefixExpired):
        return f"{ev.prefix} is gone ({ev.reason})"
    if isinstance(ev, PrefixReleased):
        return f"{', '.join(ev.prefixes)} released"
    if isinstance(ev, ServerChanged):
        return f"server changed from {ev.old_duid} to {ev.new_duid}"
    if isinstance(ev, StateChanged):
        return f"{ev.old} -> {ev.new} ({ev.reason})"
    if isinstance(ev, MessageSent):
        return f"{ev.msg_type} xid {ev.xid:06x} attempt {ev.attempt}"
    if isinstance(ev, MessageReceived):
        return f"{ev.msg_type} xid {ev.xid:06x} from {ev.source}"
    return f"dropped {ev.msg_type or 'datagram'}: {ev.reason}" + (
        f" ({ev.detail})" if ev.detail else ""
    )


class Dhcpv6Engine(DaemonEngine):
    """A DHCPv6 prefix-delegation client for one WAN interface."""

    def __init__(self, ctx: DaemonContext) -> None:
        assert isinstance(ctx.spec, DHCPv6PrefixDelegationSpec)
        self.ctx = ctx
        self.spec: DHCPv6PrefixDelegationSpec = ctx.spec
        self.loop = ctx.loop
        self.iaid = iaid_from_name(self.spec.interface)
        self.client: PdClient | None = None
        self.client_duid: bytes | None = None
        self.duid_type: str | None = None
        self.transport = Transport(self.spec.interface)
        self.applier: NetApplier | None = None
        self.watcher: LinkWatcher | None = None
        self.timer: TimerHandle | None = None
        self.retry_timer: TimerHandle | None = None
        self.reader_fd: int | None = None
        self.link: LinkState | None = None
        self.link_ready = False
        # The WAN can carry DHCPv6: carrier *and* a usable link-local address
        # (RFC 9915 §13.1: the client sends from its link-local address).
        self.ipv6_ready = False
        self.link_local: LinkLocal | None = None
        self.send_blocked: str | None = None  # errno of the last "no source" send failure
        self.link_local_lost = False  # a linklocal.lost event is outstanding
        self._address_events = 0
        self.downstream: dict[str, LinkState] = {}
        self.client_started = False
        self._overruns = 0
        self.applied: dict[tuple[str, str | None, str], Item] = {}
        self.assignments: list[Assignment] = []
        self.apply_errors: list[tuple[str, str, bool]] = []  # (where, message, missing)
        self._last_failed: set[str] = set()
        self._last_binding: Binding | None = None
        self._saved_binding: dict[str, Any] | None = None
        self._saved_duid: str | None = None
        self.socket_error: str | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.link_changes = 0
        self.stopped = False

    # ------------------------------------------------------------------ clocks
    def _now(self) -> float:
        return self.loop.clock()

    def _to_wall(self, mono: float) -> float:
        return mono - self.loop.clock() + self.ctx.wall()

    def _to_mono(self, wall: float) -> float:
        return wall - self.ctx.wall() + self.loop.clock()

    @property
    def state_dir(self) -> Path:
        return self.ctx.state.path.parent

    # --------------------------------------------------------------- lifecycle
    def start(self, ctx: DaemonContext) -> None:
        status = ctx.status
        status.set_phase("Pending", "Starting", f"waiting for {self.spec.interface}")
        saved = ctx.state.load() or {}
        if saved.get("version") == STATE_VERSION and saved.get("interface") == self.spec.interface:
            for raw in saved.get("applied") or []:
                item = Item.from_json(raw)
                if item is not None:
                    self.applied[item.key] = item
            if isinstance(saved.get("binding"), dict) and saved.get("iaid") == self.iaid:
                self._saved_binding = saved["binding"]
                self._saved_duid = saved.get("clientDuid")
        # pyroute2 and netlink sockets belong to this (the engine) thread.
        self.applier = NetApplier()
        self.watcher = LinkWatcher(self._watched(), ipv6_addresses=True)
        self.loop.add_reader(self.watcher.fileno(), self._on_netlink)
        link = self.applier.link(self.spec.interface)
        self.link = link
        self._read_link_local()
        for d in self.spec.downstream:
            self.downstream[d.interface] = self.applier.link(d.interface)
        self._ensure_client(link)
        if link.ready:
            self._wan_up(initial=True)
        else:
            self._wan_down(initial=True)
        # Whatever an earlier run left that the (restored) binding no longer
        # covers goes now; what it covers is refreshed, never removed first.
        self._reconcile()
        self._save()
        self._refresh()

    def stop(self) -> None:
        self.stopped = True
        for handle in (self.timer, self.retry_timer):
            if handle is not None:
                handle.cancel()
        self.timer = self.retry_timer = None
        client = self.client
        if client is not None and client.state is not State.STOPPED:
            now = self._now()
            client.stop(now)
            self._pump()
            self._drive_release(now + RELEASE_WAIT)
        if not self.spec.keep_on_stop:
            self._reconcile(remove_all=True)
        self._save()
        self._close_reader()
        self.transport.close()
        if self.watcher is not None:
            self.loop.remove_reader(self.watcher.fileno())
            self.watcher.close()
            self.watcher = None
        if self.applier is not None:
            self.applier.close()
            self.applier = None

    def _drive_release(self, deadline: float) -> None:
        """Run the core until its Release is answered or given up (bounded)."""
        client = self.client
        assert client is not None
        while client.state is State.RELEASE:
            now = self._now()
            if now >= deadline or not self.transport.is_open:
                break
            due = client.next_deadline()
            until = deadline if due is None else min(deadline, due)
            try:
                readable, _, _ = select.select([self.transport.fileno()], [], [], until - now)
            except (OSError, ValueError):
                break
            now = self._now()
            if readable:
                for data, source in self.transport.receive():
                    client.receive_datagram(data, now, source)
            client.on_timer(now)
            self._pump()

    def reload(self, spec: SpecModel) -> str:
        assert isinstance(spec, DHCPv6PrefixDelegationSpec)
        old = self.spec
        if spec.interface != old.interface:
            raise CommandRejected(
                f"interface change ({old.interface} -> {spec.interface}) needs a restart "
                "of the daemon; the running config stays"
            )
        if spec.duid != old.duid:
            raise CommandRejected(
                "a DUID change needs a restart of the daemon (and changes the identity "
                "servers know this router by); the running config stays"
            )
        changed = sorted(
            name for name in type(spec).model_fields if getattr(old, name) != getattr(spec, name)
        )
        self.spec = spec
        if self.client is not None:
            self.client.config = replace(self.client.config, **self._config_fields())
        if self.watcher is not None:
            self.watcher.ifnames = self._watched()
        if self.applier is not None:
            for d in spec.downstream:
                self.downstream[d.interface] = self.applier.link(d.interface)
        self._reconcile()
        self._refresh()
        self._save()
        return "changed: " + ", ".join(changed) + " (applied live)" if changed else "no change"

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome | Future[CommandOutcome]:
        actions = {"renew": "renew", "rebind": "rebind", "release": "release"}
        if name not in actions:
            raise UnknownCommand(f"dhcpv6-client has no command {name!r}")
        client = self.client
        if client is None:
            raise CommandRejected(
                f"no DHCPv6 client yet: interface {self.spec.interface} does not exist"
            )
        before = client.state
        ok: bool = getattr(client, name)(self._now())
        if not ok:
            down = f"; {self.spec.interface} has no carrier"
            if self.link_ready and self.link_local is not None and not self.link_local.usable:
                down = f"; {self.link_local.message}"
            hint = {
                State.LINK_DOWN: down,
                State.RELEASE: "; a Release is under way",
                State.STOPPED: "; the client is stopping",
            }.get(before, "")
            if name in ("rebind", "release") and client.binding is None:
                hint = "; no prefix is held"
            raise CommandRejected(f"cannot {name} in state {before.value}{hint}")
        self._pump()
        b = client.binding
        return CommandOutcome(
            f"{name}: {before.value} -> {client.state.value}",
            {
                "state": client.state.value,
                "previousState": before.value,
                "prefixes": list(b.prefix_strings()) if b else [],
            },
        )

    # ---------------------------------------------------------------- identity
    def _config_fields(self) -> dict[str, Any]:
        s = self.spec
        return {
            "prefix_length": s.prefix_length,
            "rapid_commit": s.rapid_commit,
            "request_ia_na": s.request_address,
            # keepOnStop leaves the prefix configured: releasing it would lie.
            "release_on_stop": s.release_on_stop and not s.keep_on_stop,
        }

    def _ensure_client(self, link: LinkState) -> None:
        """Create the core once a DUID is known (stored, raw, or from the MAC)."""
        if self.client is not None:
            return
        duid = self._identity(
            link.mac if link.exists else None, no_mac=link.exists and not link.mac
        )
        if duid is None:
            return
        self.client_duid = duid
        config = ClientConfig(duid=duid, iaid=self.iaid, **self._config_fields())
        self.client = PdClient(config, random.SystemRandom())

    def _identity(self, mac: str | None, no_mac: bool = False) -> bytes | None:
        """The client DUID: from ``duid.json`` when it matches the spec, else made
        now and stored (atomically, apart from ``state.json``)."""
        store = StateFile(self.state_dir / DUID_FILE)
        stored = store.load() or {}
        want = self.spec.client_duid_type()
        raw = self.spec.duid.raw_bytes() if self.spec.duid is not None else None
        current: bytes | None = None
        try:
            if isinstance(stored.get("duid"), str):
                current = bytes.fromhex(stored["duid"])
                parse_duid(current)
        except (ValueError, DuidError):
            current = None
        if raw is not None:
            if current == raw:
                self.duid_type = "raw"
                return raw
            duid, source = raw, "config"
        elif current is not None and (self.spec.duid is None or stored.get("type") == want):
            self.duid_type = str(stored.get("type") or "unknown")
            return current
        elif mac is None and no_mac and self.spec.duid is None:
            # A WAN without a link-layer address (ppp-<name> of a PPPoE
            # session, a TUN): no DUID-LL can be made from it (RFC 9915
            # §11.4), so a DUID-UUID (RFC 6355), random once, then stored.
            duid, source, want = (
                duid_uuid(uuid.uuid4()),
                f"{self.spec.interface} has no MAC",
                "uuid",
            )
        elif mac is None:
            return None
        elif want == "llt":
            duid, source = duid_llt(mac, dt.datetime.now(dt.UTC)), f"{self.spec.interface} {mac}"
        else:
            duid, source = duid_ll(mac), f"{self.spec.interface} {mac}"
        kind = "raw" if raw is not None else want
        try:
            store.save(
                {
                    "duid": duid.hex(),
                    "type": kind,
                    "createdAt": rfc3339(self.ctx.wall()),
                    "source": source,
                }
            )
        except OSError as exc:
            self._error(f"cannot store the DUID in {store.path}: {exc}")
        self.duid_type = kind
        self.ctx.emit(
            TOPIC_DUID_CREATED,
            reason="DuidCreated",
            message=f"client DUID {duid.hex()} ({kind}, from {source})",
            duid=duid.hex(),
            duidType=kind,
            iaid=self.iaid,
            previousDuid=current.hex() if current is not None else None,
        )
        return duid

    def _saved(self) -> Binding | None:
        data, self._saved_binding = self._saved_binding, None
        if data is None or self.client_duid is None:
            return None
        if self._saved_duid != self.client_duid.hex():
            self.ctx.log.info("saved binding belongs to another DUID; soliciting")
            return None
        try:
            return Binding.from_json(data, self._to_mono)
        except ValueError as exc:
            self._error(f"saved binding discarded: {exc}")
            return None

    # ------------------------------------------------------------------- links
    def _watched(self) -> set[str]:
        return {self.spec.interface, *(d.interface for d in self.spec.downstream)}

    @staticmethod
    def _downstream_ok(state: LinkState) -> bool:
        # Addresses can be placed on an interface that exists and is admin up
        # (IPv6 addresses are flushed when it goes down); carrier is not needed.
        return state.exists and state.admin_up

    def _on_netlink(self) -> None:
        if self.watcher is None or self.applier is None:
            return
        # Every change in order: a link that went down and up again between
        # two reads must still count as a flap (its addresses were flushed).
        states = [c.state for c in self.watcher.drain()]
        addresses_changed = self.watcher.address_events != self._address_events
        self._address_events = self.watcher.address_events
        if self.watcher.overruns != self._overruns:
            self._overruns = self.watcher.overruns
            # Events were lost: look at everything as it is now.
            states += [self.applier.link(name) for name in sorted(self._watched())]
            addresses_changed = True
        downstream = {d.interface for d in self.spec.downstream}
        flapped = False
        for state in states:
            if state.name == self.spec.interface:
                self._wan_event(state)
            elif state.name in downstream:
                flapped |= self._downstream_event(state)
        if flapped:
            self._reconcile()
            self._refresh()
            self._save()
        if addresses_changed or any(st.name == self.spec.interface for st in states):
            # A link-local address came, went, finished DAD, or the WAN's MTU
            # or disable_ipv6 changed (which removes or restores IPv6 on it).
            self._link_local_changed()

    def _wan_event(self, link: LinkState) -> None:
        was_ready = self.link_ready
        old_index = self.link.index if self.link else None
        self.link = link
        self._ensure_client(link)
        if link.ready and (not was_ready or link.index != old_index):
            self._wan_up()
        elif not link.ready and was_ready:
            self._wan_down()
        elif not link.ready:
            self._set_link_condition()
            if self._start_client():
                self._pump()

    def _downstream_event(self, state: LinkState) -> bool:
        """Record a downstream link change; True when it needs re-applying."""
        old = self.downstream.get(state.name)
        self.downstream[state.name] = state
        if old is not None and self._downstream_ok(old) == self._downstream_ok(state):
            return False
        if not self._downstream_ok(state):
            self._forget(state.name)  # the kernel flushed its IPv6 addresses and routes
        return True

    def _forget(self, ifname: str) -> None:
        for key, item in list(self.applied.items()):
            if item.interface == ifname:
                del self.applied[key]

    def _set_link_condition(self) -> None:
        link = self.link
        wan = self.spec.interface
        if link is None or not link.exists:
            reason, msg = "InterfaceMissing", f"{wan} does not exist"
        elif not link.admin_up:
            reason, msg = "AdminDown", f"{wan} is administratively down"
        elif not link.carrier:
            reason, msg = "NoCarrier", f"{wan} has no carrier"
        else:
            reason, msg = "LinkUp", f"{wan} is up ({link.operstate})"
        self.ctx.status.set_condition("LinkReady", link is not None and link.ready, reason, msg)

    def _wan_up(self, initial: bool = False) -> None:
        self.link_ready = True
        self.ipv6_ready = False  # a new link (or index): the core must hear link_up
        self._read_link_local()
        self._set_link_condition()
        if not initial:
            self.link_changes += 1
            self.ctx.emit(
                TOPIC_LINK_UP,
                reason="LinkUp",
                message=f"{self.spec.interface} is up; "
                + ("rebinding the held prefix" if self._holding() else "soliciting"),
                interface=self.spec.interface,
                prefixHeld=self._holding(),
            )
        self._open_socket()
        self._sync_ipv6()
        self._pump()

    def _wan_down(self, initial: bool = False) -> None:
        self.link_ready = False
        self._read_link_local()
        self._set_link_condition()
        if not initial:
            self.link_changes += 1
            self.ctx.emit(
                TOPIC_LINK_DOWN,
                reason="LinkDown",
                message=f"{self.spec.interface} lost its link; holding "
                + (", ".join(self._prefixes()) or "no prefix"),
                severity="warning",
                interface=self.spec.interface,
                prefixHeld=self._holding(),
            )
        self._sync_ipv6()
        self._pump()

    def _read_link_local(self) -> None:
        link = self.link
        if self.applier is None or link is None or not link.exists:
            self.link_local = None
            return
        try:
            self.link_local = self.applier.link_local(self.spec.interface)
        except Exception as exc:  # netlink trouble: keep the last view
            self._error(f"cannot read the addresses of {self.spec.interface}: {exc}")

    def _link_local_changed(self) -> None:
        before = self.link_local
        self._read_link_local()
        if self.link_local == before:
            return
        if self.link_local is not None and self.link_local.usable:
            self.send_blocked = None  # a fresh address: sends will tell
        if self.link_ready:
            self._sync_ipv6()
            self._pump()

    def _sync_ipv6(self) -> None:
        """Tell the core whether the WAN can carry DHCPv6 now.

        Without a usable link-local address nothing can be sent (the kernel
        answers ENETUNREACH or EADDRNOTAVAIL): the core waits in LINK_DOWN,
        keeping what it holds until the valid lifetime, exactly as for a
        carrier loss, and Rebinds (RFC 9915 §18.2.12) or Solicits when the
        address is back. A tentative address is waited for silently (DAD
        takes about a second); anything else is reported.
        """
        ll = self.link_local
        ready = self.link_ready and ll is not None and ll.usable
        problem = self._link_local_problem()
        if problem is not None and not self.link_local_lost:
            self.link_local_lost = True
            reason, message = problem
            self.ctx.emit(
                TOPIC_LINKLOCAL_LOST,
                reason="LinkLocalLost",
                message=f"{message}; DHCPv6 cannot send, holding "
                + (", ".join(self._prefixes()) or "no prefix"),
                severity="warning",
                interface=self.spec.interface,
                cause=reason,
                prefixHeld=self._holding(),
            )
        elif ready and problem is None and self.link_local_lost:
            self.link_local_lost = False
            assert ll is not None
            self.ctx.emit(
                TOPIC_LINKLOCAL_AVAILABLE,
                reason="LinkLocalAvailable",
                message=f"{ll.address} on {self.spec.interface}; "
                + ("rebinding the held prefix" if self._holding() else "soliciting"),
                interface=self.spec.interface,
                address=ll.address,
                prefixHeld=self._holding(),
            )
        changed = ready != self.ipv6_ready
        self.ipv6_ready = ready
        client = self.client
        if client is None or self._start_client() or not changed:
            return
        if ready:
            # Running already: RFC 9915 §18.2.12 — Rebind what is held, or Solicit.
            client.link_up(self._now())
        else:
            client.link_down(self._now())

    def _link_local_problem(self) -> tuple[str, str] | None:
        """(reason, message) when the WAN is up but cannot send DHCPv6; None
        when it can, or is only waiting for DAD (or has no link at all)."""
        if not self.link_ready:
            return None
        ll = self.link_local
        if ll is None:
            return "NoLinkLocal", f"{self.spec.interface} has no IPv6 link-local address"
        if not ll.usable:
            return None if ll.reason == "Tentative" else (ll.reason, ll.message)
        if self.send_blocked is not None:
            return "SendFailed", f"sending on {self.spec.interface} fails: {self.send_blocked}"
        return None

    def _start_client(self) -> bool:
        """Start the core once; True when it started now.

        With the link down, a binding saved before a restart stays in force
        (and expires on time) while nothing is sent.
        """
        client = self.client
        if client is None or self.client_started:
            return False
        self.client_started = True
        now = self._now()
        client.start(now, self._saved())
        if not self.ipv6_ready:
            client.packets_to_send()  # cannot go out; link-up restarts the exchange
            client.link_down(now)
        return True

    def _holding(self) -> bool:
        return bool(self.client and self.client.binding and self.client.binding.prefixes)

    def _prefixes(self) -> list[str]:
        b = self.client.binding if self.client else None
        return list(b.prefix_strings()) if b else []

    # ------------------------------------------------------------------ socket
    def _open_socket(self) -> None:
        self._close_reader()
        try:
            self.transport.open()
        except TransportError as exc:
            self.socket_error = str(exc.strerror or exc)
            self._error(self.socket_error)
            if self.retry_timer is None and not self.stopped:
                self.retry_timer = self.loop.call_later(SOCKET_RETRY, self._retry_socket)
            return
        self.socket_error = None
        self.reader_fd = self.transport.fileno()
        self.loop.add_reader(self.reader_fd, self._on_readable)

    def _retry_socket(self) -> None:
        self.retry_timer = None
        if self.link_ready and not self.transport.is_open:
            self._open_socket()
            self._pump()

    def _close_reader(self) -> None:
        if self.reader_fd is not None:
            self.loop.remove_reader(self.reader_fd)
            self.reader_fd = None

    def _on_readable(self) -> None:
        client = self.client
        datagrams = self.transport.receive()
        if client is None:
            return
        for data, source in datagrams:
            client.receive_datagram(data, self._now(), source)
        self._pump()

    def _send_all(self) -> None:
        client = self.client
        if client is None:
            return
        for msg in client.packets_to_send():
            try:
                payload = encode(msg)
            except EncodeError as exc:  # a core bug; never crash the engine
                self._error(f"cannot encode {msg.type_name}: {exc}")
                continue
            if not self.ipv6_ready or not self.transport.is_open:
                continue  # the core retransmits; link-up restarts the exchange
            try:
                self.transport.send(payload)
            except TransportError as exc:
                self._error(str(exc.strerror or exc))
                if exc.errno in (errno.ENODEV, errno.ENXIO):
                    self._open_socket()
                elif exc.errno in _NO_SOURCE_ERRNOS:
                    # No source address: the link-local is gone (netlink
                    # tells us too; this may come first). Reported, and the
                    # core waits as for a carrier loss when it is gone.
                    self.send_blocked = errno.errorcode.get(exc.errno, str(exc.errno))
                    self._read_link_local()
                    self.loop.call_later(0.0, self._resync_ipv6)
            else:
                if self.send_blocked is not None:
                    self.send_blocked = None
                    self.loop.call_later(0.0, self._resync_ipv6)

    def _resync_ipv6(self) -> None:
        # Not from inside the pump that sent: link_down changes the core.
        if not self.stopped:
            self._sync_ipv6()
            self._pump()

    # -------------------------------------------------------------------- pump
    def _on_timer(self) -> None:
        self.timer = None
        if self.client is None or self.stopped:
            return
        self.client.on_timer(self._now())
        self._pump()

    def _pump(self) -> None:
        client = self.client
        if client is None:
            self._refresh()
            return
        self._send_all()
        prefix_change = False
        for ev in client.events():
            prefix_change |= isinstance(ev, _PREFIX_EVENTS)
            self._emit_core(ev)
        binding = client.binding
        if binding is not self._last_binding or prefix_change:
            held_before = self._last_binding is not None and bool(self._last_binding.prefixes)
            self._last_binding = binding
            if binding is not None and binding.prefixes and not held_before:
                self.ctx.status.set_phase(
                    "Bound", "PrefixDelegated", ", ".join(binding.prefix_strings())
                )
            self._reconcile()
            self._save()
        self._refresh()
        self._schedule()

    def _emit_core(self, ev: CoreEvent) -> None:
        attrs: dict[str, Scalar] = dict(ev.attributes())
        if "reason" in attrs:
            # ``reason`` is the event's own field (the event class name); the
            # core's reason (T1, Withdrawn, xid_mismatch, ...) becomes ``cause``.
            attrs["cause"] = attrs.pop("reason")
        if isinstance(ev, (PrefixBound, PrefixExpired, PrefixReleased, ServerChanged)):
            attrs.setdefault("interface", self.spec.interface)
        self.ctx.emit(
            ev.topic,
            reason=type(ev).__name__,
            message=_message(ev),
            severity=_SEVERITIES.get(ev.severity, "info"),
            **attrs,
        )

    def _schedule(self) -> None:
        client = self.client
        due = None if client is None or self.stopped else client.next_deadline()
        if self.timer is not None and (due is None or self.timer.when != due):
            self.timer.cancel()
            self.timer = None
        if due is not None and self.timer is None:
            self.timer = self.loop.call_at(due, self._on_timer)

    # ---------------------------------------------------------------- applying
    def _reconcile(self, remove_all: bool = False) -> None:
        """Make the host match the binding: add/refresh what is due, remove the rest."""
        applier = self.applier
        if applier is None:
            return
        now = self._now()
        binding = None if remove_all or self.client is None else self.client.binding
        desired, self.assignments = desired_items(binding, self.spec, now)
        errors: list[tuple[str, str, bool]] = [
            (f"{a.interface} ({a.prefix})", a.problem, False) for a in self.assignments if a.problem
        ]
        for key, item in list(self.applied.items()):
            if key in desired:
                continue
            try:
                self._remove(applier, item)
            except ApplyError as exc:
                errors.append((item.describe(), str(exc.strerror or exc), False))
                continue
            del self.applied[key]
            if item.kind != "unreachable":
                self.ctx.emit(
                    TOPIC_DOWNSTREAM_REMOVED,
                    reason="Removed",
                    message=f"removed {item.describe()}",
                    interface=item.interface,
                    prefix=item.prefix,
                    address=item.cidr if item.kind == "address" else None,
                    subnet=item.cidr if item.kind == "route" else None,
                )
        for key, (item, life) in desired.items():
            link = self.downstream.get(item.interface) if item.interface else None
            if link is not None and link.exists and not link.admin_up:
                continue  # the kernel flushes IPv6 addresses of a down link: add on up
            try:
                self._add(applier, item, life.valid, life.preferred)
            except ApplyError as exc:
                missing = exc.errno == errno.ENODEV
                errors.append((item.describe(), str(exc.strerror or exc), missing))
                continue
            if key not in self.applied:
                self.applied[key] = item
                if item.kind != "unreachable":
                    self.ctx.emit(
                        TOPIC_DOWNSTREAM_ASSIGNED,
                        reason="Assigned",
                        message=f"{item.describe()} from {item.prefix}",
                        interface=item.interface,
                        prefix=item.prefix,
                        address=item.cidr if item.kind == "address" else None,
                        subnet=item.cidr if item.kind == "route" else None,
                    )
        failed = {f"{where}: {msg}" for where, msg, _ in errors}
        for text in sorted(failed - self._last_failed):
            self.ctx.emit(
                TOPIC_DOWNSTREAM_FAILED,
                reason="ApplyFailed",
                message=text,
                severity="error",
                error=text,
            )
        if failed:
            self._error("; ".join(sorted(failed)))
        self._last_failed = failed
        self.apply_errors = errors

    @staticmethod
    def _add(applier: NetApplier, item: Item, valid: float | None, preferred: float | None) -> None:
        if item.kind == "address":
            assert item.interface is not None
            applier.add_address(item.interface, item.cidr, valid=valid, preferred=preferred)
        elif item.kind == "route":
            applier.replace_route(item.cidr, ifname=item.interface)
        else:
            applier.replace_route(item.cidr, type_="unreachable")

    @staticmethod
    def _remove(applier: NetApplier, item: Item) -> None:
        if item.kind == "address":
            assert item.interface is not None
            applier.remove_address(item.interface, item.cidr)
        elif item.kind == "route":
            applier.remove_route(item.cidr, ifname=item.interface)
        else:
            applier.remove_route(item.cidr, type_="unreachable")

    # ------------------------------------------------------------------ status
    def _error(self, text: str) -> None:
        self.last_error = text
        self.last_error_at = self.ctx.wall()
        self.ctx.log.warning("%s", text)

    def _refresh(self) -> None:
        """Phase, conditions and ``observed`` from the current facts."""
        status = self.ctx.status
        client = self.client
        b = client.binding if client is not None else None
        held = b is not None and bool(b.prefixes)
        state = client.state if client is not None else None
        if held:
            assert b is not None
            status.set_condition(
                "PrefixDelegated",
                True,
                "Delegated",
                f"{', '.join(b.prefix_strings())} from {b.server_duid.hex()}",
            )
        else:
            reason = _STATE_REASONS.get(state, "NoClient") if state else "NoClient"
            if not self.link_ready:
                reason = "LinkDown"
            status.set_condition("PrefixDelegated", False, reason, "no prefix held")
        if not self.spec.apply_prefixes:
            status.remove_condition("PrefixAssigned")
        elif not held:
            status.set_condition("PrefixAssigned", False, "NoPrefix", "nothing to assign")
        elif self.apply_errors:
            missing = any(m for _, _, m in self.apply_errors)
            text = "; ".join(f"{w}: {m}" for w, m, _ in self.apply_errors)
            status.set_condition(
                "PrefixAssigned", False, "InterfaceMissing" if missing else "ApplyFailed", text
            )
        else:
            done = [f"{a.address or a.subnet} on {a.interface}" for a in self.assignments]
            status.set_condition(
                "PrefixAssigned", True, "Assigned", ", ".join(done) or "unreachable route only"
            )
        problem = self._link_local_problem()
        self._set_link_local_condition(problem)
        if self.socket_error is not None and self.link_ready:
            status.set_phase("Error", "SocketFailed", self.socket_error)
        elif problem is not None and held:
            # The prefix can no longer be renewed: reporting it Applied would
            # present a verdict nobody refreshes as current.
            status.set_phase("Error", "NoLinkLocal", f"{problem[1]}; the prefix cannot be renewed")
        elif not held:
            status.set_phase("Pending", *self._pending_why(problem))
        elif not self.spec.apply_prefixes:
            status.set_phase("Bound", "PrefixDelegated", ", ".join(self._prefixes()))
        elif self.apply_errors:
            cond = status.condition("PrefixAssigned")
            status.set_phase(
                "Error", cond.reason if cond else "ApplyFailed", cond.message if cond else ""
            )
        else:
            status.set_phase("Applied", "PrefixAssigned", ", ".join(self._prefixes()))
        status.set_observed(self._observed())

    def _pending_why(self, problem: tuple[str, str] | None) -> tuple[str, str]:
        """(reason, message) of the Pending phase (no prefix held)."""
        wan = self.spec.interface
        if not self.link_ready:
            if self.client is None:
                return "LinkDown", f"{wan} does not exist; waiting for it"
            return "LinkDown", f"{wan} is not ready; waiting for its link"
        if not self.ipv6_ready or problem is not None:
            ll = self.link_local
            text = problem[1] if problem is not None else None
            text = text or (ll.message if ll is not None else f"{wan} has no link-local address")
            return "NoLinkLocal", f"{text}; waiting"
        state = self.client.state.value if self.client is not None else "-"
        return "NoPrefix", f"no prefix yet ({state})"

    def _set_link_local_condition(self, problem: tuple[str, str] | None) -> None:
        status = self.ctx.status
        ll = self.link_local
        if not self.link_ready:
            status.set_condition(
                "LinkLocalAvailable", False, "LinkDown", f"{self.spec.interface} has no link"
            )
        elif problem is not None:
            status.set_condition("LinkLocalAvailable", False, problem[0], problem[1])
        elif ll is not None and ll.usable:
            status.set_condition("LinkLocalAvailable", True, "Available", ll.message)
        else:  # tentative: DAD is running
            status.set_condition(
                "LinkLocalAvailable",
                False,
                "Tentative",
                ll.message if ll is not None else "waiting for a link-local address",
            )

    def _observed(self) -> dict[str, Any]:
        client = self.client
        b = client.binding if client is not None else None
        wall = self._to_wall
        counters: dict[str, Any] = (
            client.counters.as_dict()
            if client is not None
            else {"sent": {}, "received": {}, "dropped": {}, "rejected": {}}
        )
        dropped = dict(counters["dropped"])
        for reason, n in self.transport.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
        counters["dropped"] = dropped
        counters["sendErrors"] = dict(self.transport.send_errors)
        counters["kernelDrops"] = self.transport.kernel_drops
        counters["linkChanges"] = self.link_changes
        prefixes = []
        if b is not None:
            for p in b.prefixes:
                prefixes.append(
                    {
                        "prefix": p.prefix,
                        "preferredLifetime": p.preferred,
                        "validLifetime": p.valid,
                        "acquiredAt": _time(wall(p.acquired)),
                        "preferredUntil": None
                        if math.isinf(p.preferred_until)
                        else _time(wall(p.preferred_until)),
                        "validUntil": None
                        if math.isinf(p.valid_until)
                        else _time(wall(p.valid_until)),
                    }
                )
        assigned = [a.to_json() for a in self.assignments if not a.problem]
        return {
            "state": client.state.value if client is not None else "INIT",
            "interface": self.spec.interface,
            "linkReady": self.link_ready,
            "linkLocal": self.link_local.address if self.link_local is not None else None,
            "prefixes": prefixes,
            "assigned": assigned,
            "unreachableRoutes": sorted(
                i.cidr for i in self.applied.values() if i.kind == "unreachable"
            ),
            "addresses": [
                {
                    "address": a.address,
                    "preferredLifetime": a.preferred,
                    "validLifetime": a.valid,
                    "validUntil": None if math.isinf(a.valid_until) else _time(wall(a.valid_until)),
                }
                for a in (b.addresses if b is not None else ())
            ],
            "t1": _seconds(b.t1) if b is not None else None,
            "t2": _seconds(b.t2) if b is not None else None,
            "renewAt": _time(wall(b.renew_at))
            if b is not None and math.isfinite(b.renew_at)
            else None,
            "rebindAt": _time(wall(b.rebind_at))
            if b is not None and math.isfinite(b.rebind_at)
            else None,
            "acquiredAt": _time(wall(b.acquired)) if b is not None else None,
            "serverDuid": b.server_duid.hex() if b is not None else None,
            "serverAddress": b.server_address if b is not None else None,
            "clientDuid": self.client_duid.hex() if self.client_duid is not None else None,
            "duidType": self.duid_type,
            "iaid": self.iaid,
            "dns": list(b.dns) if b is not None else [],
            "domains": list(b.domains) if b is not None else [],
            "sntp": list(b.sntp) if b is not None else [],
            "ntp": list(b.ntp) if b is not None else [],
            "aftrName": b.aftr_name if b is not None else None,
            "counters": counters,
            "lastError": self.last_error,
            "lastErrorAt": _time(self.last_error_at),
        }

    def _save(self) -> None:
        client = self.client
        b = client.binding if client is not None else None
        try:
            self.ctx.state.save(
                {
                    "version": STATE_VERSION,
                    "interface": self.spec.interface,
                    "iaid": self.iaid,
                    "clientDuid": self.client_duid.hex()
                    if self.client_duid is not None
                    else self._saved_duid,
                    # Not yet handed to a client (no DUID yet): keep it for later.
                    "binding": b.to_json(self._to_wall)
                    if b is not None and b.prefixes
                    else self._saved_binding,
                    "applied": [i.to_json() for i in self.applied.values()],
                    "savedAt": rfc3339(self.ctx.wall()),
                }
            )
        except OSError as exc:
            self._error(f"cannot save state: {exc}")
