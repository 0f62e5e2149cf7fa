"""The common commands stay fast: no heavy imports (python-stack.md §8)."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

HEAVY = ["falcon", "waitress", "peewee", "pyroute2", "dpkt", "pydantic", "pluggy", "httpx", "yaml"]
PROBE = """
import json, sys, routerctl.cli
from click.testing import CliRunner
result = CliRunner().invoke(routerctl.cli.main, sys.argv[1:])
heavy = set(json.loads(HEAVY))
loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy or m == 'http.client')
print(json.dumps({"exit": result.exit_code, "loaded": loaded}))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["daemons", "--runtime-dir", "{run}"],
        ["daemons", "--runtime-dir", "{run}", "-o", "json"],
        ["--runtime-dir", "{run}", "status", "healthcheck/lo"],
        ["--runtime-dir", "{run}", "events", "healthcheck/lo", "--topic", "a.*"],
        ["--runtime-dir", "{run}", "renew", "healthcheck/lo"],
        ["--runtime-dir", "{run}", "stop", "healthcheck/lo"],
        ["renew", "--help"],
    ],
)
def test_common_commands_import_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    # Not the top-level --help: it loads plugins to list their commands under
    # "Plugin commands" (docs/routerctl.md); a command's own --help stays light.
    argv = [a.format(run=tmp_path) for a in args]
    code = PROBE.replace("HEAVY", repr(json.dumps(HEAVY)))
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["loaded"] == []
    # the command really ran (0, or 1 for the missing socket), not a usage error
    assert report["exit"] in (0, 1)


def test_the_installed_script_reports_one_line_without_traceback(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "routerctl", "--runtime-dir", str(tmp_path), "status", "x/y"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr == f"routerctl: no socket at {tmp_path}/x/y.sock (is the daemon running?)\n"
