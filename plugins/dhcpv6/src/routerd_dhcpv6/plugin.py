"""Entry point of ``routerd-plugin-dhcpv6``: registers daemon kind ``dhcpv6-client``."""

from __future__ import annotations

from collections.abc import Callable

from routerd import hookimpl
from routerd.kinds import DaemonKind

from routerd_dhcpv6.engine import Dhcpv6Engine
from routerd_dhcpv6.spec import DHCPv6PrefixDelegationSpec


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="dhcpv6-client",
            kind="DHCPv6PrefixDelegation",
            spec_model=DHCPv6PrefixDelegationSpec,
            factory=Dhcpv6Engine,
            commands={
                "rebind": "send a Rebind now (any server may answer)",
                "release": "release the delegated prefixes and stay idle until renew",
            },
            description="DHCPv6 prefix delegation client (RFC 9915) applying subnets downstream",
        )
    )
