"""Shared helpers for routerd's benchmarks (DESIGN.md §11).

Benchmarks are not tests: each ``bench_*.py`` module compares things side by
side in one run (ratios, because these machines are noisy), prints tables and
returns a JSON-able dict from ``main(smoke: bool)``. :func:`run_standalone`
lets a module run on its own (``python bench/bench_api.py [--smoke]``);
``bench/run_all.py`` runs them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import datetime as dt
import json
import math
import os
from pathlib import Path
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent

Row = Sequence[object]


# -- statistics -------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100), linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (rank - low))


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/max (and count) of durations given in seconds, in milliseconds."""
    return {
        "count": len(values_s),
        "p50_ms": percentile(values_s, 50) * 1e3,
        "p99_ms": percentile(values_s, 99) * 1e3,
        "max_ms": (max(values_s) * 1e3) if values_s else math.nan,
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# -- output ------------------------------------------------------------------------
def fmt(value: object) -> str:
    """Numbers with sensible precision; everything else as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        mag = abs(value)
        if mag >= 1000:
            return f"{value:,.0f}"
        if mag >= 100:
            return f"{value:.0f}"
        if mag >= 10:
            return f"{value:.1f}"
        if mag >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Row]) -> str:
    """A Markdown table (readable in a terminal and pasteable into docs)."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(items: Sequence[str]) -> str:
        parts = [
            item.ljust(widths[i]) if i == 0 else item.rjust(widths[i])
            for i, item in enumerate(items)
        ]
        return "| " + " | ".join(parts) + " |"

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    out = [f"### {title}", "", line(list(headers)), sep, *(line(r) for r in cells)]
    return "\n".join(out)


def emit_table(
    result: dict[str, Any], title: str, headers: Sequence[str], rows: Sequence[Row]
) -> None:
    """Print a table now and keep it in ``result["tables"]`` for run_all / docs."""
    text = table(title, headers, rows)
    print(text + "\n", flush=True)
    result.setdefault("tables", []).append(text)


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_result(name: str, data: dict[str, Any], smoke: bool) -> Path:
    """Write ``bench/results/<name>-<UTC date>.json`` (``-smoke`` before .json in smoke mode)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    now = utc_now()
    suffix = "-smoke" if smoke else ""
    path = RESULTS_DIR / f"{name}-{now.date().isoformat()}{suffix}.json"
    payload = {
        "benchmark": name,
        "time": now.isoformat(timespec="seconds"),
        "smoke": smoke,
        "machine": machine_info(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def run_standalone(name: str, main: Callable[[bool], dict[str, Any]]) -> None:
    """``python bench/bench_x.py [--smoke]``: run one benchmark and write its result."""
    parser = argparse.ArgumentParser(description=f"routerd benchmark: {name}")
    parser.add_argument("--smoke", action="store_true", help="a couple of seconds per run")
    args = parser.parse_args()
    started = time.monotonic()
    data = main(args.smoke)
    path = write_result(name, data, args.smoke)
    print(f"{name}: {time.monotonic() - started:.1f} s, results in {path}")


# -- processes ---------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def find_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    # Short paths: a Unix socket path is limited to 107 bytes.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def tcp_listener() -> Iterator[int]:
    """A loopback TCP listener for healthcheck probes (the kernel completes the
    handshake from the backlog; nobody needs to accept). Yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def healthcheck_spec(port: int) -> dict[str, Any]:
    return {
        "protocol": "tcp",
        "target": "127.0.0.1",
        "port": port,
        "interval": "10s",
        "timeout": "1s",
    }


@contextlib.contextmanager
def healthcheck_daemons(base: Path, count: int, port: int) -> Iterator[list[DaemonProcess]]:
    """Start ``count`` healthcheck daemons (``hc0``..) under ``base``; stop them by PID.

    Sockets in ``base/run/healthcheck/``, state in ``base/state``.
    """
    names = [f"hc{i}" for i in range(count)]
    config = router_config(
        *(resource("HealthCheck", n, healthcheck_spec(port)) for n in names), name="bench"
    )
    config_path = write_config(base / "router.yaml", config)
    daemons: list[DaemonProcess] = []
    try:
        for n in names:
            d = DaemonProcess(
                daemon_kind="healthcheck",
                resource=n,
                config_path=config_path,
                runtime_dir=base / "run",
                state_dir=base / "state",
                log_path=base / f"daemon-{n}.log",
                env={"ROUTERD_PLUGINS": "healthcheck"},
            )
            daemons.append(d)
            d.start(wait=False)
        for d in daemons:
            d.wait_healthy(20.0)
        yield daemons
    finally:
        for d in daemons:
            try:
                d.stop(5.0)
            except AssertionError as exc:  # it was SIGKILLed by PID: say so, carry on
                print(f"warning: {exc}", file=sys.stderr)


def settle(seconds: float) -> None:
    time.sleep(seconds)
