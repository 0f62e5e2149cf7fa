"""The process model: daemons forked from routerd serve's fork server against exec'd ones.

Side by side in one run (docs/benchmarks.md, "Process model"):

1. Start to result, in one namespace lab (client ``wan0`` <-> server
   ``srv0`` with kea-dhcp4 and kea-dhcp6, ``lan0`` to a LAN namespace).
   ``routerd serve`` runs in the client namespace, with the fork server
   (default) and with ``--no-fork-server`` (every daemon exec'd as
   ``routerd daemon``). Two paths each:

   - *added*: the resource is written to the config and ``POST reload`` is
     sent to serve (what ``routerctl reload`` sends) at t0; the result is
     the time of the daemon's own phase event (``Applied``; ``Healthy``), so
     polling costs nothing. Each run adds a new resource name (fresh state:
     a full DISCOVER / Solicit).
   - *restarted*: the daemon is SIGKILLed; serve restarts it after its 1 s
     backoff. From the restart (serve's log line ``started ... (pid N)``) to
     the lease confirmed by the server (DHCPv4 ``ack.received``, DHCPv6
     ``prefix.rebound``; health check ``Healthy``).

   Against ``dhclient`` (cold, and restarted with its lease file) and
   busybox ``udhcpc`` for DHCPv4, ``dhclient -6 -P`` and ``dhcpcd`` for
   DHCPv6-PD (bench_dhcpv6's runs), and a standalone ``routerd daemon``
   (exec, bytecode compiled) cold start: a fresh lease state each run, the
   state root (and so its plugin index) kept, after one untimed start;
   process start -> the daemon's own ``Applied`` phase event (the lease
   applied), and -> ``Applied`` read on ``/v1/status`` (polled every 5 ms,
   so the API's own start is in it); with ``ROUTERD_PLUGINS=dhcpv4`` and
   with every installed plugin allowed.
2. Memory: PSS and USS (``/proc/PID/smaps_rollup``) of 1, 4 and 10
   health-check daemons (plus the fork server) under serve, both models.
3. ``GET /v1/status`` requests/s, 1 and 8 client processes, against Kea's
   ``status-get`` and a bare falcon + waitress app serving the same bytes on
   the same kind of socket (waitress defaults, 16 threads); plus a daemon
   with the old 64 threads.
4. ``routerd serve`` start -> every resource of the demo config
   (scripts/demo.py) Applied / Healthy / Asserted, both models.

``BENCH_PROCESS_SECTIONS=start`` (comma separated: start, memory, status,
demo) runs only those; ``BENCH_PROCESS_RUNS=N`` sets the runs of section 1.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import datetime as dt
from importlib import metadata
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_api
import bench_dhcpv4
import bench_dhcpv6
import common
from routerd.client import UnixClient
from routerd.errors import ClientError
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import Netns
from routerd.testing.serve import ServeProcess
from routerd.testing.servers import Dnsmasq
from routerd.testing.servers import KeaDhcp4
from routerd.testing.servers import KeaDhcp6
from routerd.timefmt import parse_rfc3339

NAME = "process"
PLUGINS = "dhcpv4,dhcpv6,healthcheck"
PHASE = "routerd.resource.phase.changed"
MODES = ("fork", "exec")
TOOLS = ("kea-dhcp4", "kea-dhcp6", "dhclient", "udhcpc", "dhcpcd")
# serve's log line for a daemon it started (docs/serve.md).
STARTED = re.compile(r"^(\S+ \S+) INFO routerd\.supervisor: started (\S+) \(pid (\d+), (\w+)\)")


# -- routerd serve as a rig ------------------------------------------------------------
class Rig:
    """``routerd serve`` in a namespace, resources added and removed by reload."""

    def __init__(self, base: Path, netns: Netns | None, mode: str) -> None:
        self.base = base
        self.mode = mode
        base.mkdir(parents=True, exist_ok=True)
        self.config = write_config(base / "router.yaml", router_config(name="bench"))
        self.sp = ServeProcess(
            self.config,
            base / "run",
            base / "state",
            base / "serve.log",
            env={"ROUTERD_PLUGINS": PLUGINS},
            netns=netns.name if netns else None,
            fork_server=mode == "fork",
        )

    def __enter__(self) -> Rig:
        self.sp.start()
        if self.mode == "fork":
            poll(lambda: self.sp.status()["forkServer"]["ready"], 60, "the fork server")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(AssertionError):
            self.sp.stop()

    def set(self, *resources: dict[str, Any]) -> float:
        """Make the config hold ``resources`` and reload; returns the wall time of the request."""
        write_config(self.config, router_config(*resources, name="bench"))
        t0 = time.time()
        resp = self.sp.post("reload")
        if resp.status != 200:
            raise RuntimeError(f"reload: {resp.status} {resp.body[:300]!r}")
        return t0

    def daemon(self, kind: str, name: str) -> dict[str, Any]:
        return self.sp.daemon(kind, name)

    def socket(self, daemon_kind: str, name: str) -> UnixClient:
        return UnixClient(str(self.sp.runtime_dir / daemon_kind / f"{name}.sock"), timeout=30)

    def event_time(
        self, daemon_kind: str, name: str, topic: str, since: int = 0, **attrs: Any
    ) -> float:
        """Wall time of the daemon's first ``topic`` event after ``since`` with ``attrs``."""
        client = self.socket(daemon_kind, name)
        deadline = time.monotonic() + 30
        cursor = since
        while time.monotonic() < deadline:
            try:
                body = client.get("/v1/events", since=cursor, topic=topic, wait="5s").json()
            except ClientError:
                time.sleep(0.01)  # not listening yet (or restarting)
                continue
            for event in body["events"]:
                if all(event["attributes"].get(k) == v for k, v in attrs.items()):
                    return parse_rfc3339(event["time"])
            cursor = int(body["cursor"])
        raise TimeoutError(f"no {topic} {attrs} from {daemon_kind}/{name}:\n{self.sp.log_tail()}")

    def head(self, daemon_kind: str, name: str) -> int:
        return int(self.socket(daemon_kind, name).get("/v1/events", tail="true").json()["cursor"])

    def restart_time(self, key: str, pid: int) -> float:
        """When serve started ``key`` as ``pid``, from its log (millisecond stamps, local time)."""
        for line in self.sp.log_path.read_text(errors="replace").splitlines():
            m = STARTED.match(line)
            if m and m.group(2) == key and int(m.group(3)) == pid:
                stamp = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
                return stamp.timestamp()
        raise RuntimeError(f"serve did not log starting {key} as pid {pid}")

    def kill_and_restart(self, kind: str, name: str) -> tuple[int, float]:
        """SIGKILL the daemon; returns (new pid, when serve started it)."""
        old = self.daemon(kind, name)["pid"]
        os.kill(old, signal.SIGKILL)
        new: dict[str, Any] = poll(
            lambda: (d := self.daemon(kind, name))["pid"] not in (None, old) and d,
            30,
            f"{kind}/{name} restarted",
            interval=0.05,
        )
        pid = int(new["pid"])
        return pid, self.restart_time(f"{kind}/{name}", pid)


class Protocol:
    """What one protocol's two paths measure."""

    def __init__(
        self,
        label: str,
        kind: str,
        daemon_kind: str,
        spec: dict[str, Any],
        ready: tuple[str, dict[str, Any]],
        first_packet: str | None,
        confirmed: tuple[str, dict[str, Any]],
        reset: Callable[[], None],
    ) -> None:
        self.label, self.kind, self.daemon_kind, self.spec = label, kind, daemon_kind, spec
        self.ready, self.first_packet, self.confirmed, self.reset = (
            ready,
            first_packet,
            confirmed,
            reset,
        )

    def runs(self, rig: Rig, runs: int) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"added": [], "first_packet": [], "restarted": []}
        for i in range(runs):
            name = f"{self.daemon_kind.split('-')[0]}-{rig.mode}-{i}"
            self.reset()
            t0 = rig.set(resource(self.kind, name, self.spec))
            topic, attrs = self.ready
            out["added"].append(rig.event_time(self.daemon_kind, name, topic, **attrs) - t0)
            if self.first_packet:
                sent = rig.event_time(self.daemon_kind, name, self.first_packet)
                out["first_packet"].append(sent - t0)
            head = rig.head(self.daemon_kind, name)
            _pid, t1 = rig.kill_and_restart(self.kind, name)
            topic, attrs = self.confirmed
            confirmed = rig.event_time(self.daemon_kind, name, topic, since=head, **attrs)
            out["restarted"].append(confirmed - t1)
            rig.set()  # removed: stopped, its addresses released or left
        self.reset()
        return out


# -- peers -----------------------------------------------------------------------------
def dhclient_restart(base: Path, client: Netns) -> float:
    """dhclient with its lease file from a previous run (INIT-REBOOT), start -> bound."""
    bench_dhcpv4.dhclient(base, client)  # writes the lease file
    lease_file, pid_file = base / "dhclient.leases", base / "dhclient.pid"
    argv = ["ip", "netns", "exec", client.name, common.find_program("dhclient") or "dhclient"]
    argv += ["-1", "-d", "-sf", "/bin/true", "-lf", str(lease_file), "-pf", str(pid_file), "wan0"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("bound to"):
                return time.monotonic() - t0
        raise RuntimeError(f"dhclient exited {proc.wait()} without a lease")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def peers(lab: Lab, base: Path, client: Netns, server: Netns, lan: Netns, runs: int) -> Any:
    v4: dict[str, list[float]] = {"dhclient": [], "dhclient_restart": [], "udhcpc": []}
    for _ in range(runs):
        bench_dhcpv4._flush(client)
        v4["dhclient"].append(bench_dhcpv4.dhclient(base, client))
        bench_dhcpv4._flush(client)
        v4["dhclient_restart"].append(dhclient_restart(base, client))
        bench_dhcpv4._flush(client)
        v4["udhcpc"].append(bench_dhcpv4.udhcpc(client))
    bench_dhcpv4._flush(client)
    six = object.__new__(bench_dhcpv6.Setup)
    six.lab, six.base, six.client, six.server, six.lan = lab, base, client, server, lan
    v6 = {"dhclient": six.dhclient_runs(runs), "dhcpcd": six.dhcpcd_runs(runs)}
    return v4, v6


def every_plugin() -> str:
    """Every installed routerd plugin, as a ``ROUTERD_PLUGINS`` value."""
    return ",".join(sorted({ep.name for ep in metadata.entry_points(group="routerd")}))


def standalone_cold(
    base: Path, client: Netns, runs: int, env: dict[str, str]
) -> dict[str, list[float]]:
    """``routerd daemon dhcpv4-client`` from process start: (first DISCOVER, lease applied, seen on status)."""
    plugins = env.get("ROUTERD_PLUGINS", "")
    root = base / f"standalone-{'all' if plugins == every_plugin() else plugins}"
    config = write_config(
        base / "standalone.yaml",
        router_config(
            resource("DHCPv4Client", "wan", {"interface": "wan0", "routeMetric": 100}),
            name="bench",
        ),
    )
    out: dict[str, list[float]] = {"discover": [], "applied": [], "status": []}
    for i in range(runs + 1):
        bench_dhcpv4._flush(client)
        shutil.rmtree(root / "dhcpv4-client", ignore_errors=True)  # no saved lease
        d = DaemonProcess(
            "dhcpv4-client",
            "wan",
            config,
            base / "run-standalone",
            root,
            base / "standalone.log",
            netns=client.name,
            env=env,
        )
        t0 = time.time()
        d.start(wait=False)
        try:
            deadline = time.monotonic() + 30
            while bench_dhcpv4._phase(d) != "Applied":
                if not d.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"no lease:\n{d.log_tail()}")
                time.sleep(0.005)
            seen = time.time()
            events = d.events(topic="routerd.**")["events"]
        finally:
            d.stop(5.0)
        if i == 0:
            continue  # the first start of a state root writes its plugin index
        applied = next(
            e for e in events if e["topic"] == PHASE and e["attributes"]["phase"] == "Applied"
        )
        discover = next(e for e in events if e["topic"].endswith("discover.sent"))
        out["discover"].append(parse_rfc3339(discover["time"]) - t0)
        out["applied"].append(parse_rfc3339(applied["time"]) - t0)
        out["status"].append(seen - t0)
    bench_dhcpv4._flush(client)
    return out


# -- memory ----------------------------------------------------------------------------
def smaps(pid: int) -> tuple[int, int]:
    """(PSS, USS) in KiB from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        fields[key] = int(rest.split()[0])
    return fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"]


def memory(base: Path, port: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    spec = {**common.healthcheck_spec(port), "interval": "1h"}
    for mode in MODES:
        for n in sizes:
            work = base / f"mem-{mode}-{n}"
            with Rig(work, None, mode) as rig:
                rig.set(*(resource("HealthCheck", f"m{i}", spec) for i in range(n)))
                rig.sp.wait_ready(60)
                common.settle(1.0)
                status = rig.sp.status()
                pids = [int(d["pid"]) for d in status["daemons"]]
                daemons = [smaps(pid) for pid in pids]
                fs_pid = (status.get("forkServer") or {}).get("pid") if mode == "fork" else None
                fork_server = smaps(int(fs_pid)) if fs_pid else (0, 0)
                serve = smaps(rig.sp.proc.pid) if rig.sp.proc else (0, 0)
            pss = sum(p for p, _ in daemons) + fork_server[0]
            out[f"{mode}/{n}"] = {
                "daemons": n,
                "pss_kib": pss,
                "uss_kib": sum(u for _, u in daemons) + fork_server[1],
                "pss_per_daemon_kib": pss / n,
                "uss_per_daemon_kib": sum(u for _, u in daemons) / n,
                "fork_server_pss_kib": fork_server[0],
                "serve_pss_kib": serve[0],
            }
    return out


# -- /v1/status throughput --------------------------------------------------------------
BARE_APP = """
import sys, falcon, waitress
body = open(sys.argv[2], "rb").read()
class Status:
    def on_get(self, req, resp):
        resp.data = body
        resp.content_type = falcon.MEDIA_JSON
app = falcon.App()
app.add_route("/v1/status", Status())
waitress.serve(app, unix_socket=sys.argv[1], unix_socket_perms="600", threads=16)
"""
THREADS_LAUNCH = (
    "import sys; import routerd.daemon.listen as L; L.THREADS = int(sys.argv.pop(1)); "
    "L.MAX_WAITERS = L.THREADS * 3 // 4; from routerd.cli import main; main()"
)


def _answering(path: Path) -> bool:
    try:
        return UnixClient(str(path), timeout=1).get("/v1/status").status == 200
    except ClientError:
        return False


@contextlib.contextmanager
def spawned(argv: list[str], env: dict[str, str] | None = None) -> Any:
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def status_throughput(base: Path, port: int, kea_socket: str, smoke: bool) -> dict[str, Any]:
    duration, reps = (0.4, 1) if smoke else (2.0, 3)
    spec = {**common.healthcheck_spec(port), "interval": "1h"}
    work = base / "tp"
    work.mkdir()
    cfg = write_config(work / "old.yaml", router_config(resource("HealthCheck", "old64", spec)))
    old_argv = [sys.executable, "-c", THREADS_LAUNCH, "64", "daemon", "healthcheck"]
    old_argv += ["--config", str(cfg), "--resource", "old64", "--runtime-dir", str(work / "run")]
    old_argv += ["--state-dir", str(work / "state")]
    with Rig(work / "serve", None, "fork") as rig:
        rig.set(resource("HealthCheck", "tp", spec))
        rig.sp.wait_ready(30)
        ours = rig.sp.runtime_dir / "healthcheck" / "tp.sock"
        body = UnixClient(str(ours)).get("/v1/status").body
        (work / "status.json").write_bytes(body)
        bare = work / "bare.sock"
        old = work / "run" / "healthcheck" / "old64.sock"
        with (
            spawned([sys.executable, "-c", BARE_APP, str(bare), str(work / "status.json")]),
            spawned(old_argv, {"ROUTERD_PLUGINS": "healthcheck"}),
        ):
            poll(lambda: _answering(bare) and _answering(old), 30, "the bare app and old daemon")
            targets = {
                "routerd /v1/status (16 threads, forked)": ("ours-close", str(ours)),
                "routerd /v1/status, 64 threads (exec)": ("ours-close", str(old)),
                "bare falcon+waitress, same body": ("ours-close", str(bare)),
                "routerd /v1/healthz": ("ours-healthz", str(ours)),
                "kea-dhcp4 status-get": ("kea", kea_socket),
            }
            runs: dict[str, list[float]] = {}
            lat: dict[str, list[float]] = {}
            for clients in (1, 8):
                for _ in range(reps):
                    for label, (kind, path) in targets.items():
                        r = bench_api.measure_throughput(kind, path, clients, duration)
                        runs.setdefault(f"{label}/c{clients}", []).append(r["rps"])
                        lat.setdefault(f"{label}/c{clients}", []).extend(r["_latencies"])
    summary = {
        key: {"rps": common.median(v), "p50_ms": common.percentile(lat[key], 50) * 1e3}
        for key, v in runs.items()
    }
    return {"runs": runs, "summary": summary, "labels": list(targets)}


# -- serve start -> the demo router up ----------------------------------------------------
def demo_start(lab: Lab, base: Path, runs: int) -> dict[str, list[float]]:
    import demo

    isp, router, lan = lab.netns(), lab.netns(), lab.netns()
    lab.veth(router, "wan0", isp, "isp0")
    lab.veth(router, "lan0", lan, "eth0")
    isp.addr_add("isp0", "192.0.2.1/24")
    isp.addr_add("isp0", "2001:db8:1::1/64")
    isp.wait_for_link_local("isp0")
    router.wait_for_link_local("wan0")
    KeaDhcp4(isp, "isp0", base / "dk4", router="192.0.2.1", dns=("192.0.2.1",)).start()
    KeaDhcp6(isp, "isp0", base / "dk6", pd_pool=("2001:db8:100::", 48, 60), preference=255).start()
    Dnsmasq(
        isp, "isp0", base / "dns", dhcp=False, dns_records={"www.lab.test": "192.0.2.1"}
    ).start()
    http = lab.spawn(isp, [sys.executable, "-u", "-m", "http.server", "8080"], base / "http.log")
    http.wait_for_log("Serving HTTP", timeout=10)
    wanted = {"DHCPv4Client": "Applied", "DHCPv6PrefixDelegation": "Applied"}
    wanted |= {"HealthCheck": "Healthy", "DerivedEvent": "Asserted"}
    out: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(runs):
        for mode in MODES:
            work = base / f"demo-{mode}-{i}"
            work.mkdir()
            config = write_config(
                work / "router.yaml",
                router_config(*demo.resources(work / "resolv.conf"), name="demo"),
            )
            sp = ServeProcess(
                config,
                work / "run",
                work / "state",
                work / "serve.log",
                netns=router.name,
                fork_server=mode == "fork",
                env={"ROUTERD_PLUGINS": every_plugin()},  # the demo uses every kind
            )
            t0 = time.monotonic()
            sp.start(wait=False)
            try:

                def up(sp: ServeProcess = sp) -> bool:
                    try:
                        items = sp.get("resources").json()["items"]
                    except (ClientError, ValueError):
                        return False
                    return all(
                        it["phase"] == wanted[it["resource"]["kind"]]
                        for it in items
                        if it["resource"]["kind"] in wanted
                    )

                poll(up, 60, f"the demo router up ({mode})", interval=0.02)
                out[mode].append(time.monotonic() - t0)
            finally:
                sp.stop()
            router.ip("-4", "addr", "flush", "dev", "wan0", "scope", "global", check=False)
            router.ip("-6", "addr", "flush", "dev", "lan0", "scope", "global", check=False)
    return out


def start_section(
    lab: Lab, base: Path, client: Netns, server: Netns, lan: Netns, runs: int
) -> dict[str, Any]:
    """Section 1: start to result, every path, with the peers."""
    v4_peers, v6_peers = peers(lab, base, client, server, lan, runs)
    standalone = {
        "dhcpv4": standalone_cold(base, client, runs, {"ROUTERD_PLUGINS": "dhcpv4"}),
        # run_all.py limits every benchmark to the healthcheck plugin
        # (ROUTERD_PLUGINS); "all" names every installed plugin instead.
        "all": standalone_cold(base, client, runs, {"ROUTERD_PLUGINS": every_plugin()}),
    }
    protocols = [
        Protocol(
            "DHCPv4",
            "DHCPv4Client",
            "dhcpv4-client",
            {"interface": "wan0", "routeMetric": 100},
            (PHASE, {"phase": "Applied"}),
            "routerd.dhcpv4.client.discover.sent",
            ("routerd.dhcpv4.client.ack.received", {}),
            lambda: bench_dhcpv4._flush(client),
        ),
        Protocol(
            "DHCPv6-PD",
            "DHCPv6PrefixDelegation",
            "dhcpv6-client",
            {
                "interface": "wan0",
                "prefixLength": 60,
                "downstream": [{"interface": "lan0", "subnetId": 1}],
            },
            (PHASE, {"phase": "Applied"}),
            None,
            ("routerd.dhcpv6.client.prefix.rebound", {}),
            lambda: bench_dhcpv6._flush_lan(client),
        ),
        Protocol(
            "health check",
            "HealthCheck",
            "healthcheck",
            # Loopback of the client namespace: independent of the DHCP runs' addresses.
            {
                "protocol": "icmp",
                "target": "127.0.0.1",
                "interval": "1h",
                "healthyThreshold": 1,
            },
            (PHASE, {"phase": "Healthy"}),
            None,
            (PHASE, {"phase": "Healthy"}),
            lambda: None,
        ),
    ]
    starts: dict[str, dict[str, dict[str, list[float]]]] = {}
    for mode in MODES:
        work = base / f"rig-{mode}"
        with Rig(work, client, mode) as rig:
            for proto in protocols:
                starts.setdefault(proto.label, {})[mode] = proto.runs(rig, runs)
    out: dict[str, Any] = {"start": {"peers_v4": v4_peers, "peers_v6": v6_peers, "routerd": starts}}
    out["standalone_cold_s"] = standalone
    return out


# -- main ------------------------------------------------------------------------------
def main(smoke: bool) -> dict[str, Any]:
    missing = [t for t in TOOLS if common.find_program(t) is None]
    if os.geteuid() != 0 or missing:
        why = "needs root" if os.geteuid() != 0 else f"missing: {', '.join(missing)}"
        print(f"skipped: {why}")
        return {"skipped": why}
    runs = 1 if smoke else int(os.environ.get("BENCH_PROCESS_RUNS", "5"))
    sections = set(os.environ.get("BENCH_PROCESS_SECTIONS", "start,memory,status,demo").split(","))
    result: dict[str, Any] = {"runs": runs, "sections": sorted(sections)}
    with common.temp_dir("rdb-proc-") as base, Lab() as lab, common.tcp_listener() as port:
        client, server, lan = lab.netns(), lab.netns(), lab.netns()
        lab.veth(client, "wan0", server, "srv0")
        lab.veth(client, "lan0", lan, "eth0")
        server.addr_add("srv0", "192.0.2.1/24")
        server.addr_add("srv0", "2001:db8:1::1/64")
        server.wait_for_link_local("srv0")
        client.wait_for_link_local("wan0")
        kea4 = KeaDhcp4(server, "srv0", base / "kea4", log_severity="INFO")
        lab.add_cleanup(kea4.stop)
        kea4.start()
        kea6 = KeaDhcp6(
            server,
            "srv0",
            base / "kea6",
            pool=None,
            pd_pool=("2001:db8:100::", 48, 60),
            preference=255,
            log_severity="INFO",
            log_debuglevel=0,
        )
        lab.add_cleanup(kea6.stop)
        kea6.start()

        # 1. start to result
        if "start" in sections:
            result.update(start_section(lab, base, client, server, lan, runs))

        # 2. memory
        sizes = (1, 4) if smoke else (1, 4, 10)
        if "memory" in sections:
            result["memory"] = memory(base, port, sizes)

        # 3. /v1/status
        if "status" in sections:
            result["status"] = status_throughput(base, port, str(kea4.control_socket_path), smoke)

        # 4. the demo router
        if "demo" in sections:
            result["demo"] = demo_start(lab, base, 1 if smoke else 2)

    emit_tables(result, runs, sizes)
    return result


def emit_tables(result: dict[str, Any], runs: int, sizes: tuple[int, ...]) -> None:
    if "start" in result:
        emit_start_tables(result, runs)
    emit_other_tables(result, sizes)


def emit_start_tables(result: dict[str, Any], runs: int) -> None:
    ms = 1e3
    med = common.median
    v4_peers, v6_peers = result["start"]["peers_v4"], result["start"]["peers_v6"]
    starts = result["start"]["routerd"]
    standalone = result["standalone_cold_s"]
    dhclient4 = med(v4_peers["dhclient"])
    rows: list[list[object]] = [
        ["dhclient -1, cold (no lease file)", dhclient4 * ms, 1.0, ""],
        [
            "dhclient, restarted with its lease file",
            med(v4_peers["dhclient_restart"]) * ms,
            common.ratio(med(v4_peers["dhclient_restart"]), dhclient4),
            "",
        ],
        [
            "udhcpc -q, cold",
            med(v4_peers["udhcpc"]) * ms,
            common.ratio(med(v4_peers["udhcpc"]), dhclient4),
            "",
        ],
    ]
    for plugins, label in (("dhcpv4", "ROUTERD_PLUGINS=dhcpv4"), ("all", "every plugin allowed")):
        cold = standalone[plugins]
        for key, what, target in (
            ("discover", "first DISCOVER", ""),
            ("applied", "lease applied (its Applied event)", "<= 10x"),
            ("status", "Applied seen on /v1/status", ""),
        ):
            rows.append(
                [
                    f"routerd daemon standalone (exec, {label}), cold -> {what}",
                    med(cold[key]) * ms,
                    common.ratio(med(cold[key]), dhclient4),
                    target,
                ]
            )
    v4 = starts["DHCPv4"]
    for mode in MODES:
        added, first = med(v4[mode]["added"]), med(v4[mode]["first_packet"])
        rows.append(
            [
                f"serve ({mode}): reload -> first DISCOVER",
                first * ms,
                common.ratio(first, dhclient4),
                "",
            ]
        )
        rows.append(
            [
                f"serve ({mode}): reload -> Applied",
                added * ms,
                common.ratio(added, dhclient4),
                "<= 2x" if mode == "fork" else "",
            ]
        )
        restarted = med(v4[mode]["restarted"])
        rows.append(
            [
                f"serve ({mode}): SIGKILL, restart -> ACK",
                restarted * ms,
                common.ratio(restarted, med(v4_peers["dhclient_restart"])),
                "x dhclient restart",
            ]
        )
    common.emit_table(
        result,
        f"DHCPv4: start to lease (kea-dhcp4 2.2, veth; median of {runs}, ms)",
        ["path", "ms", "x dhclient", "target"],
        rows,
    )
    d6c, d6p = v6_peers["dhclient"], v6_peers["dhcpcd"]
    v6 = starts["DHCPv6-PD"]
    rows = [
        ["dhclient -6 -P, cold", med(d6c["cold_s"]) * ms, 1.0],
        [
            "dhclient -6 -P, restarted",
            med(d6c["restart_s"]) * ms,
            common.ratio(med(d6c["restart_s"]), med(d6c["cold_s"])),
        ],
        [
            "dhcpcd ia_pd, cold",
            med(d6p["cold_s"]) * ms,
            common.ratio(med(d6p["cold_s"]), med(d6c["cold_s"])),
        ],
    ]
    for mode in MODES:
        added, restarted = med(v6[mode]["added"]), med(v6[mode]["restarted"])
        rows.append(
            [
                f"serve ({mode}): reload -> Applied",
                added * ms,
                common.ratio(added, med(d6c["cold_s"])),
            ]
        )
        rows.append(
            [
                f"serve ({mode}): SIGKILL, restart -> prefix confirmed",
                restarted * ms,
                common.ratio(restarted, med(d6c["restart_s"])),
            ]
        )
    common.emit_table(
        result,
        f"DHCPv6-PD: start to prefix (kea-dhcp6, RFC 9915's 0-1 s Solicit delay in every client;"
        f" median of {runs}, ms; restart rows x dhclient's restart)",
        ["path", "ms", "x dhclient"],
        rows,
    )
    hc = starts["health check"]
    rows = []
    for mode in MODES:
        rows.append(
            [
                f"serve ({mode}): reload -> Healthy",
                med(hc[mode]["added"]) * ms,
                common.ratio(med(hc[mode]["added"]), med(hc["exec"]["added"])),
            ]
        )
        rows.append(
            [
                f"serve ({mode}): SIGKILL, restart -> Healthy",
                med(hc[mode]["restarted"]) * ms,
                common.ratio(med(hc[mode]["restarted"]), med(hc["exec"]["restarted"])),
            ]
        )
    common.emit_table(
        result,
        f"Health check (ICMP, threshold 1): start to Healthy (median of {runs}, ms)",
        ["path", "ms", "x exec"],
        rows,
    )


def emit_other_tables(result: dict[str, Any], sizes: tuple[int, ...]) -> None:
    ms = 1e3
    med = common.median
    if "memory" in result:
        mem = result["memory"]
        rows = []
        for n in sizes:
            for mode in MODES:
                m = mem[f"{mode}/{n}"]
                rows.append(
                    [
                        mode,
                        n,
                        m["pss_kib"] / 1024,
                        m["uss_kib"] / 1024,
                        m["pss_per_daemon_kib"] / 1024,
                        m["uss_per_daemon_kib"] / 1024,
                        m["fork_server_pss_kib"] / 1024,
                        common.ratio(m["pss_kib"], mem[f"exec/{n}"]["pss_kib"]),
                    ]
                )
        common.emit_table(
            result,
            "Memory of the daemons (health checks, idle; MiB from smaps_rollup; fork: + the fork server)",
            [
                "model",
                "daemons",
                "PSS total",
                "USS total",
                "PSS/daemon",
                "USS/daemon",
                "fork server PSS",
                "x exec PSS",
            ],
            rows,
        )
    if "status" in result:
        st = result["status"]["summary"]
        rows = []
        for clients in (1, 8):
            kea = st[f"kea-dhcp4 status-get/c{clients}"]["rps"]
            bare = st[f"bare falcon+waitress, same body/c{clients}"]["rps"]
            for label in result["status"]["labels"]:
                e = st[f"{label}/c{clients}"]
                rows.append(
                    [
                        label,
                        clients,
                        e["rps"],
                        e["p50_ms"],
                        common.ratio(e["rps"], kea),
                        common.ratio(e["rps"], bare),
                    ]
                )
        common.emit_table(
            result,
            "GET /v1/status requests/s (new connection per request, client processes)",
            ["server", "clients", "req/s", "p50 ms", "x Kea", "x bare"],
            rows,
        )
    if "demo" in result:
        demo_rows = [
            [
                mode,
                med(result["demo"][mode]) * ms,
                common.ratio(med(result["demo"][mode]), med(result["demo"]["exec"])),
            ]
            for mode in MODES
        ]
        common.emit_table(
            result,
            "routerd serve start -> every demo resource Applied/Healthy/Asserted (ms)",
            ["model", "ms", "x exec"],
            demo_rows,
        )


if __name__ == "__main__":
    common.run_standalone(NAME, main)
