"""routerd serve: ingestion rate, follow latency, store queries, RSS.

Everything runs side by side in one run, with baselines taken in the same run:

1. Ingestion. The event logs of N healthcheck daemons are pre-filled
   (``events.jsonl``, plus ``events.jsonl.1`` when one file would exceed the
   daemon's rotation size) *before* ``routerd serve`` starts; the daemons
   restore them and serve's followers drain them into SQLite. Timed from
   serve's start and from its first commit to the moment the ``cursors``
   table says every pre-filled event is stored (then checked: every cursor
   1..E of every daemon, once). Against, in this process and on the same
   rows and schema: raw ``sqlite3`` ``executemany`` in transactions of 1000
   (WAL, ``synchronous=NORMAL``), peewee ``insert_many`` of 1000, and
   ``EventStore.submit(Batch(...))`` of 1000 (what serve's writer does).
2. Delivery latency: ``routerctl events --follow -o json --topic
   routerd.daemon.command.*`` through routerd serve, and ``routerctl events
   healthcheck/<name> --follow`` straight from the daemon, both running while
   ``POST /v1/commands/reload`` on the daemon's socket emits events; latency
   = the time the printed line was read minus the event's own ``time``.
3. Newest-100 queries over a store of 1,000,000 synthetic events (10
   resources, 20 topics): ``EventStore.query`` against the same result from
   a ``NOT INDEXED`` scan (newest first, stopping at 100 matches), and
   through the HTTP API on the status socket.
4. RSS of routerd serve with 10 daemons, the daemons' sum, one kea-dhcp4 and
   a bare interpreter.

Parts 2-4 share one ``routerd serve`` (10 daemons) whose store is the
pre-filled database of part 3.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
import json
import os
from pathlib import Path
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import common
from routerd.client import UnixClient
from routerd.daemon.eventlog import ROTATE_BYTES
from routerd.model import Event
from routerd.serve.store import EVENT_COLUMNS
from routerd.serve.store import INSERT_EVENT_SQL
from routerd.serve.store import Batch
from routerd.serve.store import ConsumerCursor
from routerd.serve.store import EventStore
from routerd.serve.store import StoredEvent
from routerd.serve.store import event_row
from routerd.serve.store import row_to_wire
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import PREFIX
from routerd.testing.serve import ServeProcess
from routerd.timefmt import parse_rfc3339
from routerd.topics import topic_matches

NAME = "serve"
FOLLOW_TOPIC = "routerd.daemon.command.*"
CURSOR_SQL = "INSERT OR REPLACE INTO cursors (source, epoch, cursor) VALUES (?, ?, ?)"
MIB = 1024.0


# -- processes -----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0.0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def registry_pids(state_dir: Path) -> dict[str, int]:
    """Daemon PIDs from serve's registry (``<state>/serve/children.json``)."""
    try:
        data = json.loads((state_dir / "serve" / "children.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: int(v["pid"]) for k, v in data.items() if isinstance(v.get("pid"), int)}


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Let a cleanup run to its end when SIGTERM arrives meanwhile, then act on it.

    (run_all turns SIGTERM into SystemExit: raised inside a cleanup, it would
    cut the cleanup short and leave processes behind.)
    """
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    except ValueError:  # not the main thread: nothing to defer
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            if received and callable(previous):
                previous(signal.SIGTERM, None)
            elif received and previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGTERM)


def _kill_leftovers(pids: set[int], marker: str) -> None:
    """SIGKILL daemons that outlived serve (they run in their own session), by PID."""
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() not in cmdline:
            continue  # not one of ours (the PID was reused)
        print(f"warning: daemon pid {pid} outlived routerd serve; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)


@contextlib.contextmanager
def serve_process(base: Path, names: list[str], port: int) -> Iterator[ServeProcess]:
    """A ``routerd serve`` of HealthCheck resources ``names`` (not started yet).

    On the way out: SIGTERM (serve stops its daemons), SIGKILL if it hangs,
    then any daemon still there is killed by PID.
    """
    spec = {**common.healthcheck_spec(port), "interval": "1h"}
    config = router_config(*(resource("HealthCheck", n, spec) for n in names), name="bench")
    serve = ServeProcess(
        config_path=write_config(base / "router.yaml", config),
        runtime_dir=base / "run",
        state_dir=base / "state",
        log_path=base / "serve.log",
        env={"ROUTERD_PLUGINS": "healthcheck"},
    )
    try:
        yield serve
    finally:
        with sigterm_deferred():
            pids = set(registry_pids(serve.state_dir).values())
            try:
                serve.stop(15.0)
            except AssertionError as exc:
                print(f"warning: {exc}", file=sys.stderr)
            serve.kill()
            pids |= set(registry_pids(serve.state_dir).values())
            _kill_leftovers(pids, str(base))


def sqlite_connections(pid: int, db_name: str = "routerd.db") -> int:
    """Open descriptors on the database file: one per SQLite connection."""
    count = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).endswith("/" + db_name):
                count += 1
    return count


def daemon_pids(serve: ServeProcess) -> list[int]:
    return [int(d["pid"]) for d in serve.status()["daemons"] if d.get("pid")]


# -- 1. ingestion --------------------------------------------------------------------
def prefill_events(name: str, count: int, port: int, t0: float) -> list[Event]:
    """What a healthcheck daemon would have logged: probe results, the odd failure."""
    events: list[Event] = []
    ok_streak = 0
    for i in range(1, count + 1):
        ok = i % 97 != 0
        ok_streak = ok_streak + 1 if ok else 0
        events.append(
            Event(
                i,
                t0 + i * 0.01,
                "routerd.healthcheck.probe." + ("succeeded" if ok else "failed"),
                "debug",
                "ProbeSucceeded" if ok else "ProbeFailed",
                f"connected to 127.0.0.1:{port}" if ok else "connection refused",
                {
                    "resource.kind": "HealthCheck",
                    "resource.name": name,
                    "daemon.kind": "healthcheck",
                    "ok": ok,
                    "latencyMs": round(0.05 + (i % 13) * 0.01, 3),
                    "target": "127.0.0.1",
                    "protocol": "tcp",
                    "trigger": "interval",
                    "consecutiveSuccesses": ok_streak,
                },
            )
        )
    return events


def write_event_log(directory: Path, events: list[Event]) -> None:
    """``events.jsonl`` as the daemon writes it. Past the rotation size the
    older lines go to ``events.jsonl.1``, as the daemon's own rotation leaves them."""
    lines = [json.dumps(e.to_dict(), separators=(",", ":")).encode() + b"\n" for e in events]
    rotated: list[bytes] = []
    size = 0
    if sum(len(x) for x in lines) > ROTATE_BYTES:
        while size < ROTATE_BYTES:
            size += len(lines[len(rotated)])
            rotated.append(lines[len(rotated)])
    current = lines[len(rotated) :]
    # Room for what the daemon appends at start, or it would rotate again (and
    # drop events.jsonl.1 before serve read it).
    if sum(len(x) for x in current) > ROTATE_BYTES - 65536:
        raise RuntimeError("too many pre-filled events for two event-log files")
    directory.mkdir(parents=True, exist_ok=True)
    if rotated:
        (directory / "events.jsonl.1").write_bytes(b"".join(rotated))
    (directory / "events.jsonl").write_bytes(b"".join(current))


def _stored(conn: sqlite3.Connection, sources: list[str], last: int) -> int | None:
    """Pre-filled events stored so far (cursors are contiguous); None before the schema."""
    try:
        rows = dict(conn.execute("SELECT source, cursor FROM cursors").fetchall())
    except sqlite3.Error:
        return None
    return sum(min(int(rows.get(s, 0)), last) for s in sources)


def wait_ingested(
    db: Path, sources: list[str], last: int, serve: ServeProcess, timeout: float
) -> dict[str, Any]:
    """Poll the ``cursors`` table every 10 ms until every source reached ``last``."""
    want = len(sources) * last
    deadline = time.monotonic() + timeout
    conn: sqlite3.Connection | None = None
    first: tuple[float, int] | None = None
    cpu_first: dict[str, float] = {}
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"not all {want} events stored within {timeout:g} s")
            if serve.proc is not None and serve.proc.poll() is not None:
                raise RuntimeError(f"routerd serve exited:\n{serve.log_tail()}")
            if conn is None and db.exists():
                conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
            n = _stored(conn, sources, last) if conn is not None else None
            if n:
                if first is None:
                    first = (now, n)
                    cpu_first = _cpu_snapshot(serve)
                if n >= want:
                    return {
                        "t_first": first[0],
                        "n_first": first[1],
                        "t_done": now,
                        "cpu_first": cpu_first,
                        "cpu_done": _cpu_snapshot(serve),
                    }
            time.sleep(0.01)
    finally:
        if conn is not None:
            conn.close()


def _cpu_snapshot(serve: ServeProcess) -> dict[str, float]:
    assert serve.proc is not None
    daemons = registry_pids(serve.state_dir).values()
    return {
        "serve": cpu_seconds(serve.proc.pid),
        "daemons": sum(cpu_seconds(p) for p in daemons),
    }


def check_stored(db: Path, sources: list[str], last: int) -> dict[str, Any]:
    """Every cursor 1..last of every source stored exactly once?"""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = conn.execute(
            "SELECT source, COUNT(*), COUNT(DISTINCT cursor), MIN(cursor), MAX(cursor) "
            "FROM events WHERE cursor <= ? AND epoch = 0 GROUP BY source",
            (last,),
        ).fetchall()
    finally:
        conn.close()
    got = {r[0]: r[1:] for r in rows}
    ok = all(got.get(s) == (last, last, 1, last) for s in sources)
    return {"complete_no_duplicates": ok, "per_source": {s: list(got.get(s, ())) for s in sources}}


def read_out(socket_path: Path, last: int) -> tuple[float, float]:
    """Page a daemon's whole log as a follower does (limit 1000): total and slowest page, s."""
    client = UnixClient(str(socket_path), timeout=60.0)
    cursor: str | None = None
    t0 = time.perf_counter()
    slowest = 0.0
    while True:
        query: dict[str, Any] = {"limit": 1000}
        if cursor is not None:
            query["since"] = cursor
        p0 = time.perf_counter()
        body = client.get("/v1/events", **query).json()
        slowest = max(slowest, time.perf_counter() - p0)
        cursor = str(body["cursor"])
        if not body["events"] or int(cursor) >= last:
            return time.perf_counter() - t0, slowest


def _fresh_schema(path: Path) -> None:
    """The exact schema EventStore creates (tables and indexes)."""
    store = EventStore(path)
    store.db.close()


def baseline_raw(path: Path, batches: list[tuple[str, int, list[tuple[Any, ...]]]]) -> float:
    _fresh_schema(path)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=normal")
    t0 = time.perf_counter()
    for source, cursor, rows in batches:
        conn.execute("BEGIN")
        conn.executemany(INSERT_EVENT_SQL, rows)
        conn.execute(CURSOR_SQL, (source, 0, cursor))
        conn.execute("COMMIT")
    took = time.perf_counter() - t0
    conn.close()
    return took


def baseline_peewee(path: Path, batches: list[tuple[str, int, list[dict[str, Any]]]]) -> float:
    store = EventStore(path)  # binds the models to this database
    db = store.db
    db.connect(reuse_if_open=True)
    t0 = time.perf_counter()
    for source, cursor, rows in batches:
        with db.atomic():
            StoredEvent.insert_many(rows).execute()
            ConsumerCursor.insert(
                source=source, epoch=0, cursor=cursor
            ).on_conflict_replace().execute()
    took = time.perf_counter() - t0
    db.close()
    return took


def baseline_store(path: Path, per_source: dict[str, list[Event]], batch: int) -> float:
    """EventStore as serve drives it: one batch per source in flight, wait, next."""
    store = EventStore(path)
    store.start()
    chunks = {
        s: [evs[i : i + batch] for i in range(0, len(evs), batch)] for s, evs in per_source.items()
    }
    rounds = max(len(c) for c in chunks.values())
    t0 = time.perf_counter()
    for r in range(rounds):
        commits = [
            store.submit(Batch(s, 0, c[r][-1].cursor, c[r]))
            for s, c in chunks.items()
            if r < len(c)
        ]
        for commit in commits:
            commit.wait()
    took = time.perf_counter() - t0
    total = sum(len(v) for v in per_source.values())
    # close() waits out its whole timeout when the writer is idle (its None
    # sentinel reads as "queue empty"); with 0 the writer still ends within 1 s.
    store.close(timeout=0.0)
    if store.inserted != total:
        raise RuntimeError(f"EventStore stored {store.inserted} of {total}")
    return took


def ingestion(result: dict[str, Any], base: Path, port: int, smoke: bool) -> dict[str, Any]:
    daemons, per_daemon = (2, 1_000) if smoke else (4, 20_000)
    names = [f"in{i}" for i in range(daemons)]
    t0 = time.time() - 3600.0
    per_source = {f"healthcheck/{n}": prefill_events(n, per_daemon, port, t0) for n in names}
    total = daemons * per_daemon
    out: dict[str, Any] = {"daemons": daemons, "events_per_daemon": per_daemon, "total": total}

    # In-process baselines on the very same rows.
    row_batches: list[tuple[str, int, list[dict[str, Any]]]] = []
    for s, evs in per_source.items():
        for i in range(0, len(evs), 1000):
            chunk = evs[i : i + 1000]
            row_batches.append((s, chunk[-1].cursor, [event_row(e, s, 0) for e in chunk]))
    tuple_batches = [
        (s, c, [tuple(r[k] for k in EVENT_COLUMNS) for r in rows]) for s, c, rows in row_batches
    ]
    work = base / "baselines"
    work.mkdir()
    times = {
        "raw": baseline_raw(work / "raw.db", tuple_batches),
        "peewee": baseline_peewee(work / "peewee.db", row_batches),
        "store": baseline_store(work / "store.db", per_source, 1000),
    }
    del row_batches, tuple_batches

    # routerd serve end to end.
    serve_base = base / "ingest"
    serve_base.mkdir()
    for n in names:
        write_event_log(serve_base / "state" / "healthcheck" / n, per_source[f"healthcheck/{n}"])
    del per_source
    with serve_process(serve_base, names, port) as serve:
        started = time.monotonic()
        serve.start(wait=False)
        done = wait_ingested(
            serve.state_dir / "routerd.db",
            [f"healthcheck/{n}" for n in names],
            per_daemon,
            serve,
            60.0 if smoke else 600.0,
        )
        status = serve.status()
        out["check"] = check_stored(
            serve.state_dir / "routerd.db", [f"healthcheck/{n}" for n in names], per_daemon
        )
        out["serve_counters"] = {"store": status["store"], "ingestion": status["ingestion"]}
        # The daemon's side alone: one daemon pages its whole log to a lone client.
        readout, slowest_page = read_out(
            serve.runtime_dir / "healthcheck" / f"{names[0]}.sock", per_daemon
        )
    wall = done["t_done"] - started
    drain = done["t_done"] - done["t_first"]
    drained = total - done["n_first"]
    serve_rate = drained / drain if drain > 0 else float("nan")
    cpu = {k: done["cpu_done"][k] - done["cpu_first"][k] for k in ("serve", "daemons")}
    out.update(
        {
            "serve_wall_s": wall,
            "serve_first_commit_s": done["t_first"] - started,
            "serve_drain_s": drain,
            "serve_drained_events": drained,
            "serve_events_per_s": serve_rate,
            "serve_wall_events_per_s": total / wall,
            "cpu_during_drain_s": cpu,
            "daemon_readout_s": readout,
            "daemon_readout_slowest_page_s": slowest_page,
            "daemon_readout_events_per_s": per_daemon / readout,
            "baseline_s": times,
            "baseline_events_per_s": {k: total / v for k, v in times.items()},
        }
    )
    raw_rate = total / times["raw"]
    rows: list[list[object]] = [
        ["raw sqlite3 executemany, 1000 per transaction", total, times["raw"], raw_rate, 1.0],
        [
            "peewee insert_many, 1000 per transaction",
            total,
            times["peewee"],
            total / times["peewee"],
            common.ratio(total / times["peewee"], raw_rate),
        ],
        [
            f"EventStore.submit(Batch of 1000), {daemons} sources in flight (in-process)",
            total,
            times["store"],
            total / times["store"],
            common.ratio(total / times["store"], raw_rate),
        ],
        [
            f"routerd serve, {daemons} daemons: first commit -> all stored",
            drained,
            drain,
            serve_rate,
            common.ratio(serve_rate, raw_rate),
        ],
        [
            "routerd serve: process start -> all stored",
            total,
            wall,
            total / wall,
            common.ratio(total / wall, raw_rate),
        ],
        [
            "one daemon paging its own log to a lone client (/v1/events, limit 1000)",
            per_daemon,
            readout,
            per_daemon / readout,
            common.ratio(per_daemon / readout, raw_rate),
        ],
    ]
    common.emit_table(
        result,
        f"Ingestion: {daemons} daemons x {per_daemon:,} pre-filled events into SQLite",
        ["path", "events", "seconds", "events/s", "x raw sqlite3"],
        rows,
    )
    print(
        f"CPU during serve's drain ({drain:.1f} s wall, 2 cores): routerd serve "
        f"{cpu['serve']:.1f} s, daemons {cpu['daemons']:.1f} s; stored once each: "
        f"{out['check']['complete_no_duplicates']}; slowest /v1/events page of the "
        f"lone read-out: {slowest_page * 1e3:.0f} ms\n",
        flush=True,
    )
    return out


# -- 3. queries over a large store ---------------------------------------------------
# (kind, name, daemon kind, weight): 10 resources.
RESOURCES = (
    ("HealthCheck", "x", "healthcheck", 10),
    ("HealthCheck", "wan-check", "healthcheck", 10),
    ("HealthCheck", "dns-check", "healthcheck", 8),
    ("HealthCheck", "vpn-check", "healthcheck", 6),
    ("HealthCheck", "lan-gw", "healthcheck", 6),
    ("DHCPv4Client", "wan", "dhcpv4", 20),
    ("DHCPv4Client", "guest", "dhcpv4", 10),
    ("DHCPv4Client", "lab", "dhcpv4", 5),
    ("DHCPv6PrefixDelegation", "wan", "dhcpv6", 15),
    ("DHCPv6PrefixDelegation", "backup", "dhcpv6", 10),
)
# Topics per daemon kind with weights; the common ones come with every kind: 20 topics.
TOPICS: dict[str, tuple[tuple[str, float], ...]] = {
    "healthcheck": (
        ("routerd.healthcheck.probe.succeeded", 60),
        ("routerd.healthcheck.probe.failed", 3),
        ("routerd.healthcheck.state.healthy", 0.5),
        ("routerd.healthcheck.state.unhealthy", 0.5),
    ),
    "dhcpv4": (
        ("routerd.dhcpv4.client.packet.received", 20),
        ("routerd.dhcpv4.client.request.sent", 10),
        ("routerd.dhcpv4.client.ack.received", 10),
        ("routerd.dhcpv4.client.lease.renewed", 8),
        ("routerd.dhcpv4.client.lease.bound", 2),
        ("routerd.dhcpv4.client.lease.rebound", 1),
        ("routerd.dhcpv4.client.state.changed", 2),
    ),
    "dhcpv6": (
        ("routerd.dhcpv6.client.message.sent", 10),
        ("routerd.dhcpv6.client.message.received", 10),
        ("routerd.dhcpv6.client.prefix.renewed", 5),
        ("routerd.dhcpv6.client.prefix.bound", 1),
    ),
    "common": (
        ("routerd.resource.phase.changed", 0.5),
        ("routerd.daemon.command.received", 0.3),
        ("routerd.daemon.command.executed", 0.3),
        ("routerd.daemon.lifecycle.started", 0.05),
    ),
}
RARE_TOPIC = "routerd.dhcpv4.client.lease.expired"  # the 20th topic: 1 in 20,000 events
# label, EventStore.query keyword arguments, the naive WHERE clause and its parameters.
QUERY_CASES: tuple[tuple[str, dict[str, Any], str, tuple[str, ...]], ...] = (
    (
        "topic glob routerd.dhcpv4.client.lease.* (common)",
        {"topics": ("routerd.dhcpv4.client.lease.*",)},
        "topic LIKE ?",
        ("routerd.dhcpv4.client.lease.%",),
    ),
    (
        "resource HealthCheck/x",
        {"resource": ("HealthCheck", "x")},
        "resource_kind = ? AND resource_name = ?",
        ("HealthCheck", "x"),
    ),
    (
        f"rare topic {RARE_TOPIC} (exact)",
        {"topics": (RARE_TOPIC,)},
        "topic = ?",
        (RARE_TOPIC,),
    ),
    (
        "rare topic as a glob routerd.dhcpv4.*.*.expired",
        {"topics": ("routerd.dhcpv4.*.*.expired",)},
        "topic LIKE ?",
        ("routerd.dhcpv4.%.%.expired",),
    ),
    (
        "no match, exact routerd.dhcpv4.client.lease.declined",
        {"topics": ("routerd.dhcpv4.client.lease.declined",)},
        "topic = ?",
        ("routerd.dhcpv4.client.lease.declined",),
    ),
    (
        "no match, glob routerd.wireguard.* (empty namespace)",
        {"topics": ("routerd.wireguard.*",)},
        "topic LIKE ?",
        ("routerd.wireguard.%",),
    ),
    (
        "no match, glob routerd.dhcpv4.server.* (busy namespace)",
        {"topics": ("routerd.dhcpv4.server.*",)},
        "topic LIKE ?",
        ("routerd.dhcpv4.server.%",),
    ),
)


def synthetic_rows(total: int, t_end: float) -> Iterator[tuple[Any, ...]]:
    """``total`` event rows across RESOURCES and TOPICS, one per second up to ``t_end``."""
    rng = random.Random(5)
    res_idx = rng.choices(range(len(RESOURCES)), [r[3] for r in RESOURCES], k=total)
    per_kind: dict[str, tuple[list[str], list[float]]] = {}
    for dk in ("healthcheck", "dhcpv4", "dhcpv6"):
        pairs = TOPICS[dk] + TOPICS["common"]
        per_kind[dk] = ([t for t, _ in pairs], [w for _, w in pairs])
    rare = set(rng.sample(range(total), max(1, total // 20_000)))
    cursors = [0] * len(RESOURCES)
    dhcp4 = [i for i, r in enumerate(RESOURCES) if r[2] == "dhcpv4"]
    for i in range(total):
        if i in rare:
            ri = dhcp4[i % len(dhcp4)]
            topic = RARE_TOPIC
        else:
            ri = res_idx[i]
            names, weights = per_kind[RESOURCES[ri][2]]
            topic = rng.choices(names, weights)[0]
        kind, name, dk, _ = RESOURCES[ri]
        cursors[ri] += 1
        attrs = (
            f'{{"resource.kind":"{kind}","resource.name":"{name}","daemon.kind":"{dk}",'
            f'"sequence":{cursors[ri]}}}'
        )
        yield (
            f"{dk}/{name}",
            0,
            cursors[ri],
            t_end - (total - i),
            topic,
            "info",
            "Synthetic",
            f"synthetic event {i}",
            kind,
            name,
            attrs,
        )


def fill_store(path: Path, total: int) -> dict[str, Any]:
    """A routerd.db with EventStore's schema holding ``total`` events: rows first,
    indexes built afterwards (faster than maintaining them row by row)."""
    _fresh_schema(path)
    conn = sqlite3.connect(str(path), isolation_level=None)
    t0 = time.perf_counter()
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
        "AND sql IS NOT NULL"
    ).fetchall()
    conn.execute("PRAGMA journal_mode=delete")
    conn.execute("PRAGMA synchronous=off")
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    conn.executemany(INSERT_EVENT_SQL, synthetic_rows(total, time.time() - 60.0))
    conn.execute(
        "INSERT OR REPLACE INTO cursors (source, epoch, cursor) "
        "SELECT source, 0, MAX(cursor) FROM events GROUP BY source"
    )
    conn.execute("INSERT OR IGNORE INTO topics (topic) SELECT DISTINCT topic FROM events")
    conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA journal_mode=wal")
    count = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    conn.close()
    return {
        "rows": count,
        "fill_s": time.perf_counter() - t0,
        "db_mib": path.stat().st_size / 2**20,
        "indexes": [sql for _, sql in indexes],
    }


def timed_runs(fn: Callable[[], object], runs: int, budget: float) -> list[float]:
    """Up to ``runs`` timed calls after 2 warm-ups; at least 5, stopping at ``budget`` s."""
    fn()
    fn()
    lat: list[float] = []
    spent = 0.0
    while len(lat) < runs and (len(lat) < 5 or spent < budget):
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        lat.append(took)
        spent += took
    return lat


def _naive_query(
    conn: sqlite3.Connection, where: str, params: tuple[str, ...]
) -> Callable[[], list[dict[str, Any]]]:
    sql = f"SELECT * FROM events NOT INDEXED WHERE {where} ORDER BY id DESC LIMIT 100"

    def run() -> list[dict[str, Any]]:
        return [row_to_wire(dict(r)) for r in conn.execute(sql, params)]

    return run


def _plans(path: Path, store: EventStore) -> dict[str, str]:
    """EXPLAIN QUERY PLAN of the SQL EventStore.query runs for each case."""
    seen: list[str] = []
    conn: sqlite3.Connection = store.db.connection()  # type: ignore[no-untyped-call]
    conn.set_trace_callback(seen.append)
    plans: dict[str, str] = {}
    raw = sqlite3.connect(str(path))
    raw.create_function("topic_match", 2, topic_matches, deterministic=True)
    try:
        for label, kwargs, _, _ in QUERY_CASES:
            seen.clear()
            store.query(limit=100, **kwargs)
            sql = next((s for s in seen if s.lstrip().upper().startswith("SELECT")), "")
            rows = raw.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall() if sql else []
            plans[label] = "; ".join(str(r[-1]) for r in rows)
    finally:
        conn.set_trace_callback(None)
        raw.close()
    return plans


def store_queries(path: Path, smoke: bool) -> dict[str, Any]:
    runs, budget = (10, 0.5) if smoke else (50, 5.0)
    store = EventStore(path)  # readers only: its writer thread is never started
    naive_conn = sqlite3.connect(str(path))
    naive_conn.row_factory = sqlite3.Row
    out: dict[str, Any] = {}
    try:
        plans = _plans(path, store)
        for label, kwargs, where, params in QUERY_CASES:

            def ours(kw: dict[str, Any] = kwargs) -> list[dict[str, Any]]:
                return store.query(limit=100, **kw)

            naive = _naive_query(naive_conn, where, params)
            expected = ours()
            same = [e["id"] for e in expected] == [e["id"] for e in naive()]
            out[label] = {
                "rows": len(expected),
                "same_rows_as_naive": same,
                "plan": plans.get(label, ""),
                "store": common.summary_ms(timed_runs(ours, runs, budget)),
                "naive": common.summary_ms(timed_runs(naive, runs, budget)),
                "ids": [e["id"] for e in expected],
            }
    finally:
        naive_conn.close()
        store.db.close()
    return out


def api_queries(serve: ServeProcess, cases: dict[str, Any], smoke: bool) -> None:
    """The same queries through GET .../events on the status socket (new connection each)."""
    runs, budget = (10, 0.5) if smoke else (50, 5.0)
    client = UnixClient(str(serve.status_socket_path), timeout=60.0)
    for label, kwargs, _, _ in QUERY_CASES:
        query: dict[str, Any] = {"limit": 100}
        if "topics" in kwargs:
            query["topic"] = kwargs["topics"][0]
        if "resource" in kwargs:
            query["resource"] = "/".join(kwargs["resource"])

        def get(q: dict[str, Any] = query) -> list[dict[str, Any]]:
            resp = client.get(f"{PREFIX}/events", **q)
            if resp.status != 200:
                raise RuntimeError(f"GET events answered {resp.status}: {resp.error_text()}")
            items: list[dict[str, Any]] = resp.json()["items"]
            return items

        entry = cases[label]
        entry["api_same_rows"] = [e["id"] for e in get()] == entry["ids"]
        entry["api"] = common.summary_ms(timed_runs(get, runs, budget))


def query_table(result: dict[str, Any], cases: dict[str, Any], rows_total: int) -> None:
    rows: list[list[object]] = []
    for label, c in cases.items():
        rows.append(
            [
                label,
                c["rows"],
                c["store"]["count"],
                c["store"]["p50_ms"],
                c["store"]["p99_ms"],
                c["naive"]["p50_ms"],
                c["naive"]["p99_ms"],
                common.ratio(c["naive"]["p50_ms"], c["store"]["p50_ms"]),
                c.get("api", {}).get("p50_ms", float("nan")),
                c.get("api", {}).get("p99_ms", float("nan")),
                c["same_rows_as_naive"] and c.get("api_same_rows", True),
            ]
        )
    common.emit_table(
        result,
        f"Newest 100 over {rows_total:,} stored events: EventStore.query vs a NOT INDEXED "
        "scan vs GET events (status socket)",
        [
            "query",
            "rows",
            "runs",
            "store p50 ms",
            "store p99 ms",
            "naive p50 ms",
            "naive p99 ms",
            "naive / store",
            "API p50 ms",
            "API p99 ms",
            "same rows",
        ],
        rows,
    )


# -- 2. delivery latency -------------------------------------------------------------
class LineReader:
    """A subprocess whose stdout lines are stamped with the wall time they were read."""

    def __init__(self, argv: list[str], stderr_path: Path) -> None:
        self.lines: queue.Queue[tuple[float, bytes]] = queue.Queue()
        with stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put((time.time(), line))

    def next_event(self, timeout: float) -> tuple[float, dict[str, Any]] | None:
        try:
            stamp, line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        event: dict[str, Any] = json.loads(line)
        return stamp, event

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self._thread.join(2.0)


@contextlib.contextmanager
def followers(serve: ServeProcess, daemon: str, logs: Path) -> Iterator[dict[str, LineReader]]:
    routerctl = str(common.VENV_BIN / "routerctl")
    common_args = [routerctl, "--runtime-dir", str(serve.runtime_dir), "events"]
    tail = ["--follow", "--tail", "-o", "json", "--topic", FOLLOW_TOPIC]
    readers: dict[str, LineReader] = {}
    try:
        readers["serve"] = LineReader([*common_args, *tail], logs / "follow-serve.err")
        readers["direct"] = LineReader(
            [*common_args, f"healthcheck/{daemon}", *tail], logs / "follow-direct.err"
        )
        yield readers
    finally:
        with sigterm_deferred():
            for r in readers.values():
                r.stop()


def _one_round(
    trigger: UnixClient, readers: dict[str, LineReader], timeout: float
) -> dict[str, list[float]]:
    """One reload; per reader, latencies of the events it printed up to ``command.executed``."""
    resp = trigger.post("/v1/commands/reload")
    if resp.status != 200:
        raise RuntimeError(f"reload answered {resp.status}: {resp.error_text()}")
    out: dict[str, list[float]] = {}
    for name, reader in readers.items():
        lat: list[float] = []
        while True:
            got = reader.next_event(timeout)
            if got is None:
                raise RuntimeError(f"the {name} follower printed nothing within {timeout:g} s")
            stamp, event = got
            lat.append(stamp - parse_rfc3339(event["time"]))
            if event["topic"].endswith((".executed", ".rejected")):
                break
        out[name] = lat
    return out


def delivery(
    result: dict[str, Any], serve: ServeProcess, base: Path, smoke: bool
) -> dict[str, Any]:
    rounds = 3 if smoke else 30
    daemon = "hc0"
    trigger = UnixClient(str(serve.runtime_dir / "healthcheck" / f"{daemon}.sock"), timeout=30.0)
    lat: dict[str, list[float]] = {"serve": [], "direct": []}
    with followers(serve, daemon, base) as readers:
        # Warm-up: reload until both followers are parked and print (then drain).
        deadline = time.monotonic() + 30.0
        while True:
            try:
                _one_round(trigger, readers, 1.0)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.3)
        for r in readers.values():
            while r.next_event(0.0) is not None:
                pass
        for _ in range(rounds):
            got = _one_round(trigger, readers, 15.0)
            for name, values in got.items():
                lat[name].extend(values)
            time.sleep(0.05)
    out: dict[str, Any] = {name: common.summary_ms(values) for name, values in lat.items()}
    out["rounds"] = rounds
    label = {
        "direct": f"routerctl events healthcheck/{daemon} --follow (daemon socket)",
        "serve": "routerctl events --follow (through routerd serve)",
    }
    common.emit_table(
        result,
        f"Delivery: event time -> line read from routerctl --follow -o json ({rounds} reloads)",
        ["follower", "events", "p50 ms", "p99 ms", "max ms", "x direct (p50)"],
        [
            [
                label[name],
                out[name]["count"],
                out[name]["p50_ms"],
                out[name]["p99_ms"],
                out[name]["max_ms"],
                common.ratio(out[name]["p50_ms"], out["direct"]["p50_ms"]),
            ]
            for name in ("direct", "serve")
        ],
    )
    return out


# -- 4. RSS ---------------------------------------------------------------------------
def rss_table(result: dict[str, Any], rss: dict[str, Any], daemons: int) -> None:
    kea = rss.get("kea_kib")
    base = kea if kea else rss["python_baseline_kib"]
    base_label = "x kea-dhcp4" if kea else "x python -c"
    rows: list[list[object]] = [
        [
            f"routerd serve ({rss['serve_threads']} threads, "
            f"{rss['serve_sqlite_connections_idle']} SQLite connections), idle after start",
            rss["serve_idle_kib"] / MIB,
            common.ratio(rss["serve_idle_kib"], base),
        ],
        [
            f"routerd serve after the API query runs "
            f"({rss['serve_sqlite_connections_after_api']} SQLite connections)",
            rss["serve_after_api_kib"] / MIB,
            common.ratio(rss["serve_after_api_kib"], base),
        ],
        [
            f"routerd serve after the follow runs too "
            f"({rss['serve_sqlite_connections_after']} SQLite connections)",
            rss["serve_after_kib"] / MIB,
            common.ratio(rss["serve_after_kib"], base),
        ],
        [
            f"{daemons} healthcheck daemons, sum",
            rss["daemons_sum_kib"] / MIB,
            common.ratio(rss["daemons_sum_kib"], base),
        ],
        [
            f"routerd serve + {daemons} daemons",
            (rss["serve_idle_kib"] + rss["daemons_sum_kib"]) / MIB,
            common.ratio(rss["serve_idle_kib"] + rss["daemons_sum_kib"], base),
        ],
    ]
    if kea:
        rows.append(["kea-dhcp4 (1 subnet, 1 interface)", kea / MIB, 1.0])
    rows.append(
        [
            "python -c 'sleep' (same interpreter)",
            rss["python_baseline_kib"] / MIB,
            common.ratio(rss["python_baseline_kib"], base),
        ]
    )
    common.emit_table(result, "RSS (VmRSS, MiB)", ["process", "MiB", base_label], rows)


def kea_rss(base: Path) -> int | None:
    """RSS of one kea-dhcp4 started by bench_api's helper (in a lab namespace,
    removed again at once); None when Kea is missing."""
    if common.find_program("kea-dhcp4") is None:
        return None
    import bench_api
    from routerd.testing.netns import Lab

    # The few seconds of Kea run with SIGTERM deferred, so the namespaces always go.
    with sigterm_deferred(), Lab() as lab:
        kea = bench_api.start_kea(lab, base / "kea")
        assert kea.pid is not None
        return common.rss_kib(kea.pid)


# -- main ---------------------------------------------------------------------------
def main(smoke: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    daemons = 10
    stored = 20_000 if smoke else 1_000_000
    with common.temp_dir("rdb-serve-") as base, common.tcp_listener() as port:
        marks = {"start": time.monotonic()}
        result["ingestion"] = ingestion(result, base, port, smoke)
        marks["ingestion"] = time.monotonic()

        big = base / "big"
        (big / "state").mkdir(parents=True)
        db = big / "state" / "routerd.db"
        fill = fill_store(db, stored)
        result["store_fill"] = fill
        print(
            f"store: {fill['rows']:,} rows, {fill['db_mib']:.0f} MiB, filled in "
            f"{fill['fill_s']:.1f} s\n",
            flush=True,
        )
        marks["fill"] = time.monotonic()
        cases = store_queries(db, smoke)
        marks["store_queries"] = time.monotonic()

        names = [f"hc{i}" for i in range(daemons)]
        with serve_process(big, names, port) as serve:
            serve.start(wait=False)
            serve.wait_ready(60.0)
            common.settle(0.5 if smoke else 2.0)
            assert serve.proc is not None
            pids = daemon_pids(serve)
            rss: dict[str, Any] = {
                "serve_idle_kib": common.rss_kib(serve.proc.pid),
                "serve_threads": common.threads_of(serve.proc.pid),
                "serve_sqlite_connections_idle": sqlite_connections(serve.proc.pid),
                "daemons": len(pids),
                "daemons_sum_kib": sum(common.rss_kib(p) for p in pids),
                "daemon_max_kib": max(common.rss_kib(p) for p in pids),
            }
            marks["serve_start"] = time.monotonic()
            api_queries(serve, cases, smoke)
            rss["serve_after_api_kib"] = common.rss_kib(serve.proc.pid)
            rss["serve_sqlite_connections_after_api"] = sqlite_connections(serve.proc.pid)
            marks["api_queries"] = time.monotonic()
            result["delivery"] = delivery(result, serve, big, smoke)
            marks["delivery"] = time.monotonic()
            rss["serve_after_kib"] = common.rss_kib(serve.proc.pid)
            rss["serve_sqlite_connections_after"] = sqlite_connections(serve.proc.pid)
            rss["python_baseline_kib"] = _python_rss()
            rss["kea_kib"] = kea_rss(big)
            result["serve_status"] = {
                k: v for k, v in serve.status().items() if k in ("store", "ingestion")
            }
            marks["rss"] = time.monotonic()
        marks["serve_stop"] = time.monotonic()
        steps = list(marks.items())
        result["timings_s"] = {
            name: round(t - steps[i][1], 2) for i, (name, t) in enumerate(steps[1:])
        }
        print(f"timings (s): {result['timings_s']}\n", flush=True)
        query_table(result, cases, fill["rows"])
        for c in cases.values():
            del c["ids"]
        result["queries"] = cases
        result["rss"] = rss
        rss_table(result, rss, daemons)
    return result


def _python_rss() -> int:
    import bench_api

    rss: int = bench_api.python_baseline_rss()
    return rss


if __name__ == "__main__":
    os.environ.setdefault("ROUTERD_PLUGINS", "healthcheck")
    # SIGTERM unwinds (as under run_all), so every process and directory is cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    common.run_standalone(NAME, main)
