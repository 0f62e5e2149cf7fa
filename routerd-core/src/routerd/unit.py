"""The systemd unit of ``routerd serve``, for wherever routerd is installed.

``routerd unit`` prints it with the paths of the running installation (the
virtualenv's ``bin`` directory), so nothing assumes ``/usr/local/bin``;
``make install-unit`` writes it to ``/etc/systemd/system``.
``packaging/routerd.service.in`` is this template, kept in the repository
for reading (a test keeps the two equal).
"""

from __future__ import annotations

from pathlib import Path
import sys

#: Replaced by the directory holding the ``routerd`` executable.
BINDIR = "@BINDIR@"
#: Replaced by the router config path.
CONFIG = "@CONFIG@"

TEMPLATE = """\
# routerd serve under systemd: one unit supervises every protocol daemon.
# Written by `routerd unit` (or `make install-unit`) with the paths of the
# installation it came from; regenerate it after moving the virtualenv.
# Then: put the config in @CONFIG@ and
#   systemctl daemon-reload && systemctl enable --now routerd
[Unit]
Description=routerd router control plane
Documentation=https://github.com/routerd/routerd/tree/main/docs
After=network-pre.target
Wants=network-pre.target
Before=network.target

[Service]
# routerd serve sends READY=1 (sd_notify) once its sockets serve and every
# daemon was started; STOPPING=1 when it stops.
Type=notify
NotifyAccess=main
ExecStartPre=@BINDIR@/routerd validate -f @CONFIG@
ExecStart=@BINDIR@/routerd serve --config @CONFIG@
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM stops every daemon in parallel (DHCP release where configured) within 5 s.
KillMode=mixed
TimeoutStopSec=15
Restart=on-failure
RestartSec=2

# docs/security.md: the runtime root is 0755 so that the 0666 status socket
# is reachable by any local user; the state is root's; nothing new is
# world-readable.
RuntimeDirectory=routerd
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=restart
StateDirectory=routerd
StateDirectoryMode=0750
UMask=0027

# Capabilities: netlink (addresses, routes, links) and raw sockets (DHCPv4,
# ICMP probes, PPPoE discovery) are what the daemons need. Two more are kept
# on purpose: NET_BIND_SERVICE for the DHCP client ports 68 and 546, and
# CHOWN to hand the sockets to the group routerd (docs/security.md).
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_CHOWN
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE
NoNewPrivileges=yes

# Filesystem: read-only everywhere but the runtime and state directories
# (and the config directory, for files a plugin writes next to it).
ProtectSystem=strict
ReadWritePaths=-/etc/routerd
ProtectHome=yes
PrivateTmp=yes
# Not PrivateDevices (the PPPoE TUN data plane opens /dev/net/tun) nor
# ProtectKernelTunables (routerd and the observers set /proc/sys/net knobs).
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
# AF_UNIX: the sockets; AF_INET(6): probes and DHCP; AF_NETLINK: pyroute2;
# AF_PACKET: raw DHCPv4, PPPoE and DNS capture.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET

[Install]
WantedBy=multi-user.target
"""


def render(bindir: str | Path, config: str | Path = "/etc/routerd/router.yaml") -> str:
    """The unit with ``bindir`` (holding ``routerd``) and ``config`` filled in."""
    bindir = str(bindir).rstrip("/") or "/"
    for value, what in ((bindir, "bindir"), (str(config), "config")):
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"{what} must be an absolute path without spaces: {value!r}")
    return TEMPLATE.replace(BINDIR, bindir).replace(CONFIG, str(config))


def installation_bindir() -> Path:
    """The directory of this installation's scripts (a virtualenv's ``bin``)."""
    return Path(sys.executable).parent
