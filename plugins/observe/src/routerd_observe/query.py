"""Query parameters of the observer endpoints, parsed strictly once.

Each endpoint's parameters are parsed and range-checked here, a bad value
is a 400 naming the parameter; parameters an endpoint does not take are
ignored, as everywhere in routerd's APIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
import ipaddress
import re
import time
from typing import Any
from typing import Final

from routerd.durations import parse_duration
from routerd.httpapi import bad_param
from routerd.httpapi import parse_bool
from routerd.httpapi import parse_limit

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 5000
_NAME = re.compile(r"^[A-Za-z0-9_.*-]{1,253}$")
_PREFIX_MAX = 64
PROTOCOLS: Final = ("tcp", "udp", "icmp", "icmpv6", "sctp", "dccp", "udplite", "gre")
TCP_STATES: Final = (
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
)


def parse_time(raw: str, param: str, now: float | None = None) -> float:
    """An RFC 3339 time, seconds since the epoch, or a duration ago (``10m``)."""
    text = raw.strip()
    if not text or len(text) > 40 or not text.isascii():
        raise bad_param(param, "must be an RFC 3339 time, epoch seconds or a duration like 10m")
    if text[-1] in "smhd" and not text[-2:].isdigit() and "T" not in text:
        try:
            return (time.time() if now is None else now) - parse_duration(text)
        except ValueError as exc:
            raise bad_param(param, str(exc)) from None
    try:
        return float(text) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text) else _rfc3339(text)
    except ValueError:
        raise bad_param(
            param, "must be an RFC 3339 time, epoch seconds or a duration like 10m"
        ) from None


def _rfc3339(text: str) -> float:
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_address(raw: str, param: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise bad_param(param, "must be an IPv4 or IPv6 address") from None


def parse_port(raw: str, param: str = "port") -> int:
    if not raw.isascii() or not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise bad_param(param, "must be a port number from 0 to 65535")
    return int(raw)


def parse_name(raw: str, param: str) -> str:
    value = raw.strip().rstrip(".").lower()
    if not _NAME.match(value):
        raise bad_param(param, "must be a DNS name or an address")
    return value


def parse_choice(raw: str, param: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    value = raw.strip().upper() if upper else raw.strip().lower()
    if value not in choices:
        raise bad_param(param, f"must be one of {', '.join(choices)}")
    return value


def parse_uint32(raw: str, param: str) -> int:
    text = raw.strip().lower()
    try:
        value = int(text, 16) if text.startswith("0x") else int(text) if text.isdigit() else -1
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFFFFFFFF or len(text) > 12:
        raise bad_param(param, "must be an integer from 0 to 4294967295 (or 0x...)")
    return value


@dataclass(frozen=True)
class Query:
    """Every filter any observer endpoint takes; each endpoint allows a subset."""

    limit: int = DEFAULT_LIMIT
    since: float | None = None
    until: float | None = None
    client: str | None = None
    peer: str | None = None
    peer_suffix: str | None = None
    protocol: str | None = None
    agg: bool = False
    # connections
    family: str | None = None
    state: str | None = None
    address: str | None = None
    port: int | None = None
    mark: int | None = None
    count: bool = False
    # firewall logs
    action: str | None = None
    src: str | None = None
    dst: str | None = None
    prefix: str | None = None
    # dns
    qname_suffix: str | None = None
    rcode: str | None = None
    after: int | None = None


#: Parameters each endpoint takes.
ALLOWED: Final = {
    "connections": {"limit", "family", "protocol", "state", "address", "port", "mark", "count"},
    "traffic-flows": {
        "limit",
        "since",
        "from",
        "to",
        "client",
        "peer",
        "peer-suffix",
        "protocol",
        "agg",
        "after",
    },
    "firewall-logs": {
        "limit",
        "since",
        "from",
        "to",
        "action",
        "src",
        "dst",
        "prefix",
        "protocol",
        "after",
    },
    "dns-queries": {
        "limit",
        "since",
        "from",
        "to",
        "client",
        "qname-suffix",
        "rcode",
        "agg",
        "after",
    },
}


def parse_query(endpoint: str, params: dict[str, Any], now: float | None = None) -> Query:
    """Parse and check ``params`` (one value each) for ``endpoint``.

    :raises falcon.HTTPBadRequest: an unknown parameter or a bad value, named.
    """
    allowed = ALLOWED[endpoint]
    # Parameters another endpoint takes are ignored, as every routerd API
    # ignores unknown parameters (docs/decisions.md).
    params = {k: v for k, v in params.items() if k in allowed}
    for name, value in params.items():
        if isinstance(value, list):
            raise bad_param(name, "given more than once")
    p: dict[str, str] = {k: str(v) for k, v in params.items()}
    kw: dict[str, Any] = {"limit": parse_limit(p.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)}
    _times(p, kw, now)
    _addresses(p, kw)
    _choices(p, kw)
    kw["agg"] = parse_bool(p.get("agg"), "agg")
    kw["count"] = parse_bool(p.get("count"), "count")
    return Query(**kw)


def _times(p: dict[str, str], kw: dict[str, Any], now: float | None) -> None:
    if p.get("since"):
        kw["since"] = parse_time(p["since"], "since", now)
    if p.get("from"):
        kw["since"] = parse_time(p["from"], "from", now)
    if p.get("to"):
        kw["until"] = parse_time(p["to"], "to", now)
    if p.get("after"):
        if not p["after"].isascii() or not p["after"].isdigit() or len(p["after"]) > 18:
            raise bad_param("after", "must be a record id")
        kw["after"] = int(p["after"])


def _addresses(p: dict[str, str], kw: dict[str, Any]) -> None:
    for name in ("client", "address", "src", "dst"):
        if p.get(name):
            kw[name] = parse_address(p[name], name)
    if p.get("peer"):
        kw["peer"] = parse_address(p["peer"], "peer")
    if p.get("peer-suffix"):
        kw["peer_suffix"] = parse_name(p["peer-suffix"], "peer-suffix")
    if p.get("qname-suffix"):
        kw["qname_suffix"] = parse_name(p["qname-suffix"], "qname-suffix")


def _choices(p: dict[str, str], kw: dict[str, Any]) -> None:
    if p.get("protocol"):
        kw["protocol"] = parse_choice(p["protocol"], "protocol", PROTOCOLS)
    if p.get("family"):
        kw["family"] = parse_choice(p["family"], "family", ("ipv4", "ipv6"))
    if p.get("state"):
        kw["state"] = parse_choice(p["state"], "state", TCP_STATES, upper=True)
    if p.get("port"):
        kw["port"] = parse_port(p["port"])
    if p.get("mark"):
        kw["mark"] = parse_uint32(p["mark"], "mark")
    if p.get("action"):
        kw["action"] = parse_choice(p["action"], "action", ("drop", "reject", "accept", "log"))
    if p.get("prefix"):
        if len(p["prefix"]) > _PREFIX_MAX or not p["prefix"].isprintable():
            raise bad_param("prefix", f"must be printable, at most {_PREFIX_MAX} characters")
        kw["prefix"] = p["prefix"]
    if p.get("rcode"):
        rcode = p["rcode"].strip().upper()
        if not re.fullmatch(r"[A-Z0-9]{1,16}", rcode):
            raise bad_param("rcode", "must be a response code such as NOERROR or NXDOMAIN")
        kw["rcode"] = rcode
