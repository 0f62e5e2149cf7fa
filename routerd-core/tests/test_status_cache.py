"""/v1/status is serialized once per change (docs/decisions.md, "Process model")."""

from __future__ import annotations

import json
from pathlib import Path

from routerd.config import load_resource
from routerd.daemon.runtime import DaemonPaths
from routerd.daemon.runtime import DaemonRuntime
from routerd.plugins import load_plugins
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config


def runtime(tmp_path: Path) -> DaemonRuntime:
    plugins = load_plugins(allow={"healthcheck"})
    kind = plugins.kinds["healthcheck"]
    spec = {"protocol": "tcp", "target": "127.0.0.1", "port": 9, "interval": "1h"}
    config = write_config(tmp_path / "r.yaml", router_config(resource("HealthCheck", "a", spec)))
    res = load_resource(config, plugins, "a", kind)
    paths = DaemonPaths.default("healthcheck", "a", tmp_path / "run", tmp_path / "state")
    return DaemonRuntime(plugins, kind, config, res, paths)


def test_status_bytes_are_reused_until_something_shown_changes(tmp_path: Path) -> None:
    """Before: every GET built the status (deep copies) and encoded it again."""
    rt = runtime(tmp_path)
    first = rt.status_json()
    assert rt.status_json() is first, "nothing changed: the same bytes"
    assert json.loads(first) == rt.status().to_dict()

    rt.resource_state.set_condition("Probed", True, "Started", "first probe")
    second = rt.status_json()
    assert second is not first
    assert json.loads(second)["resources"][0]["conditions"][0]["type"] == "Probed"
    assert rt.status_json() is second

    rt.resource_state.set_condition("Probed", True, "Started", "first probe")  # the same again
    assert rt.status_json() is second, "an unchanged condition is not a change"

    rt.resource_state.update_observed(probes=1)
    third = rt.status_json()
    assert json.loads(third)["resources"][0]["observed"] == {"probes": 1}

    rt.resource_state.update_observed(probes=True)  # == 1 in Python, not in JSON
    assert json.loads(rt.status_json())["resources"][0]["observed"] == {"probes": True}

    rt.resource_state.set_phase("Healthy", "Probed")
    assert json.loads(rt.status_json())["resources"][0]["phase"] == "Healthy"


def test_runtime_counters_are_never_served_stale(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    before = rt.status_json()
    assert rt.waiters.acquire()
    parked = json.loads(rt.status_json())
    assert parked["runtime"]["longPolls"]["active"] == 1
    rt.waiters.release()
    rt.eventlog.append("routerd.daemon.command.received", reason="R", message="m")
    # Readable once the cursor file's first mark is on disk (written on a thread).
    assert rt.eventlog.wait_shown(10)
    after = json.loads(rt.status_json())
    assert after["runtime"]["longPolls"]["active"] == 0
    assert (
        int(after["runtime"]["eventLog"]["head"])
        == int(json.loads(before)["runtime"]["eventLog"]["head"]) + 1
    )
    rt.phase = "Running"
    assert json.loads(rt.status_json())["phase"] == "Running"
