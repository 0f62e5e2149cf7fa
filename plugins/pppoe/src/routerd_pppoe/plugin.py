"""Entry point of ``routerd-plugin-pppoe``: registers daemon kind ``pppoe-client``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from routerd import hookimpl
from routerd.kinds import DaemonKind

from routerd_pppoe.engine import PPPoEClientEngine
from routerd_pppoe.spec import PPPoESessionSpec


def facts(observed: Mapping[str, Any]) -> str:
    """``198.51.100.7 peer 198.51.100.1 on ppp-isp``, or the state while there is no session."""
    local = observed.get("localAddress")
    if not local:
        reason = observed.get("lastExitReason")
        state = str(observed.get("state") or "")
        return f"{state} ({reason})" if reason else state
    peer = observed.get("peerAddress")
    return f"{local}" + (f" peer {peer}" if peer else "") + f" on {observed.get('pppInterface')}"


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="pppoe-client",
            kind="PPPoESession",
            spec_model=PPPoESessionSpec,
            factory=PPPoEClientEngine,
            facts=facts,
            commands={
                "reconnect": "end the session (Terminate-Request, PADT) and dial again now",
            },
            description="PPPoE client (RFC 2516, RFC 1661): LCP, PAP/CHAP, IPCP/IPv6CP, "
            "keepalive and redial; kernel or TUN data plane",
        )
    )
