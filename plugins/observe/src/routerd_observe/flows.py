"""Flow records from conntrack events, sans-I/O.

:class:`FlowTracker` takes decoded entries (events and periodic dumps) with
the wall time they were read, and returns flow records to store. It owns no
socket, clock or thread (DESIGN.md §1): the engine feeds it.

- A flow is known from its ``new`` event (when the engine follows them) or
  the first dump that shows it, and ends at its ``destroy`` event, with the
  kernel's timestamps when ``nf_conntrack_timestamp`` is on (DESTROY events
  and dumps carry them), else the times the events were read.
- Long flows get interim records: every ``interim`` seconds a dump refreshes
  their counters and the flow's record is written again, open (``end`` is
  null), so a query sees them before they end. The final record replaces it.
- A dump after the event socket overflowed (``ENOBUFS``) closes every flow the
  table no longer has: its ``destroy`` was lost. Such a record ends at the
  dump's time with the last counters seen (``endReason: missed-destroy``).
- Counters that go down (``conntrack -Z`` zeroed them, or a 32-bit counter
  of an old kernel wrapped) are added to what was counted before, and
  counted as ``counterResets``.
"""

from __future__ import annotations

from collections import Counter
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
import ipaddress
from typing import Any

from routerd_observe.ctnetlink import IPS_DST_NAT
from routerd_observe.ctnetlink import IPS_SRC_NAT
from routerd_observe.ctnetlink import CtEntry

Key = tuple[Any, ...]
#: Destroyed flows remembered, to recognise a NEW read after its DESTROY.
RECENT_DESTROYED = 65_536


@dataclass
class _Counters:
    """One direction's counters, robust to resets."""

    packets: int = 0
    bytes: int = 0
    base_packets: int = 0
    base_bytes: int = 0

    def update(self, packets: int | None, nbytes: int | None) -> bool:
        """Take the kernel's values; True when they went down (a reset)."""
        if packets is None or nbytes is None:
            return False
        reset = packets < self.packets or nbytes < self.bytes
        if reset:
            self.base_packets += self.packets
            self.base_bytes += self.bytes
        self.packets, self.bytes = packets, nbytes
        return reset

    @property
    def total_packets(self) -> int:
        return self.base_packets + self.packets

    @property
    def total_bytes(self) -> int:
        return self.base_bytes + self.bytes


@dataclass
class _Flow:
    key: Key
    uid: str
    start: float
    client_is_orig: bool
    entry: CtEntry
    orig: _Counters = field(default_factory=_Counters)
    reply: _Counters = field(default_factory=_Counters)
    resets: int = 0
    last_written: float = 0.0
    interim_records: int = 0
    seen_at: float = 0.0


@dataclass(slots=True)
class FlowRecord:
    """A row of the ``flows`` table (open while ``end`` is None)."""

    uid: str
    start: float
    end: float | None
    family: str
    protocol: str
    client: str
    client_port: int | None
    peer: str
    peer_port: int | None
    nat_address: str | None
    nat_port: int | None
    bytes_out: int
    bytes_in: int
    packets_out: int
    packets_in: int
    state: str | None
    end_reason: str | None
    counter_resets: int
    mark: int
    conntrack_id: int | None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


def flow_key(e: CtEntry) -> Key:
    o = e.orig
    return (e.id, e.zone, o.proto, o.src, o.dst, o.sport, o.dport, o.icmp_id)


class FlowTracker:
    """Open flows and the records they produce.

    :param lan_networks: addresses on the LAN side; a flow whose responder
        is there and whose initiator is not (a port forward) has the
        responder as its client. Without them the initiator is the client,
        except for destination-NATed flows.
    :param interim: seconds between interim records of a long flow.
    :param max_flows: open flows tracked at most; past it new flows are
        dropped and counted (``tracker-full``).
    """

    def __init__(
        self,
        lan_networks: Iterable[str] = (),
        interim: float = 300.0,
        max_flows: int = 262_144,
    ) -> None:
        self.lan = [ipaddress.ip_network(n, strict=False) for n in lan_networks]
        self.interim = interim
        self.max_flows = max_flows
        self.flows: dict[Key, _Flow] = {}
        self.dropped: Counter[str] = Counter()
        self.counter_resets = 0
        self.missed_destroys = 0
        self.unknown_destroys = 0
        self.recorded = 0
        self._dump_started: float | None = None
        self._destroyed_during_dump: set[Key] = set()
        #: Flows destroyed lately: NEW and DESTROY come on two sockets, so a
        #: NEW read after its DESTROY must not open the flow again.
        self._recent: OrderedDict[Key, None] = OrderedDict()
        self.late_news = 0

    # -- classification -----------------------------------------------------
    def _on_lan(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.lan)

    def _client_is_orig(self, e: CtEntry) -> bool:
        if e.status & IPS_SRC_NAT:
            return True  # masquerade: the initiator is behind the router
        if e.status & IPS_DST_NAT:
            return False  # a port forward: the LAN server answers
        # Without NAT: the initiator, unless only the responder is on the LAN.
        inbound = bool(self.lan) and not self._on_lan(e.orig.src) and self._on_lan(e.orig.dst)
        return not inbound

    # -- input --------------------------------------------------------------
    def _open(self, e: CtEntry, now: float) -> _Flow | None:
        if len(self.flows) >= self.max_flows:
            self.dropped["tracker-full"] += 1
            return None
        start = e.start_ns / 1e9 if e.start_ns else now
        key = flow_key(e)
        flow = _Flow(key, f"{e.id or 0:x}-{int(start * 1e6):x}", start, self._client_is_orig(e), e)
        flow.last_written = now
        flow.seen_at = now
        self.flows[key] = flow
        return flow

    def _count(self, flow: _Flow, e: CtEntry) -> None:
        flow.entry = e
        reset = flow.orig.update(e.orig_packets, e.orig_bytes)
        reset = flow.reply.update(e.reply_packets, e.reply_bytes) or reset
        if reset:
            flow.resets += 1
            self.counter_resets += 1

    def on_event(self, e: CtEntry, now: float) -> list[FlowRecord]:
        """A ``new``/``update``/``destroy`` event read at wall time ``now``."""
        key = flow_key(e)
        flow = self.flows.get(key)
        if e.event == "destroy":
            if flow is None:
                # Its new was lost or it predates us: the destroy alone still
                # says everything but the start (from its timestamp, if any).
                self.unknown_destroys += 1
                flow = self._open(e, now)
                if flow is None:
                    return []
            del self.flows[key]
            self._recent[key] = None
            if len(self._recent) > RECENT_DESTROYED:
                self._recent.popitem(last=False)
            if self._dump_started is not None and len(self._destroyed_during_dump) < self.max_flows:
                self._destroyed_during_dump.add(key)
            self._count(flow, e)
            if e.start_ns:
                # Only DESTROY events carry the kernel's timestamps: the
                # start read at NEW was the time the event was read.
                flow.start = e.start_ns / 1e9
            end = e.stop_ns / 1e9 if e.stop_ns else now
            return [self._record(flow, end, "destroy")]
        if flow is None:
            if key in self._recent:
                self.late_news += 1  # its DESTROY was read first
                return []
            flow = self._open(e, now)
            if flow is None:
                return []
        self._count(flow, e)
        return []

    def mark_dump(self, started: float) -> None:
        """A dump begins now: events until :meth:`on_dump` race with it."""
        self._dump_started = started
        self._destroyed_during_dump.clear()

    def on_dump(
        self,
        entries: Iterable[CtEntry],
        now: float,
        *,
        complete: bool,
        started: float | None = None,
    ) -> list[FlowRecord]:
        """A dump of the whole table, begun at ``started``, applied at ``now``.

        Refreshes counters, writes interim records of flows due one, and
        when ``complete`` (the dump covered the table) closes the flows the
        table no longer has: their destroy event was lost. Events read while
        the dump ran are newer than it: a flow destroyed meanwhile is not
        brought back, and one first seen meanwhile is not closed.
        """
        if started is None:
            started = now
        gone = self._destroyed_during_dump
        self._dump_started = None
        self._destroyed_during_dump = set()
        out: list[FlowRecord] = []
        seen: set[Key] = set()
        for e in entries:
            key = flow_key(e)
            if key in gone or key in self._recent:
                continue
            seen.add(key)
            flow = self.flows.get(key)
            if flow is None:
                flow = self._open(e, now)
                if flow is None:
                    continue
            self._count(flow, e)
            if now - flow.last_written >= self.interim:
                flow.last_written = now
                flow.interim_records += 1
                out.append(self._record(flow, None, None))
        if complete:
            for key in [k for k, f in self.flows.items() if k not in seen and f.seen_at < started]:
                flow = self.flows.pop(key)
                self.missed_destroys += 1
                out.append(self._record(flow, now, "missed-destroy"))
        return out

    def close_all(self, now: float) -> list[FlowRecord]:
        """Interim records of every open flow (the observer stops)."""
        return [self._record(f, None, None) for f in self.flows.values()]

    # -- output -------------------------------------------------------------
    def _record(self, flow: _Flow, end: float | None, reason: str | None) -> FlowRecord:
        e = flow.entry
        o, r = e.orig, e.reply
        if end is not None:
            self.recorded += 1
        if flow.client_is_orig:
            client, cport, peer, pport = o.src, o.sport, o.dst, o.dport
            out_c, in_c = flow.orig, flow.reply
            nat_addr = r.dst if r is not None and e.status & IPS_SRC_NAT else None
            nat_port = r.dport if r is not None and e.status & IPS_SRC_NAT else None
        else:
            client = r.src if r is not None else o.dst
            cport = r.sport if r is not None else o.dport
            peer, pport = o.src, o.sport
            out_c, in_c = flow.reply, flow.orig
            nat_addr = o.dst if e.status & IPS_DST_NAT else None
            nat_port = o.dport if e.status & IPS_DST_NAT else None
        if o.icmp_type is not None:
            cport = pport = None
        return FlowRecord(
            uid=flow.uid,
            start=flow.start,
            end=end,
            family="ipv6" if ":" in o.src else "ipv4",
            protocol=e.protocol,
            client=client,
            client_port=cport,
            peer=peer,
            peer_port=pport,
            nat_address=nat_addr,
            nat_port=nat_port,
            bytes_out=out_c.total_bytes,
            bytes_in=in_c.total_bytes,
            packets_out=out_c.total_packets,
            packets_in=in_c.total_packets,
            state=e.tcp_state,
            end_reason=reason,
            counter_resets=flow.resets,
            mark=e.mark,
            conntrack_id=e.id,
        )
