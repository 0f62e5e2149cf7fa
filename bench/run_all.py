"""Run every ``bench/bench_*.py`` benchmark: ``make bench`` (or ``--smoke`` for CI).

Each module's ``main(smoke: bool) -> dict`` prints its tables; its result goes
to ``bench/results/<name>-<UTC date>.json``. Exit status: 0 when every
benchmark ran, 1 when one crashed (the others still run), 2 on bad usage.
Figures are never checked: benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
import signal
import sys
import time
import traceback
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import common  # noqa: E402

MAIN_PID = os.getpid()


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # In the main process, unwind so every context manager stops what it started
    # (daemons by PID, namespaces through their Lab); forked workers just exit.
    if os.getpid() != MAIN_PID:
        os._exit(128 + signum)
    raise SystemExit(128 + signum)


def discover() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--smoke", action="store_true", help="shrink every run to a couple of seconds"
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only bench_NAME (repeatable)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Load only the plugin the benchmarks use: nothing installed elsewhere leaks in.
    os.environ["ROUTERD_PLUGINS"] = "healthcheck"

    modules = discover()
    if args.only:
        wanted = {f"bench_{n.removeprefix('bench_')}" for n in args.only}
        unknown = wanted - set(modules)
        if unknown:
            print(
                f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {', '.join(modules)}",
                file=sys.stderr,
            )
            return 2
        modules = [m for m in modules if m in wanted]

    info = common.machine_info()
    print(
        f"# routerd benchmarks{' (smoke)' if args.smoke else ''}: {common.utc_now():%Y-%m-%d %H:%M} UTC, "
        f"{info['nproc']} x {info['cpu_model']}, Python {info['python']}\n",
        flush=True,
    )
    started = time.monotonic()
    failed: list[str] = []
    timings: list[tuple[str, float, str]] = []
    for name in modules:
        print(f"## {name}\n", flush=True)
        t0 = time.monotonic()
        try:
            module: Any = importlib.import_module(name)
            data = module.main(args.smoke)
            path = common.write_result(
                getattr(module, "NAME", name.removeprefix("bench_")), data, args.smoke
            )
            outcome = f"results in {path.relative_to(BENCH_DIR.parent)}"
        except Exception:
            traceback.print_exc()
            failed.append(name)
            outcome = "CRASHED"
        took = time.monotonic() - t0
        timings.append((name, took, outcome))
        print(f"{name}: {took:.1f} s, {outcome}\n", flush=True)

    total = time.monotonic() - started
    for name, took, outcome in timings:
        print(f"  {name:<20} {took:6.1f} s  {outcome}")
    print(f"total {total:.1f} s" + (f"; crashed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
