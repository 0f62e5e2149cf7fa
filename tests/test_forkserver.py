"""routerd serve's fork server: named daemons, supervision, changed code, exec fallback.

Real ``routerd serve`` processes with real forked daemons. A small fake
plugin (``probe``, in a site directory on ``PYTHONPATH``) reports in its
status the code version it runs and what was imported when its engine
started.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import pytest
from routerd.client import UnixClient
from routerd.serve.forkserver import daemon_comm
from routerd.serve.forkserver import daemon_title
from routerd.serve.forkserver import process_starttime
from routerd.testing.daemon import pids_holding
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import ServeProcess

PROBE = """
    import sys
    {extra}
    from routerd import hookimpl, DaemonKind
    from routerd.config import SpecModel
    from routerd.daemon.engine import DaemonEngine

    VERSION = {version}


    class Spec(SpecModel):
        label: str = "x"


    class Engine(DaemonEngine):
        def start(self, ctx):
            from routerd.netapply import NetApplier

            NetApplier().close()  # a netlink socket, as the DHCP engines open one
            ctx.status.set_observed({{
                "version": VERSION,
                "falconBeforeEngine": "falcon" in sys.modules,
                "waitressBeforeEngine": "waitress" in sys.modules,
                "wholePyroute2": "pyroute2.ndb" in sys.modules,
            }})
            ctx.status.set_condition("Probed", True, "Started")
            ctx.status.set_phase("Installed", "Started")


    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="{name}", kind="{kind}", spec_model=Spec,
                            factory=lambda ctx: Engine()))
"""
#: An import that starts a thread: a process in that state must not fork.
THREADED = (
    "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()"
)


def install_probe(
    site: Path, module: str, name: str, kind: str, version: int = 1, extra: str = ""
) -> Path:
    path = site / f"{module}.py"
    path.write_text(
        textwrap.dedent(PROBE).format(extra=extra, version=version, name=name, kind=kind)
    )
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[routerd]\n{module} = {module}\n")
    return path


def probe(kind: str, name: str) -> dict[str, Any]:
    return resource(kind, name, {"label": name})


def check(name: str, port: int) -> dict[str, Any]:
    return resource(
        "HealthCheck",
        name,
        {"protocol": "tcp", "target": "127.0.0.1", "port": port, "interval": "1h"},
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Any]:
    """``lab(*resources, plugins=...)`` -> a started ServeProcess; its site dir is ``lab.site``."""
    made: list[ServeProcess] = []
    site = tmp_path / "site"
    site.mkdir()
    install_probe(site, "probe", "probe", "Probe")
    with tempfile.TemporaryDirectory(prefix="rdf-") as short:
        base = Path(short)

        def start(*resources: dict[str, Any], plugins: str = "healthcheck,probe") -> ServeProcess:
            config = write_config(tmp_path / "router.yaml", router_config(*resources))
            env = {
                "ROUTERD_PLUGINS": plugins,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(site), os.environ.get("PYTHONPATH")])
                ),
            }
            sp = ServeProcess(config, base / "run", base / "state", tmp_path / "serve.log", env=env)
            made.append(sp)
            return sp.start()

        start.site = site  # type: ignore[attr-defined]
        yield start
        failures = []
        for sp in made:
            try:
                sp.stop()
            except AssertionError as exc:
                failures.append(str(exc))
        leftover = pids_holding(base / "state")
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        assert not failures, failures
        assert not leftover, f"processes outlived routerd serve: {leftover}"


def observed(sp: ServeProcess, kind: str, name: str) -> dict[str, Any]:
    """The daemon's own status (straight from its socket), ``observed`` part."""
    sock = sp.runtime_dir / sp.daemon(kind, name)["daemonKind"] / f"{name}.sock"
    body = UnixClient(str(sock)).get("/v1/status").json()
    result: dict[str, Any] = body["resources"][0]["observed"]
    return result


def test_forked_daemons_are_named_in_ps_and_run_in_their_own_session(
    lab: Any, tcp_listener: int
) -> None:
    """Before: every daemon was `python -m routerd daemon ...`, exec'd by serve."""
    sp = lab(check("wan-up", tcp_listener), probe("Probe", "p1"))
    status = sp.status()
    fork_server = status["forkServer"]
    assert fork_server["ready"] and fork_server["kinds"] == ["healthcheck", "probe"]
    for d in status["daemons"]:
        assert d["startedBy"] == "fork", d
        pid, name = d["pid"], d["resource"]["name"]
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        assert (
            cmdline == daemon_title(d["daemonKind"], name) == f"routerd: {d['daemonKind']} {name}"
        )
        assert comm == daemon_comm(d["daemonKind"], name)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) == fork_server["pid"], "a child of the fork server"
        assert int(stat[3]) == pid, "a session leader, as the exec path's daemons"
    ps = subprocess.run(
        ["ps", "-o", "args=", "-p", str(sp.daemon("HealthCheck", "wan-up")["pid"])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ps.stdout.strip() == "routerd: healthcheck wan-up"
    assert (
        Path(f"/proc/{fork_server['pid']}/cmdline").read_bytes().startswith(b"routerd: fork-server")
    )


def test_sigkilled_forked_daemon_is_restarted_with_its_exit_status(
    lab: Any, tcp_listener: int
) -> None:
    sp = lab(probe("Probe", "p1"))
    old = sp.daemon("Probe", "p1")
    os.kill(old["pid"], signal.SIGKILL)
    new = poll(
        lambda: (d := sp.daemon("Probe", "p1"))["restarts"] == 1 and d["state"] == "Running" and d,
        10,
        "a restart",
    )
    assert new["lastExit"] == -signal.SIGKILL, "the fork server reported the exit status"
    assert new["pid"] != old["pid"] and new["startedBy"] == "fork"


def test_adoption_after_sigkill_of_serve(lab: Any, tcp_listener: int) -> None:
    sp = lab(check("up", tcp_listener), probe("Probe", "p1"))
    before = {d["resource"]["name"]: d["pid"] for d in sp.status()["daemons"]}
    old_fork_server = sp.status()["forkServer"]["pid"]
    sp.kill()
    # The fork server goes with serve (its socket closed); the daemons stay.
    poll(lambda: process_starttime(old_fork_server) is None, 5, "the fork server to exit")
    assert all(process_starttime(pid) is not None for pid in before.values())
    sp.start()
    after = sp.status()
    assert {d["resource"]["name"]: d["pid"] for d in after["daemons"]} == before
    assert all(d["adopted"] for d in after["daemons"]), after["daemons"]
    # Adopted daemons are supervised as before: a crash is restarted.
    os.kill(before["p1"], signal.SIGKILL)
    poll(
        lambda: (d := sp.daemon("Probe", "p1"))["state"] == "Running" and d["pid"] != before["p1"],
        10,
        "the adopted daemon restarted after a crash",
    )


def test_fork_server_crash_leaves_daemons_running_and_a_new_one_starts(
    lab: Any, tcp_listener: int
) -> None:
    sp = lab(probe("Probe", "p1"))
    first = sp.status()["forkServer"]["pid"]
    daemon_pid = sp.daemon("Probe", "p1")["pid"]
    os.kill(first, signal.SIGKILL)
    new = poll(
        lambda: (f := sp.status()["forkServer"])["ready"] and f["pid"] != first and f,
        10,
        "a new fork server",
    )
    assert "exited with -9" in new["lastError"]
    assert sp.daemon("Probe", "p1")["pid"] == daemon_pid, "the daemon kept running"
    os.kill(daemon_pid, signal.SIGKILL)  # watched by PID now: still restarted
    d = poll(
        lambda: (
            (x := sp.daemon("Probe", "p1"))["state"] == "Running" and x["pid"] != daemon_pid and x
        ),
        10,
        "a restart",
    )
    assert d["startedBy"] == "fork"


def test_changed_plugin_code_restarts_the_fork_server(lab: Any, tcp_listener: int) -> None:
    """Before (no fork server) a daemon always ran what was on disk; a fork must too."""
    module = lab.site / "probe.py"
    sp = lab(probe("Probe", "p1"))
    assert observed(sp, "Probe", "p1")["version"] == 1
    first = sp.status()["forkServer"]["pid"]
    install_probe(lab.site, "probe", "probe", "Probe", version=2)  # "pip install -U"
    assert module.read_text().count("VERSION = 2") == 1
    write_config(sp.config_path, router_config(probe("Probe", "p1"), probe("Probe", "p2")))
    assert sp.post("reload").json()["started"] == ["Probe/p2"]
    sp.wait_ready()
    assert observed(sp, "Probe", "p2")["version"] == 2, "the new daemon runs the new code"
    fork_server = sp.status()["forkServer"]
    assert fork_server["pid"] != first and fork_server["restartsForChangedCode"] == 1
    assert sp.daemon("Probe", "p2")["startedBy"] == "fork"


def test_plugin_that_cannot_be_forked_falls_back_to_exec(lab: Any, tcp_listener: int) -> None:
    install_probe(lab.site, "threaded", "threaded", "Threaded", extra=THREADED)
    sp = lab(probe("Probe", "p1"), probe("Threaded", "t1"), plugins="healthcheck,probe,threaded")
    fork_server = sp.status()["forkServer"]
    assert "threaded" not in fork_server["kinds"] and "probe" in fork_server["kinds"]
    assert sp.daemon("Threaded", "t1")["startedBy"] == "exec"
    assert sp.daemon("Probe", "p1")["startedBy"] == "fork"
    pid = sp.daemon("Threaded", "t1")["pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:5] == [b"-m", b"routerd", b"daemon", b"threaded"]
    # The exec'd daemon imports its own plugin only (serve chose it: no conflict).
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"ROUTERD_PLUGINS=threaded" in environ


def test_a_fresh_daemon_starts_its_engine_before_the_http_stack(tmp_path: Path) -> None:
    """Before: waitress and falcon were imported and bound before the engine started."""
    site = tmp_path / "site"
    site.mkdir()
    install_probe(site, "probe", "probe", "Probe")
    config = write_config(tmp_path / "r.yaml", router_config(probe("Probe", "p1")))
    with tempfile.TemporaryDirectory(prefix="rdf-") as short:
        run = Path(short) / "run"
        env = {
            **os.environ,
            "ROUTERD_PLUGINS": "probe",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        }
        argv = [sys.executable, "-m", "routerd", "daemon", "probe", "--config", str(config)]
        argv += ["--resource", "p1", "--runtime-dir", str(run), "--state-dir", short + "/state"]
        proc = subprocess.Popen(argv, env=env)
        try:
            sock = run / "probe" / "p1.sock"

            def status() -> dict[str, Any] | None:
                try:
                    resp = UnixClient(str(sock), timeout=2).get("/v1/status")
                except OSError:
                    return None
                return resp.json() if resp.status == 200 else None

            body = poll(status, 20, "the daemon's status")
            seen = body["resources"][0]["observed"]
            assert seen["falconBeforeEngine"] is False and seen["waitressBeforeEngine"] is False
            assert seen["wholePyroute2"] is False
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
