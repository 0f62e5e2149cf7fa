"""Event log appends per second, in-process, against raw baselines.

``EventLog.append`` (what every ``emit`` does: build the Event, JSON-encode
it, one ``write(2)`` on an ``O_APPEND`` descriptor, ring, ``notify_all``,
rotation at 4 MiB) against:

- the same append with no file (``EventLog(None)``): the in-memory share;
- ``json.dumps`` + ``os.write`` of the same event dicts;
- ``os.write`` of the very same pre-encoded JSON lines (the syscall floor);
- sqlite3 inserts in autocommit of the same lines, WAL + ``synchronous=NORMAL``
  (no fsync per commit, like the event log) and SQLite's defaults
  (rollback journal, ``synchronous=FULL``: an fsync per insert).

All files live in a temporary directory on the same file system as
``/var/lib`` (ext4 here), where the daemon keeps ``events.jsonl``.
"""

from __future__ import annotations

from collections.abc import Callable
import gc
import json
import os
from pathlib import Path
import sqlite3
import time
from typing import Any

import common
from routerd.daemon.eventlog import ROTATE_BYTES
from routerd.daemon.eventlog import EventLog
from routerd.model import Event

NAME = "eventlog"
TOPIC = "routerd.healthcheck.state.healthy"


def _attributes(i: int) -> dict[str, Any]:
    return {
        "resource.kind": "HealthCheck",
        "resource.name": "wan-check",
        "daemon.kind": "healthcheck",
        "target": "192.0.2.1",
        "port": 443,
        "latencyMs": 1.25 + (i % 7),
        "sequence": i,
    }


def _timed(count: int, one: Callable[[int], object]) -> list[float]:
    # Start each run from a clean heap: the benchmark's own lists must not
    # lengthen the garbage collector's pauses inside the timed loop.
    gc.collect()
    lat: list[float] = []
    clock = time.perf_counter
    for i in range(count):
        t0 = clock()
        one(i)
        lat.append(clock() - t0)
    return lat


def run_eventlog(directory: Path, count: int, with_file: bool) -> tuple[list[float], list[int]]:
    """Timed appends; also which appends rotated the file (its size went down)."""
    log = EventLog(directory / "events.jsonl" if with_file else None)
    log.restore()
    rotated: list[int] = []
    last_size = 0

    append = log.append
    gc.collect()
    lat: list[float] = []
    clock = time.perf_counter
    for i in range(count):
        attrs = _attributes(i)
        t0 = clock()
        append(TOPIC, severity="info", reason="Healthy", message="probe ok", attributes=attrs)
        lat.append(clock() - t0)
        size = log._size  # bookkeeping outside the timed call
        if size < last_size:
            rotated.append(i)
        last_size = size
    log.close()
    return lat, rotated


def same_lines(count: int) -> list[bytes]:
    """The JSON lines the log writes for these events (the files it rotated
    away are gone, so they are encoded again the same way)."""
    now = time.time()
    return [
        json.dumps(
            Event(
                i + 1, now + i * 1e-5, TOPIC, "info", "Healthy", "probe ok", _attributes(i)
            ).to_dict(),
            separators=(",", ":"),
        ).encode()
        + b"\n"
        for i in range(count)
    ]


def run_json_write(directory: Path, count: int, dicts: list[dict[str, Any]]) -> list[float]:
    fd = os.open(
        directory / "json.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
    )
    try:
        return _timed(
            count,
            lambda i: os.write(fd, json.dumps(dicts[i], separators=(",", ":")).encode() + b"\n"),
        )
    finally:
        os.close(fd)


def run_raw_write(directory: Path, count: int, lines: list[bytes]) -> list[float]:
    fd = os.open(
        directory / "raw.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
    )
    try:
        return _timed(count, lambda i: os.write(fd, lines[i]))
    finally:
        os.close(fd)


def run_sqlite(directory: Path, count: int, lines: list[bytes], wal: bool) -> list[float]:
    path = directory / ("wal.db" if wal else "default.db")
    db = sqlite3.connect(path, isolation_level=None)  # autocommit
    try:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE events (cursor INTEGER PRIMARY KEY, line TEXT NOT NULL)")
        texts = [line.decode() for line in lines]
        return _timed(
            count, lambda i: db.execute("INSERT INTO events (line) VALUES (?)", (texts[i],))
        )
    finally:
        db.close()


def main(smoke: bool) -> dict[str, Any]:
    count = 4_000 if smoke else 60_000
    fsync_count = 100 if smoke else 1_500
    reps = 1 if smoke else 3
    result: dict[str, Any] = {"events": count, "fsync_events": fsync_count, "reps": reps}
    runs: dict[str, list[dict[str, Any]]] = {}
    rotations: dict[str, list[Any]] = {"count": [], "rotating_s": [], "other_s": []}
    lines: list[bytes] = []

    def record(name: str, lat: list[float]) -> None:
        total = sum(lat)
        runs.setdefault(name, []).append(
            {
                "count": len(lat),
                "per_s": len(lat) / total if total else 0.0,
                "p50_us": common.percentile(lat, 50) * 1e6,
                "p99_us": common.percentile(lat, 99) * 1e6,
                "p999_us": common.percentile(lat, 99.9) * 1e6,
                "max_us": max(lat) * 1e6,
            }
        )

    with common.temp_dir("rdb-ev-") as base:
        for rep in range(reps):
            d = base / f"rep{rep}"
            d.mkdir()
            lat, rotated = run_eventlog(d, count, with_file=True)
            record("eventlog", lat)
            marks = set(rotated)
            rotations["count"].append(len(rotated))
            rotations["rotating_s"].extend(lat[i] for i in rotated)
            rotations["other_s"].extend(x for i, x in enumerate(lat) if i not in marks)
            lines = same_lines(count)
            tail = (d / "events.jsonl").read_bytes().splitlines(keepends=True)
            assert tail and len(tail[-1]) == len(lines[-1]), "lines differ from the log's own"
            record("eventlog-memory", run_eventlog(d, count, with_file=False)[0])
            dicts = [json.loads(line) for line in lines]
            record("json+write", run_json_write(d, count, dicts))
            del dicts
            record("write", run_raw_write(d, count, lines))
            record("sqlite-wal", run_sqlite(d, count, lines, wal=True))
            record("sqlite-default", run_sqlite(d, fsync_count, lines, wal=False))
        result["line_bytes_mean"] = sum(len(x) for x in lines) / len(lines)
        result["rotations_per_run"] = common.median(rotations["count"])

    labels = {
        "eventlog": "EventLog.append (file, O_APPEND)",
        "eventlog-memory": "EventLog.append, no file (ring only)",
        "json+write": "json.dumps + os.write",
        "write": "os.write of the same lines",
        "sqlite-wal": "sqlite3 autocommit, WAL, synchronous=NORMAL",
        "sqlite-default": "sqlite3 autocommit, defaults (fsync per insert)",
    }
    summary: dict[str, dict[str, Any]] = {}
    base_rate = common.median([r["per_s"] for r in runs["eventlog"]])
    rows: list[list[object]] = []
    for key, label in labels.items():
        rs = runs[key]
        s = {
            "per_s": common.median([r["per_s"] for r in rs]),
            "p50_us": common.median([r["p50_us"] for r in rs]),
            "p99_us": common.median([r["p99_us"] for r in rs]),
            "p999_us": common.median([r["p999_us"] for r in rs]),
            "max_us": max(r["max_us"] for r in rs),
            "runs": rs,
        }
        s["rate_vs_eventlog"] = common.ratio(s["per_s"], base_rate)
        summary[key] = s
        rows.append(
            [
                label,
                rs[0]["count"],
                s["per_s"],
                s["p50_us"],
                s["p99_us"],
                s["p999_us"],
                s["max_us"],
                s["rate_vs_eventlog"],
            ]
        )
    result["summary"] = summary
    common.emit_table(
        result,
        f"Event appends (median of {reps} run(s); ~{result['line_bytes_mean']:.0f}-byte lines, "
        f"{result['rotations_per_run']} rotations per EventLog run)",
        ["writer", "events", "per s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "x EventLog rate"],
        rows,
    )
    rot: dict[str, Any] = {
        "rotate_bytes": ROTATE_BYTES,
        "rotating": common.summary_ms(rotations["rotating_s"]),
        "other": common.summary_ms(rotations["other_s"]),
    }
    result["rotation"] = rot
    common.emit_table(
        result,
        f"EventLog.append: the appends that rotated the file ({ROTATE_BYTES // (1 << 20)} MiB) vs the others",
        ["appends", "count", "p50 ms", "p99 ms", "max ms"],
        [
            [name, r["count"], r["p50_ms"], r["p99_ms"], r["max_ms"]]
            for name, r in (("rotating", rot["rotating"]), ("all others", rot["other"]))
        ],
    )
    return result


if __name__ == "__main__":
    common.run_standalone(NAME, main)
