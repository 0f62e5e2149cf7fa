"""The dhcpv4-client daemon's engine: glue between the sans-I/O core, the
sockets, the loop's timers, netlink and the daemon's status and events.

After every input (a frame, a timer, a command, a link change) the engine
*pumps*: it sends what the core queued, turns the core's events into daemon
events and host changes, saves the lease, re-arms the timer at
``core.next_deadline()`` and publishes status. Everything runs on the engine
thread; sockets and netlink handles are created there in :meth:`start`.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
import contextlib
from dataclasses import replace
import math
import os
from pathlib import Path
import random
from typing import Any

from routerd.config import SpecModel
from routerd.daemon.engine import CommandOutcome
from routerd.daemon.engine import DaemonContext
from routerd.daemon.engine import DaemonEngine
from routerd.daemon.loop import TimerHandle
from routerd.daemon.statefile import atomic_write
from routerd.errors import CommandRejected
from routerd.errors import UnknownCommand
from routerd.model import Scalar
from routerd.model import Severity
from routerd.netapply import IPV6_MIN_MTU
from routerd.netapply import ApplyError
from routerd.netapply import LinkState
from routerd.netapply import LinkWatcher
from routerd.netapply import NetApplier
from routerd.packetstats import DropCounter
from routerd.timefmt import rfc3339

from routerd_dhcpv4.apply import ApplyErrors
from routerd_dhcpv4.apply import HostConfig
from routerd_dhcpv4.apply import desired_config
from routerd_dhcpv4.arp import ArpProbe
from routerd_dhcpv4.codec import BROADCAST_MAC
from routerd_dhcpv4.codec import mac_to_str
from routerd_dhcpv4.core import ClientConfig
from routerd_dhcpv4.core import DhcpClientCore
from routerd_dhcpv4.core import Outgoing
from routerd_dhcpv4.core import State
from routerd_dhcpv4.events import CoreEvent
from routerd_dhcpv4.events import Declined
from routerd_dhcpv4.events import LeaseAbandoned
from routerd_dhcpv4.events import LeaseBound
from routerd_dhcpv4.events import LeaseExpired
from routerd_dhcpv4.events import LeaseRebound
from routerd_dhcpv4.events import LeaseRenewed
from routerd_dhcpv4.events import Nak
from routerd_dhcpv4.events import OptionRejected
from routerd_dhcpv4.events import PacketDropped
from routerd_dhcpv4.events import PacketReceived
from routerd_dhcpv4.events import PacketSent
from routerd_dhcpv4.events import Released
from routerd_dhcpv4.events import StateChanged
from routerd_dhcpv4.lease import Lease
from routerd_dhcpv4.spec import DHCPv4ClientSpec
from routerd_dhcpv4.transport import PacketTransport
from routerd_dhcpv4.transport import UnicastSender

TOPIC_BOUND = "routerd.dhcpv4.client.lease.bound"
TOPIC_RENEWED = "routerd.dhcpv4.client.lease.renewed"
TOPIC_REBOUND = "routerd.dhcpv4.client.lease.rebound"
TOPIC_EXPIRED = "routerd.dhcpv4.client.lease.expired"
TOPIC_RELEASED = "routerd.dhcpv4.client.lease.released"
TOPIC_NAK = "routerd.dhcpv4.client.lease.nak"
TOPIC_DECLINED = "routerd.dhcpv4.client.lease.declined"
TOPIC_ABANDONED = "routerd.dhcpv4.client.lease.abandoned"
TOPIC_CONFLICT = "routerd.dhcpv4.client.address.conflict"
TOPIC_LINK_DOWN = "routerd.dhcpv4.client.link.down"
TOPIC_LINK_UP = "routerd.dhcpv4.client.link.up"
TOPIC_APPLY_FAILED = "routerd.dhcpv4.client.apply.failed"
TOPIC_OPTION_REJECTED = "routerd.dhcpv4.client.option.rejected"
TOPIC_MTU_CLAMPED = "routerd.dhcpv4.client.mtu.clamped"
TOPIC_STATE = "routerd.dhcpv4.client.state.changed"
TOPIC_DISCOVER = "routerd.dhcpv4.client.discover.sent"
TOPIC_REQUEST = "routerd.dhcpv4.client.request.sent"
TOPIC_RELEASE_SENT = "routerd.dhcpv4.client.release.sent"
TOPIC_DECLINE_SENT = "routerd.dhcpv4.client.decline.sent"
TOPIC_OFFER = "routerd.dhcpv4.client.offer.received"
TOPIC_ACK = "routerd.dhcpv4.client.ack.received"
TOPIC_NAK_RECEIVED = "routerd.dhcpv4.client.nak.received"
TOPIC_PACKET_RECEIVED = "routerd.dhcpv4.client.packet.received"
TOPIC_PACKET_DROPPED = "routerd.dhcpv4.client.packet.dropped"
#: Every topic this plugin emits (checked against docs/events.md by a test).
TOPICS = (
    TOPIC_BOUND,
    TOPIC_RENEWED,
    TOPIC_REBOUND,
    TOPIC_EXPIRED,
    TOPIC_RELEASED,
    TOPIC_NAK,
    TOPIC_DECLINED,
    TOPIC_ABANDONED,
    TOPIC_CONFLICT,
    TOPIC_LINK_DOWN,
    TOPIC_LINK_UP,
    TOPIC_APPLY_FAILED,
    TOPIC_OPTION_REJECTED,
    TOPIC_MTU_CLAMPED,
    TOPIC_STATE,
    TOPIC_DISCOVER,
    TOPIC_REQUEST,
    TOPIC_RELEASE_SENT,
    TOPIC_DECLINE_SENT,
    TOPIC_OFFER,
    TOPIC_ACK,
    TOPIC_NAK_RECEIVED,
    TOPIC_PACKET_RECEIVED,
    TOPIC_PACKET_DROPPED,
)
_SENT_TOPICS = {
    "DISCOVER": TOPIC_DISCOVER,
    "REQUEST": TOPIC_REQUEST,
    "RELEASE": TOPIC_RELEASE_SENT,
    "DECLINE": TOPIC_DECLINE_SENT,
}
_RECEIVED_TOPICS = {"OFFER": TOPIC_OFFER, "ACK": TOPIC_ACK, "NAK": TOPIC_NAK_RECEIVED}
_CONFIGURED = (State.BOUND, State.RENEWING, State.REBINDING)
#: Debug packet events: at most this many per window (a flood of rogue
#: packets must not flood the event log; the counters still count them all).
DEBUG_EVENT_BUDGET = 100
DEBUG_EVENT_WINDOW = 10.0
#: At most this many rejected values are named in one option.rejected event.
REJECTED_SHOWN = 8
#: After a failed netlink operation, try again this much later.
APPLY_RETRY = 5.0
_STATE_VERSION = 1
#: Fields whose change needs a new protocol core (a new client identity).
_IDENTITY_FIELDS = (
    "client_id",
    "hostname",
    "vendor_class",
    "parameter_request_list",
    "requested_address",
    "rapid_commit",
    "release_on_stop",
    "decline_on_conflict",
    "initial_delay",
)


def _mac_bytes(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        mac = bytes.fromhex(text.replace(":", "").replace("-", ""))
    except ValueError:
        return None
    return mac if len(mac) == 6 and any(mac) else None


class DHCPv4ClientEngine(DaemonEngine):
    """One DHCPv4 client on one interface (engine thread only)."""

    def __init__(self, ctx: DaemonContext) -> None:
        assert isinstance(ctx.spec, DHCPv4ClientSpec)
        self.ctx = ctx
        self.spec: DHCPv4ClientSpec = ctx.spec
        self.loop = ctx.loop
        self.rng = random.SystemRandom()
        self.core: DhcpClientCore | None = None
        self.mac: bytes | None = None
        self.applier: NetApplier | None = None
        self.watcher: LinkWatcher | None = None
        self.transport: PacketTransport | None = None
        self.unicast: UnicastSender | None = None
        self.link = LinkState(self.spec.interface, None, False)
        self.applied = HostConfig()
        self.errors = ApplyErrors()
        self.saved_lease: Lease | None = None
        self.saved_mac: bytes | None = None
        self.probe: ArpProbe | None = None
        self.timer: TimerHandle | None = None
        self.timer_at: float | None = None
        self.retry: TimerHandle | None = None
        self.server_mac: bytes | None = None
        self.frame_mac: bytes | None = None
        self.send_failures = 0
        self.socket_error: str | None = None
        self.last_error: str | None = None
        self.released = False
        self.stopped = False
        self.acquired_wall: float | None = None
        self.counter_base: dict[str, Counter[str]] = {}
        # Kept across packet sockets (an interface re-created gets a new one).
        self.kernel_drops = DropCounter()
        self.debug_budget = DEBUG_EVENT_BUDGET
        self.debug_window = 0.0
        self.debug_suppressed = 0

    # -- clocks ----------------------------------------------------------------
    def now(self) -> float:
        return self.loop.clock()

    def mono_to_wall(self, mono: float) -> float:
        return self.ctx.wall() - (self.loop.clock() - mono)

    def wall_to_mono(self, wall: float) -> float:
        return self.loop.clock() - (self.ctx.wall() - wall)

    def _iso(self, mono: float) -> str | None:
        return None if math.isinf(mono) else rfc3339(self.mono_to_wall(mono))

    # -- lifecycle -------------------------------------------------------------
    def start(self, ctx: DaemonContext) -> None:
        self._restore()
        self.applier = NetApplier()
        self.watcher = LinkWatcher({self.spec.interface})
        self.loop.add_reader(self.watcher.fileno(), self._on_link_readable)
        self._check_link()
        self._publish()

    def stop(self) -> None:
        self.stopped = True
        self._cancel_probe()
        for handle in (self.timer, self.retry):
            if handle is not None:
                handle.cancel()
        core = self.core
        if core is not None:
            if core.state is not State.STOPPED:
                core.stop(self.now())
            self._pump(publish=False)
        if not self.spec.keep_on_stop:
            self._converge(HostConfig())
        self._save()
        self._close_sockets()
        if self.watcher is not None:
            self.loop.remove_reader(self.watcher.fileno())
            self.watcher.close()
            self.watcher = None
        if self.applier is not None:
            with contextlib.suppress(Exception):
                self.applier.close()
            self.applier = None

    def reload(self, spec: SpecModel) -> str:
        assert isinstance(spec, DHCPv4ClientSpec)
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
        if self.core is not None and any(
            getattr(old, f) != getattr(spec, f) for f in _IDENTITY_FIELDS
        ):
            self._rebuild_core()
        self._reconverge()
        self._pump()
        return "changed: " + ", ".join(changed) if changed else "no change"

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome | Future[CommandOutcome]:
        core = self.core
        if name not in ("renew", "rebind", "release"):
            raise UnknownCommand(f"dhcpv4-client has no command {name!r}")
        if core is None or not self.link.ready:
            raise CommandRejected(
                f"interface {self.spec.interface} is not ready (link down or missing)"
            )
        now = self.now()
        before = core.state.value
        if name == "renew":
            if core.state in _CONFIGURED:
                core.renew(now)
                message = f"renewing {core.lease.interface_address if core.lease else ''}".strip()
            else:
                # No lease to refresh: acquire one now (after a release, or
                # instead of waiting for the next retransmission).
                self._cancel_probe()
                if core.state is not State.STOPPED:
                    core.stop(now)
                self.released = False
                core.start(now)
                message = "acquiring a lease"
        elif name == "rebind":
            if not core.rebind(now):
                raise CommandRejected(f"no lease to rebind (state {before})")
            message = "rebinding (broadcast REQUEST)"
        else:
            lease = core.lease
            self._cancel_probe()
            if not core.release(now):
                raise CommandRejected(f"no lease to release (state {before})")
            self.released = True
            message = f"released {lease.interface_address if lease else ''}".strip()
        self._pump()
        return CommandOutcome(
            message, {"previousState": before, "state": core.state.value, **self._lease_brief()}
        )

    # -- state file ------------------------------------------------------------
    def _restore(self) -> None:
        data = self.ctx.state.load()
        if not data or data.get("version") != _STATE_VERSION:
            return
        if data.get("interface") != self.spec.interface:
            return  # another interface's record: nothing of it is ours here
        self.applied = HostConfig.from_json(data.get("applied"))
        self.saved_mac = _mac_bytes(data.get("mac"))
        lease = data.get("lease")
        if isinstance(lease, dict):
            try:
                self.saved_lease = Lease.from_json(lease, self.wall_to_mono)
            except ValueError as exc:
                self.ctx.log.warning("saved lease unusable: %s", exc)

    def _save(self) -> None:
        core = self.core
        lease = core.lease if core is not None else self.saved_lease
        data = {
            "version": _STATE_VERSION,
            "interface": self.spec.interface,
            "mac": mac_to_str(self.mac)
            if self.mac
            else (mac_to_str(self.saved_mac) if self.saved_mac else None),
            "lease": lease.to_json(self.mono_to_wall) if lease is not None else None,
            "applied": self.applied.to_json(),
        }
        try:
            self.ctx.state.save(data)
        except OSError as exc:
            self.last_error = f"cannot save state: {exc}"
            self.ctx.log.warning("%s", self.last_error)

    # -- the link --------------------------------------------------------------
    def _on_link_readable(self) -> None:
        if self.watcher is not None:
            self.watcher.drain()  # the kernel's current view is read below
        self._check_link()

    def _check_link(self) -> None:
        if self.applier is None or self.stopped:
            return
        try:
            st = self.applier.link(self.spec.interface)
        except Exception as exc:  # netlink trouble: keep the last view
            self.last_error = f"cannot read link {self.spec.interface}: {exc}"
            return
        self.link = st
        now = self.now()
        if not st.exists:
            self._close_sockets()
        elif self.transport is None or self.transport.index != st.index:
            self._close_sockets()
            self._open_transport(st)
        if st.exists and self.core is None and self.mac is not None:
            self._create_core(st.ready)
        core = self.core
        if core is not None:
            if st.ready and not core.link_is_up:
                self.ctx.emit(
                    TOPIC_LINK_UP,
                    reason="LinkUp",
                    message=f"{self.spec.interface} is up with carrier",
                    interface=self.spec.interface,
                    state=core.state.value,
                )
                core.link_up(now)
            elif not st.ready and core.link_is_up:
                self._cancel_probe()
                core.link_down(now)
                self.ctx.emit(
                    TOPIC_LINK_DOWN,
                    reason="LinkDown",
                    message=f"{self.spec.interface} lost its link ({st.operstate}); "
                    "keeping the lease until it expires",
                    severity="warning",
                    interface=self.spec.interface,
                    operstate=st.operstate,
                    exists=st.exists,
                )
        self._pump()

    def _open_transport(self, st: LinkState) -> None:
        mac = _mac_bytes(st.mac)
        if mac is None:
            self.socket_error = f"{self.spec.interface} has no Ethernet address"
            return
        try:
            self.transport = PacketTransport(self.spec.interface, mac, drops=self.kernel_drops)
        except OSError as exc:
            self.socket_error = f"cannot open a packet socket on {self.spec.interface}: {exc}"
            self.transport = None
            return
        self.socket_error = None
        if self.mac is not None and self.mac != mac and self.core is not None:
            # A different NIC under the same name: a new client identity.
            self.mac = mac
            self._rebuild_core()
        self.mac = mac
        self.loop.add_reader(self.transport.fileno(), self._on_frames)

    def _close_sockets(self) -> None:
        if self.transport is not None:
            self.loop.remove_reader(self.transport.fileno())
            self.transport.close()
            self.transport = None
        self._close_unicast()

    def _close_unicast(self) -> None:
        if self.unicast is not None:
            self.loop.remove_reader(self.unicast.fileno())
            self.unicast.close()
            self.unicast = None

    # -- the protocol core -----------------------------------------------------
    def _client_config(self) -> ClientConfig:
        assert self.mac is not None
        spec = self.spec
        return ClientConfig(
            mac=self.mac,
            client_id=spec.client_id_bytes(self.mac),
            hostname=spec.hostname,
            vendor_class=spec.vendor_class.encode() if spec.vendor_class else None,
            parameter_request_list=tuple(spec.parameter_request_list),
            requested_address=spec.requested_address,
            rapid_commit=spec.rapid_commit,
            release_on_stop=spec.release_on_stop,
            decline_on_conflict=spec.decline_on_conflict,
            initial_delay=spec.initial_delay,
        )

    def _create_core(self, link_ready: bool) -> None:
        now = self.now()
        core = DhcpClientCore(self._client_config(), self.rng)
        if not link_ready:
            core.link_down(now)
        lease = self.saved_lease
        self.saved_lease = None
        if lease is not None and self.saved_mac is not None and self.saved_mac != self.mac:
            lease = None  # another NIC's lease
        if lease is not None and lease.expired(now):
            lease = None
        if lease is None and not self.applied.empty:
            # Left from a run whose lease cannot be confirmed: take it away.
            self._converge(HostConfig())
        self.core = core
        core.start(now, lease)

    def _rebuild_core(self) -> None:
        old = self.core
        if old is None or self.mac is None:
            return
        for group, values in old.counters.items():
            self.counter_base.setdefault(group, Counter()).update(values)
        lease = old.lease
        was_stopped = old.state is State.STOPPED
        link_up = old.link_is_up
        self._cancel_probe()
        core = DhcpClientCore(self._client_config(), self.rng)
        if not link_up:
            core.link_down(self.now())
        self.core = core
        if not was_stopped:
            core.start(self.now(), lease)

    def _pump(self, publish: bool = True) -> None:
        core = self.core
        if core is not None:
            for _ in range(100):
                packets = core.packets_to_send()
                events = core.events()
                if not packets and not events:
                    break
                for out in packets:
                    self._transmit(out)
                for event in events:
                    self._on_core_event(event)
            self._arm_timer()
        if publish:
            self._publish()

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

    def _on_frames(self) -> None:
        transport = self.transport
        core = self.core
        if transport is None:
            return
        frames = transport.receive()
        if core is None or self.stopped:
            return
        for frame in frames:
            self.frame_mac = frame.src_mac
            core.receive_payload(frame.payload, self.now())
            self._pump(publish=False)
        self.frame_mac = None
        self._publish()

    def _transmit(self, out: Outgoing) -> None:
        transport = self.transport
        try:
            if out.broadcast or out.dest is None:
                if transport is None:
                    raise OSError(f"{self.spec.interface} has no packet socket")
                transport.send(out.payload, src_ip=out.source)
                return
            try:
                self._unicast_for(out.source).send(out.payload, out.dest)
            except OSError:
                # No route to the server (address not applied, link trouble):
                # a unicast frame to the server's MAC still gets there.
                if transport is None:
                    raise
                transport.send(
                    out.payload,
                    src_ip=out.source,
                    dst_ip=out.dest,
                    dst_mac=self.server_mac or BROADCAST_MAC,
                )
        except OSError as exc:
            self.send_failures += 1
            self.last_error = f"sending {out.message.message_type_name} failed: {exc}"
            self.ctx.log.warning("%s", self.last_error)

    def _unicast_for(self, source: str) -> UnicastSender:
        if self.unicast is not None and self.unicast.address == source:
            return self.unicast
        self._close_unicast()
        sender = UnicastSender(self.spec.interface, source)
        self.unicast = sender
        self.loop.add_reader(sender.fileno(), sender.drain)
        return sender

    # -- core events -----------------------------------------------------------
    def _on_core_event(self, event: CoreEvent) -> None:
        if isinstance(event, LeaseBound | LeaseRenewed | LeaseRebound):
            self._on_lease(event)
        elif isinstance(event, LeaseExpired | Nak | Released | Declined | LeaseAbandoned):
            self._on_lease_ended(event)
        elif isinstance(event, OptionRejected):
            # A server can list ~300 routers: the event shows the first few,
            # ``count`` says how many (the counters count them all).
            values, reasons = event.values[:REJECTED_SHOWN], event.reasons[:REJECTED_SHOWN]
            more = len(event.values) - len(values)
            shown = ", ".join(f"{v} ({why})" for v, why in zip(values, reasons, strict=True))
            self.ctx.emit(
                TOPIC_OPTION_REJECTED,
                reason="OptionRejected",
                message=f"ignored {event.name} (option {event.option}) from "
                f"{event.server_id}: {shown}" + (f" and {more} more" if more else ""),
                severity="warning",
                option=event.option,
                optionName=event.name,
                value=",".join(values),
                why=",".join(reasons),
                count=len(event.values),
                serverId=event.server_id,
                address=event.address,
            )
        elif isinstance(event, StateChanged):
            self._debug(
                TOPIC_STATE,
                "StateChanged",
                f"{event.old} -> {event.new} ({event.reason})",
                old=event.old,
                new=event.new,
                why=event.reason,
            )
        elif isinstance(event, PacketSent):
            topic = _SENT_TOPICS.get(event.message_type)
            if topic is not None:
                self._debug(
                    topic,
                    event.message_type.capitalize() + "Sent",
                    f"{event.message_type} xid {event.xid:#010x} attempt {event.attempt}"
                    + (" (broadcast)" if event.broadcast else f" to {event.dest}"),
                    messageType=event.message_type,
                    xid=f"{event.xid:#010x}",
                    attempt=event.attempt,
                    broadcast=event.broadcast,
                    dest=event.dest,
                )
        elif isinstance(event, PacketReceived):
            self._debug(
                _RECEIVED_TOPICS.get(event.message_type, TOPIC_PACKET_RECEIVED),
                event.message_type.capitalize() + "Received",
                f"{event.message_type} xid {event.xid:#010x} from {event.server_id or '?'}",
                messageType=event.message_type,
                xid=f"{event.xid:#010x}",
                serverId=event.server_id,
            )
        elif isinstance(event, PacketDropped):
            self._debug(
                TOPIC_PACKET_DROPPED,
                "PacketDropped",
                f"dropped {event.message_type or 'packet'}: {event.reason}",
                why=event.reason,
                messageType=event.message_type,
                xid=None if event.xid is None else f"{event.xid:#010x}",
            )

    def _lease_attrs(self, lease: Lease) -> dict[str, Scalar]:
        return {
            "address": lease.interface_address,
            "serverId": lease.server_id,
            "routers": ",".join(lease.routers),
            "dns": ",".join(lease.dns),
            "domain": lease.domain,
            "mtu": lease.mtu,
            "leaseTime": None if lease.infinite else lease.lease_time,
            "t1": None if math.isinf(lease.t1) else round(lease.t1, 3),
            "t2": None if math.isinf(lease.t2) else round(lease.t2, 3),
            "expiresAt": self._iso(lease.expires_at),
        }

    def _on_lease(self, event: LeaseBound | LeaseRenewed | LeaseRebound) -> None:
        lease, previous = event.lease, event.previous
        if self.frame_mac is not None:
            self.server_mac = self.frame_mac
        self.released = False
        if isinstance(event, LeaseBound) or self.acquired_wall is None:
            self.acquired_wall = self.mono_to_wall(lease.acquired)
        if isinstance(event, LeaseRenewed):
            topic, reason, verb = TOPIC_RENEWED, "LeaseRenewed", "renewed"
        elif isinstance(event, LeaseRebound):
            topic, reason, verb = TOPIC_REBOUND, "LeaseRebound", "rebound"
        else:
            topic, reason, verb = TOPIC_BOUND, "LeaseBound", "bound"
        self._emit(
            topic,
            reason=reason,
            message=f"{lease.interface_address} {verb} from {lease.server_id}"
            f" for {'ever' if lease.infinite else f'{lease.lease_time} s'}",
            previousAddress=previous.interface_address if previous else None,
            **self._lease_attrs(lease),
        )
        new_address = previous is None or previous.address != lease.address
        already_ours = self.applied.address == lease.interface_address
        if (
            isinstance(event, LeaseBound)
            and self.spec.decline_on_conflict
            and new_address
            and not already_ours
            and self.mac is not None
        ):
            self._start_probe(lease)
        elif self.probe is None or self.probe.address != lease.address:
            self._cancel_probe()
            self._converge(desired_config(lease, self.spec, self.applied.original_mtu))
        self._save()

    def _on_lease_ended(self, event: CoreEvent) -> None:
        lease: Lease | None = getattr(event, "lease", None)
        self._cancel_probe()
        self._converge(HostConfig())
        self._close_unicast()
        address = lease.interface_address if lease else None
        if isinstance(event, LeaseExpired):
            self._emit(
                TOPIC_EXPIRED,
                reason="LeaseExpired",
                message=f"{address} expired without a renewal; removed",
                severity="warning",
                **self._lease_attrs(event.lease),
            )
        elif isinstance(event, Nak):
            self.ctx.emit(
                TOPIC_NAK,
                reason="LeaseNak",
                message=f"NAK from {event.server_id or '?'}"
                + (f" for {address}" if address else "")
                + (f": {event.message}" if event.message else ""),
                severity="warning",
                address=address,
                serverId=event.server_id,
                serverMessage=event.message,
            )
        elif isinstance(event, Released):
            self._emit(
                TOPIC_RELEASED,
                reason="LeaseReleased",
                message=f"{address} released to {event.lease.server_id}",
                **self._lease_attrs(event.lease),
            )
        elif isinstance(event, Declined):
            self.ctx.emit(
                TOPIC_DECLINED,
                reason="LeaseDeclined",
                message=f"declined {event.address}: in use by another host",
                severity="warning",
                address=event.address,
                serverId=event.lease.server_id if event.lease else None,
            )
        elif isinstance(event, LeaseAbandoned):
            self._emit(
                TOPIC_ABANDONED,
                reason="LeaseAbandoned",
                message=f"no answer confirming {address}; discovering again",
                severity="warning",
                why=event.reason,
                **self._lease_attrs(event.lease),
            )
        self._save()

    def _emit(self, topic: str, **kwargs: Any) -> None:
        emit: Any = self.ctx.emit  # attributes mix with the typed keywords
        emit(topic, **kwargs)

    def _debug(self, topic: str, reason: str, message: str, **attrs: Scalar) -> None:
        now = self.now()
        if now - self.debug_window >= DEBUG_EVENT_WINDOW:
            self.debug_window = now
            self.debug_budget = DEBUG_EVENT_BUDGET
        if self.debug_budget <= 0:
            self.debug_suppressed += 1
            return
        self.debug_budget -= 1
        severity: Severity = "debug"
        self.ctx.emit(topic, reason=reason, message=message, severity=severity, **attrs)

    # -- address conflict detection ---------------------------------------------
    def _start_probe(self, lease: Lease) -> None:
        self._cancel_probe()
        assert self.mac is not None
        probe = ArpProbe(
            self.loop,
            self.spec.interface,
            self.mac,
            lease.address,
            self.rng,
            lambda conflict: self._probe_done(lease, conflict),
        )
        self.probe = probe
        try:
            probe.start()
        except OSError as exc:
            self.probe = None
            self.last_error = f"ARP probe failed to start: {exc}; applying without it"
            self._converge(desired_config(lease, self.spec, self.applied.original_mtu))

    def _cancel_probe(self) -> None:
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None

    def _probe_done(self, lease: Lease, conflict: bytes | None) -> None:
        self.probe = None
        core = self.core
        if core is None or core.lease is None or core.lease.address != lease.address:
            return
        if conflict is None:
            self._converge(desired_config(core.lease, self.spec, self.applied.original_mtu))
            self._save()
        else:
            self.ctx.emit(
                TOPIC_CONFLICT,
                reason="AddressConflict",
                message=f"{lease.address} is in use by {mac_to_str(conflict)}",
                severity="warning",
                address=lease.address,
                conflictingMac=mac_to_str(conflict),
            )
            core.conflict(self.now(), lease.address)
        self._pump()

    # -- applying ----------------------------------------------------------------
    def _reconverge(self) -> None:
        core = self.core
        if core is None or self.probe is not None:
            return
        lease = core.lease if core.state in _CONFIGURED else None
        if lease is None and core.state in (State.INIT_REBOOT, State.REBOOTING):
            return  # keep what is applied until the lease is confirmed or lost
        self._converge(desired_config(lease, self.spec, self.applied.original_mtu))
        self._save()

    def _on_retry(self) -> None:
        self.retry = None
        if not self.stopped:
            self._reconverge()
            self._publish()

    def _converge(self, want: HostConfig) -> None:
        """Make the host carry ``want``: remove what is no longer wanted, then
        add or refresh the rest. ``self.applied`` tracks every success."""
        applier = self.applier
        if applier is None:
            return
        errors = ApplyErrors()
        have = self._remove_unwanted(applier, self.applied, want, errors)
        have = self._add_wanted(applier, have, want, errors)
        self.applied = have
        failed = errors.any()
        if failed and failed != self.errors.any():
            self.ctx.emit(
                TOPIC_APPLY_FAILED,
                reason="ApplyFailed",
                message=failed,
                severity="error",
                address=errors.address,
                routes=errors.routes,
                mtu=errors.mtu,
                dns=errors.dns,
            )
        self.errors = errors
        if failed:
            self.last_error = failed
            if self.retry is None and not self.stopped:
                self.retry = self.loop.call_later(APPLY_RETRY, self._on_retry)

    def _remove_unwanted(
        self, applier: NetApplier, have: HostConfig, want: HostConfig, errors: ApplyErrors
    ) -> HostConfig:
        ifname = self.spec.interface
        routes = list(have.routes)
        for route in have.routes:
            if route in want.routes and have.address == want.address:
                continue
            dst, gw, metric = route
            try:
                applier.remove_route(dst, gateway=gw, ifname=ifname, metric=metric)
                routes.remove(route)
            except ApplyError as exc:
                errors.routes = str(exc)
        have = replace(have, routes=tuple(routes))
        if have.address is not None and have.address != want.address:
            try:
                applier.remove_address(ifname, have.address)
                have = replace(have, address=None, broadcast=None)
            except ApplyError as exc:
                errors.address = str(exc)
        if have.mtu is not None and want.mtu is None:
            try:
                if have.original_mtu is not None and self.link.exists:
                    applier.set_mtu(ifname, have.original_mtu)
                have = replace(have, mtu=None, original_mtu=None, effective_mtu=None)
            except ApplyError as exc:
                errors.mtu = str(exc)
        if have.dns_file is not None and have.dns_file != want.dns_file:
            try:
                os.unlink(have.dns_file)
            except FileNotFoundError:
                pass
            except OSError as exc:
                errors.dns = f"remove {have.dns_file}: {exc}"
            if errors.dns is None:
                have = replace(have, dns_file=None, dns_text=None)
        return have

    def _add_wanted(
        self, applier: NetApplier, have: HostConfig, want: HostConfig, errors: ApplyErrors
    ) -> HostConfig:
        # Everything is (re)applied: lifetimes refresh, and routes the kernel
        # dropped (link down, address gone) come back.
        ifname = self.spec.interface
        if want.mtu is not None and errors.mtu is None:
            try:
                original = have.original_mtu if have.original_mtu is not None else self.link.mtu
                effective = want.mtu
                if self.link.mtu != want.mtu:
                    # Never below 1280 while the interface has IPv6 on.
                    effective = applier.set_mtu(ifname, want.mtu)
                clamped_before = have.mtu == want.mtu and have.mtu_clamped
                have = replace(have, mtu=want.mtu, original_mtu=original, effective_mtu=effective)
                if have.mtu_clamped and not clamped_before:
                    self.ctx.emit(
                        TOPIC_MTU_CLAMPED,
                        reason="ClampedForIPv6",
                        message=self._mtu_clamp_text(have),
                        severity="warning",
                        interface=ifname,
                        mtu=want.mtu,
                        appliedMtu=effective,
                    )
            except ApplyError as exc:
                errors.mtu = str(exc)
        if want.address is not None and errors.address is None:
            core = self.core
            lease = core.lease if core is not None else None
            remaining = lease.remaining(self.now()) if lease is not None else None
            valid = None if remaining is None or math.isinf(remaining) else math.ceil(remaining)
            try:
                applier.add_address(
                    ifname, want.address, valid=valid, preferred=valid, broadcast=want.broadcast
                )
                have = replace(have, address=want.address, broadcast=want.broadcast)
            except ApplyError as exc:
                errors.address = str(exc)
        if want.routes and errors.address is None:
            installed = list(have.routes)
            for route in want.routes:
                dst, gw, metric = route
                try:
                    applier.replace_route(dst, gateway=gw, ifname=ifname, metric=metric)
                    if route not in installed:
                        installed.append(route)
                except ApplyError as exc:
                    errors.routes = str(exc)
            have = replace(have, routes=tuple(installed))
        if want.dns_file is not None and want.dns_text is not None:
            try:
                path = Path(want.dns_file)
                current = path.read_text() if path.exists() else None
                if current != want.dns_text:
                    atomic_write(path, want.dns_text.encode(), mode=0o644)
                have = replace(have, dns_file=want.dns_file, dns_text=want.dns_text)
            except OSError as exc:
                errors.dns = f"write {want.dns_file}: {exc}"
        return have

    def _mtu_clamp_text(self, have: HostConfig) -> str:
        return (
            f"the lease's MTU {have.mtu} is below {IPV6_MIN_MTU}, the IPv6 minimum; "
            f"{self.spec.interface} has IPv6 enabled, so its MTU is {have.effective_mtu}"
        )

    # -- status --------------------------------------------------------------------
    def _lease_brief(self) -> dict[str, Any]:
        core = self.core
        lease = core.lease if core is not None else None
        return {"address": lease.interface_address if lease else None}

    def _counters(self) -> dict[str, Any]:
        core = self.core
        groups: dict[str, Counter[str]] = {g: Counter(v) for g, v in self.counter_base.items()}
        if core is not None:
            for group, values in core.counters.items():
                groups.setdefault(group, Counter()).update(values)
        dropped = groups.get("dropped", Counter())
        if self.transport is not None:
            dropped.update(self.transport.dropped)
        return {
            "sent": sum(groups.get("sent", Counter()).values()),
            "received": sum(groups.get("received", Counter()).values()),
            "dropped": sum(dropped.values()),
            "retransmitted": sum(groups.get("retransmitted", Counter()).values()),
            "sendFailures": self.send_failures,
            "kernelDrops": self.kernel_drops.total,
            "sentByType": dict(groups.get("sent", Counter())),
            "receivedByType": dict(groups.get("received", Counter())),
            "droppedByReason": dict(dropped),
            "rejected": sum(groups.get("rejected", Counter()).values()),
            "rejectedByOption": dict(groups.get("rejected", Counter())),
            "suppressedDebugEvents": self.debug_suppressed,
        }

    def _publish(self) -> None:
        self._set_status()
        core = self.core
        lease = core.lease if core is not None else None
        state = core.state.value if core is not None else "STOPPED"
        observed: dict[str, Any] = {
            "state": state,
            "interface": self.spec.interface,
            "mac": mac_to_str(self.mac) if self.mac else None,
            "linkReady": self.link.ready,
            "operstate": self.link.operstate,
            "address": None,
            "routers": [],
            "dns": [],
            "domain": None,
            "searchList": [],
            "ntp": [],
            "mtu": None,
            "classlessRoutes": [],
            "broadcast": None,
            "serverId": None,
            "leaseTime": None,
            "t1": None,
            "t2": None,
            "t1At": None,
            "t2At": None,
            "expiresAt": None,
            "acquiredAt": None,
            "applied": {
                "address": self.applied.address,
                "routes": [
                    {"dst": d, "gateway": g, "metric": m} for d, g, m in self.applied.routes
                ],
                "mtu": self.applied.effective_mtu
                if self.applied.effective_mtu is not None
                else self.applied.mtu,
                "dnsFile": self.applied.dns_file,
            },
            "mtuClamped": self.applied.mtu_clamped,
            "probing": self.probe.address if self.probe is not None else None,
            "counters": self._counters(),
            "lastError": self.last_error or self.socket_error,
        }
        if lease is not None:
            observed.update(
                {
                    "address": lease.interface_address,
                    "routers": list(lease.routers),
                    "dns": list(lease.dns),
                    "domain": lease.domain,
                    "searchList": list(lease.search),
                    "ntp": list(lease.ntp),
                    "mtu": lease.mtu,
                    "classlessRoutes": [
                        {"dst": d, "gateway": g} for d, g in lease.classless_routes
                    ],
                    "broadcast": lease.broadcast,
                    "serverId": lease.server_id,
                    "leaseTime": None if lease.infinite else lease.lease_time,
                    "t1": None if math.isinf(lease.t1) else round(lease.t1, 3),
                    "t2": None if math.isinf(lease.t2) else round(lease.t2, 3),
                    "t1At": self._iso(lease.t1_at),
                    "t2At": self._iso(lease.t2_at),
                    "expiresAt": self._iso(lease.expires_at),
                    "acquiredAt": self._iso(lease.acquired),
                }
            )
        self.ctx.status.set_observed(observed)

    def _set_status(self) -> None:  # noqa: C901 - one decision table
        status = self.ctx.status
        st = self.link
        core = self.core
        state = core.state if core is not None else None
        lease = core.lease if core is not None else None
        ifname = self.spec.interface
        # LinkReady
        if self.socket_error:
            status.set_condition("LinkReady", False, "SocketFailed", self.socket_error)
        elif not st.exists:
            status.set_condition("LinkReady", False, "InterfaceMissing", f"no interface {ifname}")
        elif not st.ready:
            why = "AdminDown" if not st.admin_up else "NoCarrier"
            status.set_condition("LinkReady", False, why, f"{ifname} is {st.operstate}")
        else:
            status.set_condition("LinkReady", True, "Up", f"{ifname} is up")
        # LeaseAcquired
        bound = state in _CONFIGURED and lease is not None
        if bound and lease is not None:
            status.set_condition(
                "LeaseAcquired",
                True,
                "Bound",
                f"{lease.interface_address} from {lease.server_id}",
            )
        else:
            why = {
                None: "NoInterface",
                State.STOPPED: "Released" if self.released else "Stopped",
                State.INIT: "Discovering",
                State.SELECTING: "Discovering",
                State.REQUESTING: "Requesting",
                State.INIT_REBOOT: "Rebooting",
                State.REBOOTING: "Rebooting",
            }.get(state, "NoLease")
            status.set_condition(
                "LeaseAcquired", False, why, f"state {state.value if state else '-'}"
            )
        # AddressApplied / RoutesInstalled
        if self.errors.address:
            status.set_condition("AddressApplied", False, "ApplyFailed", self.errors.address)
        elif self.applied.address:
            status.set_condition("AddressApplied", True, "Applied", self.applied.address)
        elif not self.spec.apply_address:
            status.set_condition("AddressApplied", False, "Disabled", "applyAddress is false")
        elif self.probe is not None:
            status.set_condition(
                "AddressApplied", False, "Probing", f"ARP probe of {self.probe.address}"
            )
        else:
            status.set_condition("AddressApplied", False, "NoLease", "")
        if self.errors.routes:
            status.set_condition("RoutesInstalled", False, "ApplyFailed", self.errors.routes)
        elif self.applied.routes:
            text = ", ".join(
                f"{d} via {g}" if g else f"{d} on-link" for d, g, _ in self.applied.routes
            )
            status.set_condition("RoutesInstalled", True, "Installed", text)
        elif not self.spec.apply_routes:
            status.set_condition("RoutesInstalled", False, "Disabled", "applyRoutes is false")
        elif bound and lease is not None and not lease.effective_routes():
            status.set_condition("RoutesInstalled", False, "NoRouters", "the lease has no routers")
        else:
            status.set_condition("RoutesInstalled", False, "NoLease", "")
        # MtuApplied
        if self.errors.mtu:
            status.set_condition("MtuApplied", False, "ApplyFailed", self.errors.mtu)
        elif self.applied.mtu_clamped:
            status.set_condition(
                "MtuApplied", True, "ClampedForIPv6", self._mtu_clamp_text(self.applied)
            )
        elif self.applied.mtu is not None:
            status.set_condition("MtuApplied", True, "Applied", f"{self.applied.mtu} on {ifname}")
        elif not self.spec.apply_mtu:
            status.set_condition("MtuApplied", False, "Disabled", "applyMtu is false")
        elif bound and lease is not None and lease.mtu is None:
            status.set_condition("MtuApplied", False, "NoMtu", "the lease has no MTU (option 26)")
        else:
            status.set_condition("MtuApplied", False, "NoLease", "")
        # Phase
        failure = self.socket_error or self.errors.any()
        if failure:
            status.set_phase(
                "Error", "SocketFailed" if self.socket_error else "ApplyFailed", failure
            )
        elif not st.exists:
            status.set_phase("Pending", "InterfaceMissing", f"waiting for {ifname}")
        elif not st.ready:
            status.set_phase("Pending", "LinkDown", f"{ifname} has no link")
        elif bound and lease is not None:
            want = desired_config(lease, self.spec, self.applied.original_mtu)
            if self.probe is not None:
                status.set_phase("Bound", "Probing", f"checking {lease.address} is unused")
            elif want.empty:
                status.set_phase("Bound", "NothingToApply", lease.interface_address)
            elif self.applied.same_as(want):
                status.set_phase("Applied", "Applied", f"{lease.interface_address} on {ifname}")
            else:
                status.set_phase("Bound", "Applying", lease.interface_address)
        else:
            reason = status.condition("LeaseAcquired")
            why = reason.reason if reason else "NoLease"
            message = {
                "Rebooting": f"confirming {lease.interface_address if lease else 'the saved lease'}"
                " (INIT-REBOOT)",
                "Released": "lease released; renew to acquire one",
                "Discovering": "looking for a DHCP server",
                "Requesting": "requesting the offered address",
            }.get(why, why)
            status.set_phase("Pending", why, message)
