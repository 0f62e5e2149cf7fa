"""``routerctl daemons`` wall time with 5 daemons running, for scale.

Five healthcheck daemons run in a temporary runtime dir; ``routerctl daemons
--runtime-dir DIR`` (discover the sockets, ask each ``/v1/status`` in
parallel, print the table) is timed by hyperfine (``--shell=none``, warm-up
runs first) next to ``python -c pass`` (the interpreter's floor), ``python -c
"import routerctl.cli"`` (the import share) and ``ip -j link`` (a C tool).
Without hyperfine, a loop of subprocess runs gives the median instead.
"""

from __future__ import annotations

import json
from pathlib import Path
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

import common

NAME = "routerctl"
DAEMONS = 5


def commands(runtime: Path) -> list[tuple[str, list[str]]]:
    python = sys.executable
    routerctl = str(common.VENV_BIN / "routerctl")
    ip = common.find_program("ip") or "ip"
    return [
        (
            f"routerctl daemons ({DAEMONS} daemons)",
            [routerctl, "daemons", "--runtime-dir", str(runtime)],
        ),
        ("python -c 'import routerctl.cli'", [python, "-c", "import routerctl.cli"]),
        ("python -c pass", [python, "-c", "pass"]),
        ("ip -j link", [ip, "-j", "link"]),
    ]


def with_hyperfine(
    hyperfine: str, cmds: list[tuple[str, list[str]]], smoke: bool, out: Path, ignore_failure: bool
) -> list[dict[str, Any]]:
    argv = [
        hyperfine,
        "--shell=none",
        "--style=basic",
        "--warmup",
        "1" if smoke else "5",
        "--runs",
        "5" if smoke else "40",
        "--export-json",
        str(out),
    ]
    if ignore_failure:
        argv.append("--ignore-failure")
    for name, cmd in cmds:
        argv += ["--command-name", name, shlex.join(cmd)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=600)
    data = json.loads(out.read_text())
    results = []
    for (name, _cmd), r in zip(cmds, data["results"], strict=True):
        results.append(
            {
                "name": name,
                "median_ms": r["median"] * 1e3,
                "mean_ms": r["mean"] * 1e3,
                "stddev_ms": (r.get("stddev") or 0.0) * 1e3,
                "min_ms": r["min"] * 1e3,
                "max_ms": r["max"] * 1e3,
                "runs": len(r["times"]),
            }
        )
    return results


def with_loop(cmds: list[tuple[str, list[str]]], smoke: bool) -> list[dict[str, Any]]:
    runs = 5 if smoke else 40
    results = []
    for name, cmd in cmds:
        subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )  # warm-up
        times: list[float] = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times.append(time.perf_counter() - t0)
        results.append(
            {
                "name": name,
                "median_ms": statistics.median(times) * 1e3,
                "mean_ms": statistics.fmean(times) * 1e3,
                "stddev_ms": statistics.pstdev(times) * 1e3,
                "min_ms": min(times) * 1e3,
                "max_ms": max(times) * 1e3,
                "runs": runs,
            }
        )
    return results


def main(smoke: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"daemons": DAEMONS}
    with (
        common.temp_dir("rdb-ctl-") as base,
        common.tcp_listener() as port,
        common.healthcheck_daemons(base, DAEMONS, port),
    ):
        runtime = base / "run"
        cmds = commands(runtime)
        # Check once that routerctl does what it should; measure it anyway if not.
        check = subprocess.run(cmds[0][1], capture_output=True, text=True, timeout=30, check=False)
        listed = sum(1 for line in check.stdout.splitlines() if line.startswith("healthcheck "))
        result["routerctl_check"] = {
            "returncode": check.returncode,
            "daemons_listed": listed,
            "stderr": check.stderr.strip()[:500],
        }
        healthy = check.returncode == 0 and listed == DAEMONS
        if not healthy:
            print(
                f"warning: routerctl daemons exited {check.returncode} listing {listed}/{DAEMONS} "
                f"daemons: {check.stderr.strip()[:300]}",
                file=sys.stderr,
            )
        hyperfine = common.find_program("hyperfine")
        if hyperfine:
            result["tool"] = "hyperfine"
            timings = with_hyperfine(hyperfine, cmds, smoke, base / "hyperfine.json", not healthy)
        else:
            result["tool"] = "subprocess loop"
            timings = with_loop(cmds, smoke)
    floor = next(t["median_ms"] for t in timings if t["name"] == "python -c pass")
    for t in timings:
        t["vs_python_pass"] = common.ratio(t["median_ms"], floor)
    result["timings"] = timings
    common.emit_table(
        result,
        f"routerctl daemons wall time ({result['tool']}, {timings[0]['runs']} runs each)",
        ["command", "median ms", "mean ± sd ms", "min ms", "max ms", "x python -c pass"],
        [
            [
                t["name"],
                t["median_ms"],
                f"{common.fmt(t['mean_ms'])} ± {common.fmt(t['stddev_ms'])}",
                t["min_ms"],
                t["max_ms"],
                t["vs_python_pass"],
            ]
            for t in timings
        ],
    )
    return result


if __name__ == "__main__":
    common.run_standalone(NAME, main)
