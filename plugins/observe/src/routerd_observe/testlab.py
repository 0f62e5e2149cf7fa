"""A router lab for the observers: LAN host, NAT router, WAN server; ulogd2 beside.

Used by the plugin's tests and by ``bench/bench_observe.py``. The router
namespace forwards with nftables masquerade, logs probes to two NFLOG
groups (ours and ulogd2's), runs dnsmasq on its LAN side and, on request,
``ulogd`` writing NFCT and NFLOG records as JSON lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
import json
from pathlib import Path
import time
from typing import Any

from routerd.testing.netns import Lab
from routerd.testing.netns import ManagedProcess
from routerd.testing.netns import Netns
from routerd.testing.servers import Dnsmasq

LAN_HOST = "192.168.50.2"
LAN_ROUTER = "192.168.50.1"
WAN_ROUTER = "198.51.100.1"
WAN_HOST = "198.51.100.2"
LAN_HOST6 = "fd00:50::2"
WAN_HOST6 = "2001:db8:100::2"
OUR_GROUP = 5
ULOGD_GROUP = 6
DROP_PORT = 2323
DROP_PREFIX = "drop: telnet-probe"
#: Logged to our group only: a flood to count losses with.
FLOOD_PORT = 2324
FLOOD_PREFIX = "drop: udp-flood"
DNS_RECORDS = {
    "www.example.test": WAN_HOST,
    "api.example.test": WAN_HOST,
    "other.test": "198.51.100.77",
}
#: Debian installs ulogd2's plugins under the multiarch library directory.
ULOGD_PLUGINS = next(
    iter(sorted(Path("/usr/lib").glob("*/ulogd"))), Path("/usr/lib/x86_64-linux-gnu/ulogd")
)

NFT_RULES = f"""
table ip nat {{
  chain post {{
    type nat hook postrouting priority 100;
    oifname "wan0" masquerade
  }}
}}
# "ct state" makes conntrack track IPv6 too (masquerade needs it only for IPv4).
table inet filter {{
  chain forward {{
    type filter hook forward priority 0;
    tcp dport {DROP_PORT} log prefix "{DROP_PREFIX} " group {OUR_GROUP} log prefix "{DROP_PREFIX} " group {ULOGD_GROUP} drop
    udp dport {FLOOD_PORT} log prefix "{FLOOD_PREFIX} " group {OUR_GROUP} drop
    ct state established,related accept
  }}
}}
"""


@dataclass
class RouterLab:
    lab: Lab
    lan: Netns
    router: Netns
    wan: Netns
    workdir: Path
    dnsmasq: Dnsmasq | None = None
    ulogd: ManagedProcess | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def ulogd_records(self, name: str) -> list[dict[str, Any]]:
        path = self.files[name]
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def build(lab: Lab, workdir: Path, *, dns: bool = True) -> RouterLab:
    lan, router, wan = lab.netns(), lab.netns(), lab.netns()
    lab.veth(lan, "eth0", router, "lan0")
    lab.veth(router, "wan0", wan, "eth0")
    lan.addr_add("eth0", f"{LAN_HOST}/24")
    lan.addr_add("eth0", f"{LAN_HOST6}/64")
    router.addr_add("lan0", f"{LAN_ROUTER}/24")
    router.addr_add("lan0", "fd00:50::1/64")
    router.addr_add("wan0", f"{WAN_ROUTER}/24")
    router.addr_add("wan0", "2001:db8:100::1/64")
    wan.addr_add("eth0", f"{WAN_HOST}/24")
    wan.addr_add("eth0", f"{WAN_HOST6}/64")
    lan.ip("route", "add", "default", "via", LAN_ROUTER)
    lan.ip("-6", "route", "add", "default", "via", "fd00:50::1")
    wan.ip("-6", "route", "add", "default", "via", "2001:db8:100::1")
    router.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
    router.run(["nft", "-f", "-"], input=NFT_RULES)
    workdir.mkdir(parents=True, exist_ok=True)
    rl = RouterLab(lab, lan, router, wan, workdir)
    if dns:
        rl.dnsmasq = Dnsmasq(
            router,
            "lan0",
            workdir / "dnsmasq",
            dhcp=False,
            dns_records=DNS_RECORDS,
            # Authoritative for .test: an unknown name is NXDOMAIN, not REFUSED.
            extra_args=("--local=/test/",),
        ).start()
    return rl


def start_ulogd(rl: RouterLab, timeout: float = 10.0, buffer: int = 16 << 20) -> ManagedProcess:
    """ulogd2 in the router namespace: NFCT destroy events and NFLOG group 6 as JSON."""
    wd = rl.workdir / "ulogd"
    wd.mkdir(parents=True, exist_ok=True)
    flows, fw = wd / "flows.json", wd / "fw.json"
    rl.files = {"flows": flows, "firewall": fw}
    lines = [
        "[global]",
        f'logfile="{wd / "ulogd.log"}"',
        "loglevel=3",
        *(
            f'plugin="{ULOGD_PLUGINS / name}"'
            for name in (
                "ulogd_inpflow_NFCT.so",
                "ulogd_inppkt_NFLOG.so",
                "ulogd_raw2packet_BASE.so",
                "ulogd_filter_IFINDEX.so",
                "ulogd_filter_IP2STR.so",
                "ulogd_output_JSON.so",
            )
        ),
        "stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON",
        "stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str2:IP2STR,json2:JSON",
        "[ct1]",
        # Destroy events only, no hash table: one record per ended flow.
        "hash_enable=0",
        "event_mask=0x00000004",
        # The same 16 MiB as the FlowLog's receiveBuffer; ulogd sets the
        # size only when it is below the maximum (strictly).
        f"netlink_socket_buffer_size={buffer}",
        f"netlink_socket_buffer_maxsize={2 * buffer}",
        "[log1]",
        f"group={ULOGD_GROUP}",
        "[json1]",
        f'file="{flows}"',
        "sync=1",
        "[json2]",
        f'file="{fw}"',
        "sync=1",
    ]
    conf = "\n".join(lines) + "\n"
    (wd / "ulogd.conf").write_text(conf)
    proc = rl.router.popen(["ulogd", "-c", str(wd / "ulogd.conf")], wd / "stdout.log")
    rl.ulogd = proc
    log = wd / "ulogd.log"
    deadline = time.monotonic() + timeout
    while "entering main loop" not in (log.read_text() if log.exists() else ""):
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"ulogd did not start: {log.read_text() if log.exists() else ''}")
        time.sleep(0.02)
    return proc
