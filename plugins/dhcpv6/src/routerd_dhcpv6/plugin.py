"""Entry point of ``routerd-plugin-dhcpv6``: registers daemon kind ``dhcpv6-client``."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from routerd import hookimpl
from routerd.kinds import DaemonKind

from routerd_dhcpv6.engine import Dhcpv6Engine
from routerd_dhcpv6.spec import DHCPv6PrefixDelegationSpec


def facts(observed: Mapping[str, Any]) -> str:
    """The delegated prefixes (``2001:db8:1000::/60``), or the state while there is none."""
    prefixes = observed.get("prefixes")
    held = [
        str(p.get("prefix"))
        for p in (prefixes if isinstance(prefixes, list) else [])
        if isinstance(p, Mapping) and p.get("prefix")
    ]
    return ", ".join(held) if held else str(observed.get("state") or "")


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="dhcpv6-client",
            kind="DHCPv6PrefixDelegation",
            spec_model=DHCPv6PrefixDelegationSpec,
            factory=Dhcpv6Engine,
            facts=facts,
            commands={
                "rebind": "send a Rebind now (any server may answer)",
                "release": "release the delegated prefixes and stay idle until renew",
            },
            description="DHCPv6 prefix delegation client (RFC 9915) applying subnets downstream",
        )
    )
