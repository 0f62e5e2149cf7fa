"""``routerctl get connections|flows|firewall-logs|dns-queries``: what the router sees.

Each command asks routerd serve's main API (docs/observe.md) with the same
filters as the endpoint, on the main socket (root and the ``routerd``
group): the status socket refuses these endpoints. ``--follow`` (flows,
firewall logs, DNS queries) asks again every second for the records after
the newest one shown.
"""

from __future__ import annotations

from collections.abc import Callable
import time
from typing import Any

import click
from routerd.client import OBJECT
from routerd.client import ListOf
from routerd.client import Obj
from routerd.errors import ClientError

from routerctl import api
from routerctl.output import dump
from routerctl.output import human_duration
from routerctl.output import render_table
from routerctl.output import short_time

LIST = Obj({"items": ListOf(OBJECT)}, required=("items",))
PREFIX = "/api/control.routerd.net/v1alpha1"
FOLLOW_EVERY = 1.0

RouterFor = Callable[[click.Context], Any]


def _get(router: Any, path: str, shape: Any, **query: Any) -> dict[str, Any]:
    """``GET`` on the main socket (``router.write``): these endpoints are not on the status one."""
    try:
        resp = router.write.get(f"{PREFIX}/{path}", **query)
    except ClientError as exc:
        raise router._fail(router.write, exc) from None
    body: dict[str, Any] = api.json_body("routerd", resp, shape)
    return body


def _bytes(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


def _endpoint(t: dict[str, Any] | None) -> str:
    if not t:
        return "-"
    host = f"[{t['src']}]" if ":" in str(t.get("src")) else str(t.get("src"))
    peer = f"[{t['dst']}]" if ":" in str(t.get("dst")) else str(t.get("dst"))
    if "sport" in t:
        return f"{host}:{t['sport']} -> {peer}:{t['dport']}"
    return f"{host} -> {peer}"


def _conditions(body: dict[str, Any]) -> None:
    for c in body.get("conditions") or []:
        if isinstance(c, dict) and c.get("status") == "False":
            click.echo(f"{c.get('reason')}: {c.get('message')}", err=True)


def connections_table(items: list[dict[str, Any]]) -> str:
    rows = []
    for i in items:
        nat = i.get("nat") or {}
        b = i.get("bytes") or {}
        rows.append(
            [
                i.get("protocol"),
                i.get("state") or "-",
                _endpoint(i.get("original")),
                ",".join(f"{k}={v}" for k, v in nat.items()) or "-",
                f"{_bytes(b.get('original'))}/{_bytes(b.get('reply'))}" if b else "-",
                i.get("timeout"),
                "yes" if i.get("assured") else "no",
            ]
        )
    return render_table(
        ["PROTO", "STATE", "ORIGINAL", "NAT", "BYTES O/R", "TIMEOUT", "ASSURED"], rows
    )


def flows_table(items: list[dict[str, Any]]) -> str:
    rows = []
    for i in items:
        peer = (
            f"{i.get('peer')}:{i.get('peerPort')}"
            if i.get("peerPort") is not None
            else i.get("peer")
        )
        duration = i.get("durationSeconds")
        rows.append(
            [
                short_time(i.get("start")),
                "open" if i.get("open") else human_duration(float(duration or 0)),
                f"{i.get('client')}:{i.get('clientPort')}"
                if i.get("clientPort")
                else i.get("client"),
                peer,
                i.get("peerName") or "-",
                i.get("protocol"),
                _bytes(i.get("bytesOut")),
                _bytes(i.get("bytesIn")),
                i.get("endReason") or "-",
            ]
        )
    return render_table(
        ["START", "DURATION", "CLIENT", "PEER", "NAME", "PROTO", "OUT", "IN", "END"], rows
    )


def firewall_table(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            short_time(i.get("time")),
            i.get("action"),
            i.get("prefix"),
            i.get("in") or "-",
            i.get("out") or "-",
            i.get("protocol"),
            f"{i.get('src')}:{i.get('sport')}" if i.get("sport") is not None else i.get("src"),
            f"{i.get('dst')}:{i.get('dport')}" if i.get("dport") is not None else i.get("dst"),
            i.get("tcpFlags") or "-",
        ]
        for i in items
    ]
    return render_table(
        ["TIME", "ACTION", "PREFIX", "IN", "OUT", "PROTO", "SOURCE", "DESTINATION", "FLAGS"], rows
    )


def dns_table(items: list[dict[str, Any]]) -> str:
    rows = []
    for i in items:
        answers = [a.get("data") for a in i.get("answers") or [] if isinstance(a, dict)]
        latency = i.get("latencyMs")
        rows.append(
            [
                short_time(i.get("time")),
                i.get("client"),
                i.get("qname"),
                i.get("qtype"),
                i.get("rcode") or "no answer",
                ",".join(str(a) for a in answers[:3]) + (",..." if len(answers) > 3 else "") or "-",
                f"{latency:.1f}ms" if isinstance(latency, int | float) else "-",
            ]
        )
    return render_table(["TIME", "CLIENT", "NAME", "TYPE", "RCODE", "ANSWERS", "LATENCY"], rows)


def _show(
    body: dict[str, Any],
    output: str,
    table: Callable[[list[dict[str, Any]]], str],
    *,
    oldest_first: bool = False,
) -> None:
    items = body["items"]
    if output != "table":
        click.echo(dump(body.get("aggregates", body), output))
        return
    if "aggregates" in body:
        click.echo(dump(body["aggregates"], "yaml"))
        return
    if items:
        click.echo(table(list(reversed(items)) if oldest_first else items))
    _conditions(body)


def _query(**options: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or value is False:
            continue
        out[name.replace("_", "-")] = "1" if value is True else value
    return out


def _follow(
    ctx: click.Context,
    router_for: RouterFor,
    path: str,
    query: dict[str, Any],
    output: str,
    table: Callable[[list[dict[str, Any]]], str],
) -> None:
    body = _get(router_for(ctx), path, LIST, **query)
    items = list(reversed(body["items"]))
    _emit(items, output, table)
    after = max((int(i["id"]) for i in items if isinstance(i.get("id"), int)), default=0)
    query = {k: v for k, v in query.items() if k not in ("since", "from")}
    try:
        while True:
            time.sleep(FOLLOW_EVERY)
            body = _get(router_for(ctx), path, LIST, **{**query, "after": after})
            items = body["items"]
            if items:
                _emit(items, output, table)
                after = max(after, *(int(i["id"]) for i in items if isinstance(i.get("id"), int)))
    except KeyboardInterrupt:
        return


def _emit(
    items: list[dict[str, Any]], output: str, table: Callable[[list[dict[str, Any]]], str]
) -> None:
    if not items:
        return
    if output == "table":
        click.echo(table(items))
    else:
        for item in items:
            click.echo(dump(item, "json" if output == "json" else output).rstrip())


def add_observer_commands(
    get: click.Group,
    common_options: Callable[[Any], Any],
    output_option: Callable[[Any], Any],
    router_for: RouterFor,
) -> None:
    """Add the four observer listings to ``routerctl get``."""
    limit = click.option("--limit", type=click.IntRange(1, 5000), default=100, show_default=True)
    since = click.option(
        "--since", metavar="TIME", help="RFC 3339 time, epoch seconds or a duration ago (10m)."
    )
    until = click.option("--to", "to", metavar="TIME", help="Until this time.")
    follow = click.option("-f", "--follow", is_flag=True, help="Keep printing new records.")

    @get.command("connections")
    @click.option("--family", type=click.Choice(["ipv4", "ipv6"]))
    @click.option("--protocol", metavar="PROTO", help="tcp, udp, icmp, icmpv6, ...")
    @click.option("--state", metavar="STATE", help="TCP state, e.g. ESTABLISHED.")
    @click.option("--address", metavar="ADDR", help="Either side, either direction.")
    @click.option("--port", type=click.IntRange(0, 65535))
    @click.option("--mark", metavar="MARK", help="Conntrack mark (decimal or 0x...).")
    @click.option("--count", is_flag=True, help="Also print the whole table's size.")
    @limit
    @common_options
    @output_option
    @click.pass_context
    def get_connections(ctx: click.Context, /, output: str, count: bool, **filters: Any) -> None:
        """Live conntrack entries (needs a FlowLog observer)."""
        body = _get(router_for(ctx), "connections", LIST, **_query(count=count, **filters))
        _show(body, output, connections_table)
        if count and output == "table" and "count" in body:
            click.echo(f"{body['count']} entries in the table", err=True)

    @get.command("flows")
    @since
    @until
    @click.option("--client", metavar="ADDR")
    @click.option("--peer", metavar="ADDR")
    @click.option(
        "--peer-suffix",
        metavar="NAME",
        help="Peer address, or a DNS name suffix it was looked up as.",
    )
    @click.option("--protocol", metavar="PROTO")
    @click.option("--agg", is_flag=True, help="Totals by client, peer and protocol.")
    @limit
    @follow
    @common_options
    @output_option
    @click.pass_context
    def get_flows(ctx: click.Context, /, output: str, follow: bool, **filters: Any) -> None:
        """Traffic flows recorded from conntrack (newest first)."""
        query = _query(**filters)
        if follow:
            _follow(ctx, router_for, "traffic-flows", query, output, flows_table)
            return
        _show(_get(router_for(ctx), "traffic-flows", OBJECT, **query), output, flows_table)

    @get.command("firewall-logs")
    @since
    @until
    @click.option("--action", type=click.Choice(["drop", "reject", "accept", "log"]))
    @click.option("--src", metavar="ADDR")
    @click.option("--dst", metavar="ADDR")
    @click.option("--prefix", metavar="TEXT", help="Log prefix starts with this.")
    @click.option("--protocol", metavar="PROTO")
    @limit
    @follow
    @common_options
    @output_option
    @click.pass_context
    def get_firewall_logs(ctx: click.Context, /, output: str, follow: bool, **filters: Any) -> None:
        """Packets nftables rules logged (newest first)."""
        query = _query(**filters)
        if follow:
            _follow(ctx, router_for, "firewall-logs", query, output, firewall_table)
            return
        _show(_get(router_for(ctx), "firewall-logs", LIST, **query), output, firewall_table)

    @get.command("dns-queries")
    @since
    @until
    @click.option("--client", metavar="ADDR")
    @click.option("--qname-suffix", metavar="NAME")
    @click.option("--rcode", metavar="RCODE", help="NOERROR, NXDOMAIN, ... or NONE (unanswered).")
    @click.option("--agg", is_flag=True, help="Totals by rcode, client, name; latency percentiles.")
    @limit
    @follow
    @common_options
    @output_option
    @click.pass_context
    def get_dns_queries(ctx: click.Context, /, output: str, follow: bool, **filters: Any) -> None:
        """DNS queries seen on the wire with their answers (newest first)."""
        query = _query(**filters)
        if follow:
            _follow(ctx, router_for, "dns-queries", query, output, dns_table)
            return
        _show(_get(router_for(ctx), "dns-queries", OBJECT, **query), output, dns_table)
