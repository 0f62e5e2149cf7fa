"""DHCPv6 prefix delegation: time to a delegated prefix, routerd vs dhclient vs dhcpcd.

One lab (client namespace ``wan0`` ↔ ``srv0`` with kea-dhcp6, client ``lan0`` ↔
a LAN namespace) and one Kea for the whole run; the clients take turns on
the same link, each run from fresh state. Kea delegates /60s from a /48 with
preference 255 (a client may take the Advertise at once; RFC 9915 §18.2.1)
and lifetimes long enough that nothing renews during a run.

Measured, median of N runs (1 in smoke mode):

- **cold**: process start → prefix delegated. routerd: the ``Applied`` phase
  event's own timestamp (the subnet address is already on ``lan0``) minus the
  wall time just before the process was spawned; dhclient (``dhclient -6 -P
  -1 -d -sf /bin/true``): its log line ``PRC: Bound to lease``; dhcpcd
  (``dhcpcd -6 -B -d -c /bin/true`` with ``ia_pd 1 lan0/1``): its log line
  ``delegated prefix``. Logs are polled every 20 ms, so the peers' figures
  carry up to 20 ms of detection delay; routerd's do not.
- **restart**: the same client killed (SIGKILL for routerd, SIGTERM for the
  peers, which then do not release) and started again with its state kept →
  prefix confirmed (routerd: the ``prefix.rebound`` event; peers: the same
  log lines).
- **release + renew** (routerd only, its commands): ``release`` done →
  ``renew`` → ``Bound`` phase event.
- routerd's share of interpreter start and imports: the
  ``routerd.daemon.lifecycle.started`` event's time minus the spawn time.
- RSS (VmRSS) with the prefix held; for dhcpcd the sum of its privilege-
  separated processes.

Every client waits out the RFC's random initial Solicit delay (0 to 1 s,
§18.2.1) on a cold start, so cold medians move by hundreds of ms between runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
import time
from typing import Any

import common
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import ManagedProcess
from routerd.testing.netns import Netns
from routerd.testing.servers import KeaDhcp6
from routerd.timefmt import parse_rfc3339

NAME = "dhcpv6"
ENV = {"ROUTERD_PLUGINS": "dhcpv6"}
PHASE_TOPIC = "routerd.resource.phase.changed"
DHCLIENT_BOUND = "PRC: Bound to lease"
DHCPCD_BOUND = "delegated prefix"


def event_time(daemon: DaemonProcess, since: int, topic: str, **attrs: Any) -> float:
    """Wall time of the first ``topic`` event after ``since`` with ``attrs``."""
    deadline = time.monotonic() + 20
    cursor = since
    while time.monotonic() < deadline:
        body = daemon.events(since=cursor, topic=topic, wait="5s")
        for event in body["events"]:
            if all(event["attributes"].get(k) == v for k, v in attrs.items()):
                return parse_rfc3339(event["time"])
        cursor = int(body["cursor"])
    raise TimeoutError(f"no {topic} {attrs} event:\n{daemon.log_tail()}")


class Setup:
    def __init__(self, lab: Lab, base: Path) -> None:
        self.lab, self.base = lab, base
        self.client, self.server, self.lan = lab.netns(), lab.netns(), lab.netns()
        lab.veth(self.client, "wan0", self.server, "srv0")
        lab.veth(self.client, "lan0", self.lan, "eth0")
        self.server.addr_add("srv0", "2001:db8:1::1/64")
        self.kea = KeaDhcp6(
            self.server,
            "srv0",
            base / "kea",
            pool=None,
            pd_pool=("2001:db8:100::", 48, 60),
            preferred_lifetime=300,
            valid_lifetime=600,
            preference=255,
            log_severity="INFO",
            log_debuglevel=0,
        )
        lab.add_cleanup(self.kea.stop)
        self.kea.start()
        spec = {
            "interface": "wan0",
            "prefixLength": 60,
            "downstream": [{"interface": "lan0", "subnetId": 1}],
        }
        self.config = write_config(
            base / "router.yaml",
            router_config(resource("DHCPv6PrefixDelegation", "wan-pd", spec), name="bench"),
        )

    # -- routerd ------------------------------------------------------------------
    def routerd_runs(self, runs: int) -> dict[str, Any]:
        cold: list[float] = []
        startup: list[float] = []
        restart: list[float] = []
        warm: list[float] = []
        rss: list[int] = []
        for i in range(runs):
            d = DaemonProcess(
                daemon_kind="dhcpv6-client",
                resource="wan-pd",
                config_path=self.config,
                runtime_dir=self.base / f"run{i}",
                state_dir=self.base / f"state{i}",
                log_path=self.base / f"routerd-{i}.log",
                netns=self.client.name,
                env=ENV,
            )
            try:
                t0 = time.time()
                d.start(wait=True, timeout=20)
                cold.append(event_time(d, 0, PHASE_TOPIC, phase="Applied") - t0)
                startup.append(event_time(d, 0, "routerd.daemon.lifecycle.started") - t0)
                rss.append(common.rss_kib(d.pid))

                head = d.head()
                if d.command("release").status != 200:
                    raise RuntimeError(f"release refused:\n{d.log_tail()}")
                d.wait_for_phase("Pending", timeout=5)
                head = d.head()
                t0 = time.time()
                if d.command("renew").status != 200:
                    raise RuntimeError(f"renew refused:\n{d.log_tail()}")
                warm.append(event_time(d, head, PHASE_TOPIC, phase="Bound") - t0)
                d.wait_for_phase("Applied", timeout=5)

                d.kill()
                t0 = time.time()
                d.start(wait=True, timeout=20)
                head = _head_before_restart(d)
                restart.append(event_time(d, head, "routerd.dhcpv6.client.prefix.rebound") - t0)
            finally:
                with contextlib.suppress(AssertionError):
                    d.stop(5)
        return {
            "cold_s": cold,
            "startup_s": startup,
            "restart_s": restart,
            "release_renew_s": warm,
            "rss_kib": rss,
        }

    # -- peers --------------------------------------------------------------------
    def _timed(self, argv: list[str], log: Path, pattern: str) -> tuple[float, ManagedProcess]:
        t0 = time.monotonic()
        proc = self.lab.spawn(self.client, argv, log)
        proc.wait_for_log(pattern, timeout=20, since=0)
        return time.monotonic() - t0, proc

    def dhclient_runs(self, runs: int) -> dict[str, Any]:
        cold: list[float] = []
        restart: list[float] = []
        rss: list[int] = []
        for i in range(runs):
            work = self.base / f"dhclient{i}"
            work.mkdir()
            argv = [
                "dhclient", "-6", "-P", "-1", "-d", "-v", "-sf", "/bin/true",
                "-lf", str(work / "leases"), "-pf", str(work / "pid"), "wan0",
            ]  # fmt: skip
            took, proc = self._timed(argv, work / "cold.log", DHCLIENT_BOUND)
            cold.append(took)
            rss.append(common.rss_kib(proc.pid))
            proc.stop()
            took, proc = self._timed(argv, work / "restart.log", DHCLIENT_BOUND)
            restart.append(took)
            proc.stop()
        return {"cold_s": cold, "restart_s": restart, "rss_kib": rss}

    def dhcpcd_runs(self, runs: int) -> dict[str, Any]:
        cold: list[float] = []
        restart: list[float] = []
        rss: list[int] = []
        for i in range(runs):
            work = self.base / f"dhcpcd{i}"
            (work / "db").mkdir(parents=True)
            conf = work / "dhcpcd.conf"
            conf.write_text(
                "nodev\nipv6only\nnoipv6rs\nnohook resolv.conf\nallowinterfaces wan0 lan0\n"
                "interface wan0\n  ia_pd 1 lan0/1\n"
            )
            # ip netns exec gives the process its own mount namespace: dhcpcd's
            # DUID and lease files (/var/lib/dhcpcd) and its run dir stay in
            # the work dir, not on the host.
            script = (
                f"mount --bind {work / 'db'} /var/lib/dhcpcd && mount -t tmpfs tmpfs /run && "
                f"exec dhcpcd -6 -B -d -c /bin/true -f {conf} wan0 lan0"
            )
            argv = ["sh", "-c", script]
            took, proc = self._timed(argv, work / "cold.log", DHCPCD_BOUND)
            cold.append(took)
            rss.append(sum(_rss_all(self.client)))
            proc.stop()
            took, proc = self._timed(argv, work / "restart.log", DHCPCD_BOUND)
            restart.append(took)
            proc.stop()
            self.client.kill_all()
            _flush_lan(self.client)
        return {"cold_s": cold, "restart_s": restart, "rss_kib": rss}


def _head_before_restart(d: DaemonProcess) -> int:
    # The restart's events start after what the killed process wrote; the
    # first prefix.rebound after the new "started" event is the one wanted.
    started = d.events(topic="routerd.daemon.lifecycle.started")["events"]
    return int(started[-1]["cursor"]) if started else 0


def _rss_all(ns: Netns) -> list[int]:
    out = []
    for pid in ns.pids():
        with contextlib.suppress(OSError, RuntimeError):
            out.append(common.rss_kib(pid))
    return out


def _flush_lan(ns: Netns) -> None:
    ns.ip("-6", "addr", "flush", "dev", "lan0", "scope", "global", check=False)


def main(smoke: bool) -> dict[str, Any]:
    runs = 1 if smoke else 5
    missing = [p for p in ("kea-dhcp6", "dhclient", "dhcpcd") if common.find_program(p) is None]
    if missing:
        raise RuntimeError(f"missing programs: {', '.join(missing)}")
    result: dict[str, Any] = {"runs": runs}
    with common.temp_dir("rdb-d6-") as base, Lab() as lab:
        setup = Setup(lab, base)
        ours = setup.routerd_runs(runs)
        dhclient = setup.dhclient_runs(runs)
        dhcpcd = setup.dhcpcd_runs(runs)
    result.update({"routerd": ours, "dhclient": dhclient, "dhcpcd": dhcpcd})
    med = common.median
    summary = {
        name: {key: med(values) for key, values in data.items() if isinstance(values, list)}
        for name, data in result.items()
        if isinstance(data, dict)
    }
    result["median"] = summary
    ms = 1e3
    r, c, p = summary["routerd"], summary["dhclient"], summary["dhcpcd"]
    rows = [
        [
            "cold: start → prefix (routerd: Applied)",
            r["cold_s"] * ms,
            c["cold_s"] * ms,
            p["cold_s"] * ms,
            common.ratio(r["cold_s"], c["cold_s"]),
            common.ratio(r["cold_s"], p["cold_s"]),
        ],
        [
            "  of which routerd process start → daemon started (interpreter, imports)",
            r["startup_s"] * ms,
            float("nan"),
            float("nan"),
            float("nan"),
            float("nan"),
        ],
        [
            "restart with state → prefix confirmed",
            r["restart_s"] * ms,
            c["restart_s"] * ms,
            p["restart_s"] * ms,
            common.ratio(r["restart_s"], c["restart_s"]),
            common.ratio(r["restart_s"], p["restart_s"]),
        ],
        [
            "release + renew → Bound (routerd commands)",
            r["release_renew_s"] * ms,
            float("nan"),
            float("nan"),
            float("nan"),
            float("nan"),
        ],
        [
            "RSS with a prefix held (MiB)",
            r["rss_kib"] / 1024,
            c["rss_kib"] / 1024,
            p["rss_kib"] / 1024,
            common.ratio(r["rss_kib"], c["rss_kib"]),
            common.ratio(r["rss_kib"], p["rss_kib"]),
        ],
    ]
    common.emit_table(
        result,
        f"DHCPv6 prefix delegation against kea-dhcp6 (median of {runs}, ms unless noted)",
        ["measure", "routerd", "dhclient -6 -P", "dhcpcd ia_pd", "x dhclient", "x dhcpcd"],
        rows,
    )
    return result


if __name__ == "__main__":
    common.run_standalone(NAME, main)
