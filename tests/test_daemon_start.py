"""What a daemon does before its first packet (issue 11, docs/decisions.md "Process model").

A standalone ``routerd daemon`` imports only what its protocol needs: no
click on an ordinary command line, only its own plugin and the observers
(through the plugin index, with a kind claimed twice still refused), four
of dpkt's modules for the DHCPv4 codec, none of serve's rule models. A
daemon forked by routerd serve validates the spec serve hands it instead of
reading the config again. Real processes and real installed distributions
(``.dist-info`` directories on ``PYTHONPATH``), as in
routerd-core/tests/test_plugin_loading.py.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import textwrap
import threading
from typing import Any

import pytest
from routerd.client import UnixClient
from routerd.daemon.persistence import PersistenceHealth
from routerd.serve.forkserver import ForkServerClient
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config

HC_SPEC = {"protocol": "tcp", "target": "127.0.0.1", "port": 9, "interval": "1h"}
#: An observer: implements a daemon hook, so every daemon must load it. It
#: writes down which plugin packages the daemon imported when it started.
WATCHER = """
    import gc, json, os, sys
    from routerd import hookimpl

    @hookimpl
    def routerd_event_emitted(event):
        if event.topic in ("routerd.daemon.lifecycle.started", "routerd.daemon.lifecycle.ready"):
            mods = sorted({m.split(".")[0] for m in sys.modules if m.startswith("routerd_")})
            seen = {"topic": event.topic, "mods": mods, "gc": gc.isenabled()}
            with open(os.environ["WATCHER_OUT"], "a") as f:
                f.write(json.dumps(seen) + "\\n")
"""
IMPOSTOR = """
    from routerd import hookimpl, DaemonKind
    from routerd.config import SpecModel
    from routerd.daemon.engine import DaemonEngine

    class Spec(SpecModel):
        protocol: str = "tcp"
        target: str = ""
        port: int = 0
        interval: str = ""

    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="healthcheck", kind="HealthCheck", spec_model=Spec,
                            factory=lambda ctx: DaemonEngine()))
"""


def install(site: Path, dist: str, module: str, source: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[routerd]\n{module} = {module}\n")


def python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for sockets (a Unix socket path has at most 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="rds-") as name:
        yield Path(name)


# -- click ------------------------------------------------------------------------------
def test_routerd_daemon_does_not_import_click(tmp_path: Path) -> None:
    """Before: ``routerd.cli`` imported click (20 ms) for every daemon start."""
    run = """
        import atexit, sys
        atexit.register(lambda: print("click" in sys.modules, file=sys.__stdout__))
        sys.argv = ["routerd", *{args!r}]
        from routerd.cli import main
        main()
    """
    args = ["daemon", "healthcheck", "--config", str(tmp_path / "none.yaml"), "--resource", "a"]
    args += ["--state-dir", str(tmp_path / "state"), "--runtime-dir", str(tmp_path / "run")]
    proc = python(run.format(args=args), {"ROUTERD_PLUGINS": "healthcheck"})
    assert proc.returncode == 1
    assert proc.stdout.strip() == "False", "an ordinary daemon command line needs no click"
    assert f"error: cannot read {tmp_path / 'none.yaml'}" in proc.stderr
    assert proc.stderr.rstrip().endswith("1 problem(s); not starting")
    assert "Error: " in proc.stderr and "Traceback" not in proc.stderr
    # Anything unusual is click's, with click's messages.
    proc = python(run.format(args=["daemon", "healthcheck", "--resourc", "a"]))
    assert proc.returncode == 2 and "No such option '--resourc'" in proc.stderr
    assert proc.stdout.strip() == "True"
    proc = python(run.format(args=["daemon", "--help"]))
    assert proc.returncode == 0 and "DAEMON_KIND" in proc.stdout


# -- only its own plugin ----------------------------------------------------------------
def test_a_daemon_imports_only_its_own_plugin_and_the_observers(
    tmp_path: Path, short_dir: Path
) -> None:
    """Before: every standalone daemon imported every installed plugin (130 ms here)."""
    site = tmp_path / "site"
    site.mkdir()
    install(site, "routerd-watcher", "routerd_watcher", WATCHER)
    out = tmp_path / "imported.jsonl"
    config = write_config(tmp_path / "r.yaml", router_config(resource("HealthCheck", "a", HC_SPEC)))
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        "WATCHER_OUT": str(out),
    }
    env.pop("ROUTERD_PLUGINS", None)
    state = short_dir / "state"

    def start() -> list[str]:
        out.unlink(missing_ok=True)
        d = DaemonProcess(
            "healthcheck", "a", config, short_dir / "run", state, tmp_path / "d.log", env=env
        )
        d.start(timeout=30)
        d.stop(10)
        started, ready = (json.loads(line) for line in out.read_text().splitlines())
        # The cyclic collector is off while the start allocates, on once it is ready.
        assert (started["gc"], ready["gc"]) == (False, True)
        return list(started["mods"])

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ROUTERD_PLUGINS", raising=False)
        first = start()  # no index yet: everything, and the index is written
        assert {"routerd_healthcheck", "routerd_watcher", "routerd_dhcpv4"} <= set(first)
        index = json.loads((state / "plugins.index.json").read_text())
        assert index["kinds"]["healthcheck"] == "healthcheck"
        assert index["observers"] == ["routerd_watcher"]
        assert start() == ["routerd_healthcheck", "routerd_watcher"]

        # The index names a plugin that no longer serves the kind: everything again.
        index["kinds"]["healthcheck"] = "dhcpv4"
        (state / "plugins.index.json").write_text(json.dumps(index))
        assert {"routerd_healthcheck", "routerd_dhcpv4"} <= set(start())
        rewritten = json.loads((state / "plugins.index.json").read_text())
        assert rewritten["kinds"]["healthcheck"] == "healthcheck"

        # A second distribution claiming the kind, installed after the index was
        # written: the entry points changed, so the daemon loads everything, sees
        # the kind claimed twice and refuses it.
        install(site, "evil-hc", "evil_hc", IMPOSTOR)
        d = DaemonProcess(
            "healthcheck", "a", config, short_dir / "run", state, tmp_path / "d.log", env=env
        )
        proc = subprocess.run(
            d.argv(), capture_output=True, text=True, timeout=60, env={**os.environ, **env}
        )
        assert proc.returncode == 1
        assert "registered by evil-hc 1.0 (healthcheck) and routerd-plugin-healthcheck" in (
            proc.stderr
        )
        assert json.loads((state / "plugins.index.json").read_text())["conflicts"] == [
            "HealthCheck",
            "healthcheck",
        ]


# -- imports of the protocol path ------------------------------------------------------
def test_the_dhcpv4_codec_imports_four_dpkt_modules_and_dpkt_stays_whole() -> None:
    """Before: ``import dpkt`` imported ~70 protocol modules (30 ms) for a DHCP client."""
    proc = python(
        """
        import sys
        import routerd_dhcpv4.codec as codec
        assert "dpkt" not in sys.modules and "dpkt.bgp" not in sys.modules, [
            m for m in sys.modules if m.startswith("dpkt")
        ]
        frame = codec.build_frame(b"x" * 300, src_mac=b"\\x02" * 6)
        import dpkt  # another plugin, later: the whole package, wired together
        eth = dpkt.ethernet.Ethernet(frame)
        assert type(eth.data).__name__ == "IP" and type(eth.data.data).__name__ == "UDP"
        assert eth.data.data.data == b"x" * 300
        assert dpkt.Packet is dpkt.dpkt.Packet and dpkt.utils and dpkt.compat and dpkt.bgp
        assert codec.dpkt.dhcp is dpkt.dhcp
        print("ok")
        """
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_the_plugin_loader_does_not_build_serves_rule_models() -> None:
    proc = python(
        """
        import sys
        from routerd.plugins import load_plugins
        plugins = load_plugins(allow={"healthcheck"})
        assert "healthcheck" in plugins.kinds
        assert "routerd.rules.spec" not in sys.modules
        from routerd.kinds import serve_kind_names, serve_kinds
        assert serve_kind_names() == set(serve_kinds())
        print("ok")
        """
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_a_daemon_app_does_not_read_the_systems_mime_tables() -> None:
    """Before: falcon.App() had mimetypes read /etc/mime.types (5-12 ms) beside the engine."""
    proc = python(
        """
        import mimetypes
        from routerd.daemon.api import create_app
        create_app(object())
        assert mimetypes._db is None, "the system's files were read"
        print("ok")
        """
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_the_persistence_retry_thread_starts_at_the_first_failure() -> None:
    """Before: every daemon started it (a thread start on the way to the first packet)."""

    def retry_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "persistence-retry"]

    before = len(retry_threads())
    health = PersistenceHealth(retry_base=0.01, retry_cap=0.01)
    recovered = threading.Event()
    health.register("w", lambda: (health.succeeded("w"), recovered.set()))
    health.start()
    try:
        assert len(retry_threads()) == before, "no thread while every write succeeds"
        health.failed("w", "/x", OSError(28, "No space left on device"))
        assert recovered.wait(5), "the retry thread started and recovered the writer"
        assert not health.degraded
    finally:
        health.stop()


# -- a forked daemon takes its spec from serve ---------------------------------------------
@pytest.fixture
def fork_server() -> Iterator[ForkServerClient]:
    client = ForkServerClient(env={**os.environ, "ROUTERD_PLUGINS": "healthcheck"})
    client.start()
    try:
        assert client.wait_ready(60), client.last_error
        yield client
    finally:
        client.close()


def test_a_forked_daemon_validates_the_spec_serve_read_instead_of_the_file(
    fork_server: ForkServerClient, tmp_path: Path, short_dir: Path
) -> None:
    """Before: every forked daemon read and parsed the config file again (1-4 ms)."""
    gone = tmp_path / "not-there.yaml"  # serve read it; the daemon need not
    api = "net.routerd.net/v1alpha1"
    logs: list[Path] = []
    procs: list[Any] = []

    def spawn(name: str, spec: dict[str, Any]) -> Any:
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with log.open("ab") as f:
            proc = fork_server.spawn(
                "healthcheck",
                name,
                gone,
                short_dir / "run",
                short_dir / "state",
                log_file=f,
                item={"apiVersion": api, "spec": spec},
            )
        procs.append(proc)
        return proc

    try:
        good = spawn("good", {**HC_SPEC, "interval": "2h"})
        sock = short_dir / "run" / "healthcheck" / "good.sock"
        poll(lambda: sock.exists() or good.poll() is not None, 30, "the daemon's socket")
        assert good.poll() is None, logs[0].read_text()
        poll(lambda: UnixClient(str(sock)).get("/v1/healthz").status == 200, 30, "healthz")
        status = UnixClient(str(sock)).get("/v1/status").json()
        assert status["resources"][0]["observed"]["interval"] == 7200
        # Validated in the child, with its own plugin code: a bad spec is refused there.
        bad = spawn("bad", {**HC_SPEC, "port": "nine"})
        assert bad.wait(30) == 1
        text = logs[-1].read_text()
        assert "error: HealthCheck/bad: spec.port:" in text and "not starting" in text
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
