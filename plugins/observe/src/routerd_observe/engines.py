"""The observer daemons' engines: sockets on the engine loop, rows to the store.

Each engine reads its source on the engine thread (bounded reads per
wake-up, so a flood cannot starve timers), hands rows to its store's writer
thread, and publishes counters in ``observed`` once a second. Its records
are served by the main API routes (:mod:`routerd_observe.api`), which
read the store file on their own connections (WAL: never waiting on the
writer), so a flood or a crash of an observer never reaches the API.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
import errno
import functools
import json
import logging
from pathlib import Path
import socket
import struct
import time
from typing import Any

import falcon
from routerd.config import SpecModel
from routerd.daemon.engine import CommandOutcome
from routerd.daemon.engine import DaemonContext
from routerd.daemon.engine import DaemonEngine
from routerd.daemon.loop import TimerHandle
from routerd.errors import CommandRejected
from routerd.errors import UnknownCommand
from routerd.packetstats import DropCounter

from routerd_observe import conntrack
from routerd_observe import ctnetlink as ct
from routerd_observe import netlink as nl
from routerd_observe import nflog
from routerd_observe import records
from routerd_observe.dns import DnsMatcher
from routerd_observe.flows import FlowTracker
from routerd_observe.query import Query
from routerd_observe.query import parse_query
from routerd_observe.spec import DNSQueryLogSpec
from routerd_observe.spec import FirewallLogSpec
from routerd_observe.spec import FlowLogSpec
from routerd_observe.spec import parse_size
from routerd_observe.store import ObserverStore
from routerd_observe.store import Table
from routerd_observe.store import open_reader

log = logging.getLogger("routerd.observe")
#: Datagrams read per wake-up at most: timers and status run between bursts.
READ_BATCH = 512
#: NEW events read per wake-up of the flow log (DESTROY events first).
NEW_BATCH = 64
RECV_SIZE = 1 << 16
PUBLISH_EVERY = 1.0
RETRY_OPEN = 2.0
DB_NAME = "observe.db"
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
#: ``tcpdump -dd "port 53"``: IPv4/IPv6, TCP/UDP/SCTP, port 53 either side,
#: no IPv4 non-first fragment.
BPF_DNS: tuple[tuple[int, int, int, int], ...] = (
    (0x28, 0, 0, 0x0000000C),
    (0x15, 0, 8, 0x000086DD),
    (0x30, 0, 0, 0x00000014),
    (0x15, 2, 0, 0x00000084),
    (0x15, 1, 0, 0x00000006),
    (0x15, 0, 17, 0x00000011),
    (0x28, 0, 0, 0x00000036),
    (0x15, 14, 0, 0x00000035),
    (0x28, 0, 0, 0x00000038),
    (0x15, 12, 13, 0x00000035),
    (0x15, 0, 12, 0x00000800),
    (0x30, 0, 0, 0x00000017),
    (0x15, 2, 0, 0x00000084),
    (0x15, 1, 0, 0x00000006),
    (0x15, 0, 8, 0x00000011),
    (0x28, 0, 0, 0x00000014),
    (0x45, 6, 0, 0x00001FFF),
    (0xB1, 0, 0, 0x0000000E),
    (0x48, 0, 0, 0x0000000E),
    (0x15, 2, 0, 0x00000035),
    (0x48, 0, 0, 0x00000010),
    (0x15, 0, 1, 0x00000035),
    (0x06, 0, 0, 0x00040000),
    (0x06, 0, 0, 0x00000000),
)


def _rcvbuf(sock: socket.socket, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    import ctypes

    insns = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER


class BadQuery(CommandRejected):
    """A ``query`` command with a bad filter (HTTP 400, like the API's)."""

    status = 400


class ObserverEngine(DaemonEngine):
    """What every observer shares: the store, status, the records route."""

    table: Table
    endpoint: str

    def __init__(self, ctx: DaemonContext) -> None:
        self.ctx = ctx
        self.state_dir: Path = ctx.state.path.parent
        retention = ctx.spec.retention.retention()  # type: ignore[attr-defined]
        self.store = ObserverStore(self.state_dir / DB_NAME, self.table, retention)
        self.dropped: Counter[str] = Counter()
        self.kernel_drops = DropCounter()
        self.enobufs = 0
        self.records = 0
        self.timers: list[TimerHandle] = []
        self.stopped = False
        self.source_error: str | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self, ctx: DaemonContext) -> None:
        self.store.start()
        ctx.status.set_phase("Pending", "Opening", "opening the source")
        self.open_source()
        self._publish_timer()

    def stop(self) -> None:
        self.stopped = True
        for t in self.timers:
            t.cancel()
        self.close_source()
        self.store.close(timeout=0.8)

    def reload(self, spec: SpecModel) -> str:
        raise CommandRejected("an observer applies a new spec by restarting")

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome | Future[CommandOutcome]:
        """``renew``: reopen a source that failed, resync, report the counters.
        ``query``: the stored records, filtered like the main API's endpoint
        (on a worker thread: the engine keeps reading its source)."""
        if name == "query":
            return self._query(args)
        if name != "renew":
            raise UnknownCommand(f"{self.endpoint} observers have no command {name!r}")
        if self.source_error is not None:
            self.close_source()
            self.open_source()
        self.renew()
        self.publish()
        return CommandOutcome(
            f"{self.records} records, {sum(self.dropped.values())} dropped",
            {"records": self.records, "written": self.store.written, "dropped": dict(self.dropped)},
        )

    def renew(self) -> None:
        """What ``renew`` does beyond reopening (the flow log dumps the table)."""

    def _query(self, args: dict[str, Any]) -> Future[CommandOutcome]:
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()}
        try:
            q = parse_query(self.endpoint, params)
        except falcon.HTTPError as exc:
            raise BadQuery(str(exc.description)) from None
        done: Future[CommandOutcome] = Future()

        def run() -> None:
            try:
                result = self.query(q)
            except Exception as exc:  # sqlite3 errors: the store is being replaced, or full
                done.set_exception(CommandRejected(f"cannot read the store: {exc}"))
                return
            n = len(result.get("items", []))
            done.set_result(
                CommandOutcome(f"{n} records" if "items" in result else "aggregates", result)
            )

        self.ctx.loop.run_in_worker(run)
        return done

    def query(self, q: Query) -> dict[str, Any]:
        """The stored records matching ``q`` (a worker thread, its own connection)."""
        raise NotImplementedError

    def open_source(self) -> None:
        raise NotImplementedError

    def close_source(self) -> None:
        raise NotImplementedError

    def source_status(self) -> dict[str, Any]:
        return {}

    def _publish_timer(self) -> None:
        if self.stopped:
            return
        self.publish()
        self.timers = [t for t in self.timers if not t.cancelled]
        self.timers.append(self.ctx.loop.call_later(PUBLISH_EVERY, self._publish_timer))

    def source_ok(self, message: str) -> None:
        self.source_error = None
        self.ctx.status.set_condition("SourceOpen", True, "Reading", message)
        self.ctx.status.set_phase("Up", "Observing", message)

    def source_failed(self, reason: str, message: str, *, retry: bool = True) -> None:
        self.source_error = message
        self.ctx.status.set_condition("SourceOpen", False, reason, message)
        self.ctx.status.set_phase("Error" if not retry else "Pending", reason, message)
        if retry and not self.stopped:
            self.timers.append(self.ctx.loop.call_later(RETRY_OPEN, self.open_source))

    def publish(self) -> None:
        store = self.store.stats()
        dropped = dict(self.dropped)
        for reason, n in store["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
        writable = store["state"] == "Ok"
        self.ctx.status.set_condition(
            "StoreWritable",
            writable,
            "Writing" if writable else "WriteFailing",
            "" if writable else str(store["lastError"]),
        )
        self.ctx.status.set_observed(
            {
                "records": self.records,
                "written": store["written"],
                "dropped": dropped,
                "droppedTotal": sum(dropped.values()),
                "kernelDrops": self.kernel_drops.total,
                "enobufs": self.enobufs,
                "source": self.source_status(),
                "sourceError": self.source_error,
                "store": store,
            }
        )

    def put(self, rows: list[tuple[Any, ...]]) -> None:
        self.records += len(rows)
        self.store.put(rows)


# -- flows ------------------------------------------------------------------------
class FlowLogEngine(ObserverEngine):
    """Conntrack NEW/DESTROY events to flow records; live connections on demand."""

    table = records.FLOWS
    endpoint = "traffic-flows"

    def __init__(self, ctx: DaemonContext) -> None:
        super().__init__(ctx)
        assert isinstance(ctx.spec, FlowLogSpec)
        self.spec: FlowLogSpec = ctx.spec
        self.tracker = FlowTracker(
            self.spec.lan_networks, self.spec.interim, self.spec.max_tracked_flows
        )
        #: DESTROY and NEW events on separate sockets, so a burst of NEW
        #: events cannot crowd out the DESTROY events that finish records.
        self.socks: dict[str, socket.socket] = {}
        self.new_drops = DropCounter()
        self.enobufs_new = 0
        self.dump_running = False
        self.dump_started = 0.0
        self.resync_pending = False
        self.dumps = 0
        self.events = 0
        self.malformed = 0
        self.last_dump_seconds: float | None = None
        self.accounting_problems: list[str] = []

    def open_source(self) -> None:
        if self.stopped:
            return
        if self.spec.accounting:
            self.accounting_problems = conntrack.enable_accounting()
        size = parse_size(self.spec.receive_buffer)
        # With kernel timestamps a DESTROY (and every dump) carries the
        # flow's start: NEW events would only cost CPU under load. Without
        # them, NEW gives the start time.
        groups = [("destroy", ct.NFNLGRP_CONNTRACK_DESTROY)]
        if not self.spec.accounting:
            groups.append(("new", ct.NFNLGRP_CONNTRACK_NEW))
        try:
            for kind, group in groups:
                sock = conntrack.open_socket((group,), size)
                sock.setblocking(False)
                self.socks[kind] = sock
        except OSError as exc:
            self._close_sockets()
            self.source_failed("NetlinkUnavailable", f"conntrack events: {exc.strerror or exc}")
            return
        self.kernel_drops.new_socket()
        self.new_drops.new_socket()
        for kind, sock in self.socks.items():
            self.ctx.loop.add_reader(sock, functools.partial(self._readable, kind))
        self.source_ok("following conntrack events")
        self._dump(complete=False)  # flows older than us
        self.timers.append(self.ctx.loop.call_later(self.spec.interim, self._interim))

    def _close_sockets(self) -> None:
        for kind, sock in self.socks.items():
            self.ctx.loop.remove_reader(sock)
            (self.kernel_drops if kind == "destroy" else self.new_drops).poll_socket(sock)
            sock.close()
        self.socks.clear()

    def close_source(self) -> None:
        self._close_sockets()
        now = self.ctx.wall()
        self.put([records.flow_row(r, now) for r in self.tracker.close_all(now)])

    def _readable(self, kind: str) -> None:
        sock = self.socks.get(kind)
        if sock is None:
            return
        out: list[tuple[Any, ...]] = []
        # DESTROY events finish records: under load they get the time, and the
        # NEW socket overflows first (which costs nothing but early knowledge).
        for _ in range(READ_BATCH if kind == "destroy" else NEW_BATCH):
            try:
                data = sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                if kind == "destroy":
                    # DESTROY events were lost: the next dump closes those flows.
                    self.enobufs += 1
                    self.resync_pending = True
                else:
                    # Lost NEW events cost only early knowledge: the DESTROY
                    # (with the kernel's start time) or a dump brings the flow.
                    self.enobufs_new += 1
                continue
            now = self.ctx.wall()
            try:
                for msg in nl.messages(data):
                    name = ct.event_name(msg)
                    if name is None:
                        continue
                    self.events += 1
                    try:
                        entry = ct.decode_entry(msg, name)
                    except nl.MalformedMessage:
                        self.dropped["malformed"] += 1
                        continue
                    for rec in self.tracker.on_event(entry, now):
                        out.append(records.flow_row(rec, now))
            except nl.MalformedMessage:
                self.dropped["malformed"] += 1
        (self.kernel_drops if kind == "destroy" else self.new_drops).poll_socket(sock)
        self.put(out)
        if self.resync_pending and not self.dump_running:
            self.resync_pending = False
            self._dump(complete=True)

    def _interim(self) -> None:
        if self.stopped:
            return
        self._dump(complete=True)
        self.timers.append(self.ctx.loop.call_later(self.spec.interim, self._interim))

    def _dump(self, complete: bool) -> None:
        """Dump the table on a worker thread (its own socket), apply on the loop."""
        if self.dump_running:
            return
        self.dump_running = True
        started = self.ctx.wall()
        self.tracker.mark_dump(started)

        def done(fut: Any) -> None:
            self.dump_running = False
            try:
                result: conntrack.DumpResult = fut.result()
            except Exception as exc:
                self.dropped["dump-failed"] += 1
                self.source_error = f"conntrack dump: {exc}"
                return
            self.dumps += 1
            self.last_dump_seconds = result.seconds
            self.dropped["malformed"] += result.malformed
            now = self.ctx.wall()
            recs = self.tracker.on_dump(result.entries, now, complete=complete, started=started)
            self.put([records.flow_row(r, now) for r in recs])

        self.ctx.loop.run_in_worker(
            lambda: conntrack.dump(deadline=time.monotonic() + 60), on_done=done
        )

    def renew(self) -> None:
        self._dump(complete=True)

    def query(self, q: Query) -> dict[str, Any]:
        # Every DNS observer's answers name the peers, as on the main API.
        root = self.state_dir.parent.parent / "dns-query-log"
        names = [open_reader(p) for p in sorted(root.glob(f"*/{DB_NAME}"))]
        try:
            return records.query_flows(self.store.reader(), q, names)
        finally:
            for conn in names:
                conn.close()

    def source_status(self) -> dict[str, Any]:
        t = self.tracker
        return {
            "openFlows": len(t.flows),
            "events": self.events,
            "flowsRecorded": t.recorded,
            "missedDestroys": t.missed_destroys,
            "unknownDestroys": t.unknown_destroys,
            "counterResets": t.counter_resets,
            "trackerDropped": dict(t.dropped),
            "dumps": self.dumps,
            "lastDumpSeconds": self.last_dump_seconds,
            "tableEntries": conntrack.table_count(),
            "accountingProblems": self.accounting_problems,
            "newEvents": {"kernelDrops": self.new_drops.total, "enobufs": self.enobufs_new},
        }

    def publish(self) -> None:
        for reason, n in self.tracker.dropped.items():
            self.dropped[reason] = n
        super().publish()


# -- firewall logs -------------------------------------------------------------------
class FirewallLogEngine(ObserverEngine):
    table = records.FIREWALL
    endpoint = "firewall-logs"

    def __init__(self, ctx: DaemonContext) -> None:
        super().__init__(ctx)
        assert isinstance(ctx.spec, FirewallLogSpec)
        self.spec: FirewallLogSpec = ctx.spec
        self.sock: socket.socket | None = None
        self.packets = 0
        self.last_seq: int | None = None
        self.seq_gaps = 0
        self.ifnames: dict[int, str] = {}

    def open_source(self) -> None:
        if self.stopped:
            return
        try:
            sock = conntrack.open_socket((), parse_size(self.spec.receive_buffer))
        except OSError as exc:
            self.source_failed("NetlinkUnavailable", f"nfnetlink: {exc.strerror or exc}")
            return
        try:
            self._bind(sock)
        except OSError as exc:
            sock.close()
            self.source_failed(
                "BindFailed", f"NFLOG group {self.spec.group}: {exc.strerror or exc}"
            )
            return
        sock.setblocking(False)
        self.sock = sock
        self.kernel_drops.new_socket()
        self.ctx.loop.add_reader(sock, self._readable)
        self.source_ok(f"reading NFLOG group {self.spec.group}")

    def _bind(self, sock: socket.socket) -> None:
        sock.settimeout(2.0)
        for request in nflog.bind_requests(self.spec.group, self.spec.copy_range):
            sock.send(request)
            (seq,) = struct.unpack_from("=I", request, 8)
            while True:
                data = sock.recv(RECV_SIZE)
                acked = False
                for msg in nl.messages(data):
                    if msg.type == nl.NLMSG_ERROR and msg.seq == seq:
                        code = nl.error_code(msg)
                        # PF_BIND is refused by some kernels and not needed there.
                        if code and request is not None and seq > 2:
                            raise OSError(code, errno.errorcode.get(code, str(code)))
                        acked = True
                if acked:
                    break

    def close_source(self) -> None:
        if self.sock is not None:
            self.ctx.loop.remove_reader(self.sock)
            self.kernel_drops.poll_socket(self.sock)
            self.sock.close()
            self.sock = None

    def _ifname(self, index: int | None) -> str | None:
        if index is None:
            return None
        name = self.ifnames.get(index)
        if name is None:
            try:
                name = socket.if_indextoname(index)
            except OSError:
                return str(index)
            if len(self.ifnames) < 4096:
                self.ifnames[index] = name
        return name

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        out: list[tuple[Any, ...]] = []
        for _ in range(READ_BATCH):
            try:
                data = sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.enobufs += 1
                    continue
                raise
            now = self.ctx.wall()
            try:
                msgs = list(nl.messages(data))
            except nl.MalformedMessage:
                self.dropped["malformed"] += 1
                continue
            for msg in msgs:
                if msg.type in (nl.NLMSG_ERROR, nl.NLMSG_DONE, nl.NLMSG_NOOP):
                    continue
                try:
                    pkt = nflog.decode_packet(msg)
                except nl.MalformedMessage:
                    self.dropped["malformed"] += 1
                    continue
                self.packets += 1
                self._sequence(pkt.seq)
                out.append(self._row(pkt, now))
        self.kernel_drops.poll_socket(sock)
        self.put(out)

    def _sequence(self, seq: int | None) -> None:
        if seq is None:
            return
        if self.last_seq is not None:
            gap = (seq - self.last_seq - 1) & 0xFFFFFFFF
            if 0 < gap < 1 << 31:
                self.seq_gaps += gap
                self.dropped["kernel-queue"] += gap
        self.last_seq = seq

    def _row(self, pkt: nflog.LoggedPacket, now: float) -> tuple[Any, ...]:
        d = nflog.decode_payload(pkt.family, pkt.payload)
        prefix = pkt.prefix.strip()
        return (
            pkt.timestamp or now, prefix, nflog.action_of(prefix), pkt.hook,
            self._ifname(pkt.indev), self._ifname(pkt.outdev), d["family"], d.get("protocol"),
            d.get("src"), d.get("dst"), d.get("sport"), d.get("dport"), d.get("tcpFlags"),
            d.get("icmpType"), d.get("icmpCode"), d.get("length"), pkt.mark, pkt.group,
            int(d["truncated"]),
        )  # fmt: skip

    def source_status(self) -> dict[str, Any]:
        return {"group": self.spec.group, "packets": self.packets, "sequenceGaps": self.seq_gaps}

    def query(self, q: Query) -> dict[str, Any]:
        return records.query_firewall(self.store.reader(), q)


# -- DNS -----------------------------------------------------------------------------
class DNSQueryLogEngine(ObserverEngine):
    table = records.DNS
    endpoint = "dns-queries"

    def __init__(self, ctx: DaemonContext) -> None:
        super().__init__(ctx)
        assert isinstance(ctx.spec, DNSQueryLogSpec)
        self.spec: DNSQueryLogSpec = ctx.spec
        self.matcher = DnsMatcher(self.spec.match_timeout, self.spec.max_pending)
        self.socks: dict[str, socket.socket] = {}
        self.missing: list[str] = []

    def open_source(self) -> None:
        if self.stopped:
            return
        self.missing = []
        for ifname in self.spec.interfaces:
            if ifname in self.socks:
                continue
            try:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
                try:
                    attach_filter(sock, BPF_DNS)
                    _rcvbuf(sock, parse_size(self.spec.receive_buffer))
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    sock.bind((ifname, ETH_P_ALL))
                    sock.setblocking(False)
                except BaseException:
                    sock.close()
                    raise
            except OSError as exc:
                self.missing.append(f"{ifname}: {exc.strerror or exc}")
                continue
            self.socks[ifname] = sock
            self.ctx.loop.add_reader(sock, functools.partial(self._readable, ifname))
        if self.missing:
            self.source_failed("InterfaceUnavailable", "; ".join(self.missing))
        else:
            self.source_ok("capturing DNS on " + ", ".join(self.spec.interfaces))
        if not any(t for t in self.timers if t.callback == self._expire and not t.cancelled):
            self.timers.append(self.ctx.loop.call_later(0.5, self._expire))

    def close_source(self) -> None:
        for sock in self.socks.values():
            self.ctx.loop.remove_reader(sock)
            self.kernel_drops.poll_packet_socket(sock)
            sock.close()
        self.socks.clear()
        now = self.ctx.wall()
        self.put([records.dns_row(r) for r in self.matcher.expire(now + 3600)])

    def _readable(self, ifname: str) -> None:
        sock = self.socks.get(ifname)
        if sock is None:
            return
        out: list[tuple[Any, ...]] = []
        for _ in range(READ_BATCH):
            try:
                data, anc, flags, _addr = sock.recvmsg(RECV_SIZE, socket.CMSG_SPACE(16))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    self._lost(ifname, exc)
                    return
                raise
            now = self.ctx.wall()
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = struct.unpack_from("=qq", cdata)
                    now = sec + nsec / 1e9
            if flags & socket.MSG_TRUNC:
                self.dropped["oversized"] += 1
                continue
            for rec in self.matcher.feed(data, now, ifname):
                out.append(records.dns_row(rec))
        self.kernel_drops.poll_packet_socket(sock)
        self.put(out)

    def _lost(self, ifname: str, exc: OSError) -> None:
        sock = self.socks.pop(ifname)
        self.ctx.loop.remove_reader(sock)
        sock.close()
        self.source_failed("InterfaceUnavailable", f"{ifname}: {exc.strerror or exc}")

    def _expire(self) -> None:
        if self.stopped:
            return
        self.put([records.dns_row(r) for r in self.matcher.expire(self.ctx.wall())])
        self.timers = [t for t in self.timers if not t.cancelled and t.callback != self._expire]
        self.timers.append(self.ctx.loop.call_later(0.5, self._expire))

    def publish(self) -> None:
        for reason, n in self.matcher.dropped.items():
            self.dropped[reason] = n
        super().publish()

    def source_status(self) -> dict[str, Any]:
        m = self.matcher
        return {
            "interfaces": sorted(self.socks),
            "missing": self.missing,
            "frames": m.frames,
            "queries": m.queries,
            "responses": m.responses,
            "matched": m.matched,
            "unanswered": m.unanswered,
            "pending": len(m.pending),
        }

    def query(self, q: Query) -> dict[str, Any]:
        return records.query_dns(self.store.reader(), q)
