"""Entry point of ``routerd-plugin-observe``: three observer daemon kinds and their routes."""

from __future__ import annotations

from collections.abc import Callable

from routerd import hookimpl
from routerd.kinds import DaemonKind
from routerd.serve.routes import ServeView

from routerd_observe.spec import DNSQueryLogSpec
from routerd_observe.spec import FirewallLogSpec
from routerd_observe.spec import FlowLogSpec

#: ``routerctl command <daemon-kind>/<name> query '{"limit": 10}'`` without routerd serve.
COMMANDS = {"query": "stored records; the body holds the endpoint's filters"}


def _flow_engine(ctx):  # type: ignore[no-untyped-def]
    from routerd_observe.engines import FlowLogEngine

    return FlowLogEngine(ctx)


def _firewall_engine(ctx):  # type: ignore[no-untyped-def]
    from routerd_observe.engines import FirewallLogEngine

    return FirewallLogEngine(ctx)


def _dns_engine(ctx):  # type: ignore[no-untyped-def]
    from routerd_observe.engines import DNSQueryLogEngine

    return DNSQueryLogEngine(ctx)


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="flow-log",
            kind="FlowLog",
            spec_model=FlowLogSpec,
            factory=_flow_engine,
            commands=COMMANDS,
            description="flow records from conntrack events (bytes, packets, NAT, DNS names)",
        )
    )
    register(
        DaemonKind(
            name="firewall-log",
            kind="FirewallLog",
            spec_model=FirewallLogSpec,
            factory=_firewall_engine,
            commands=COMMANDS,
            description="packets nftables rules log to an NFLOG group",
        )
    )
    register(
        DaemonKind(
            name="dns-query-log",
            kind="DNSQueryLog",
            spec_model=DNSQueryLogSpec,
            factory=_dns_engine,
            commands=COMMANDS,
            description="DNS queries and responses captured on interfaces",
        )
    )


@hookimpl
def routerd_register_api_routes(add_route: Callable[[str, object], None], serve: ServeView) -> None:
    from routerd_observe import api

    add_route("connections", api.ConnectionsRoute(serve))
    add_route("traffic-flows", api.FlowsRoute(serve))
    add_route("firewall-logs", api.FirewallRoute(serve))
    add_route("dns-queries", api.DnsRoute(serve))
