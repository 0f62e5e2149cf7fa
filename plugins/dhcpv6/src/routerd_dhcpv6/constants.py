"""DHCPv6 numbers: transmission constants, message types, option and status codes.

This module is the single table of DHCPv6 timing constants (RFC 9915 §7.6,
the same values as RFC 8415 §7.6). Every entry carries the section that
defines it, and ``tests/test_constants.py`` pins each value, so the table
cannot silently drift back to RFC 3315 numbers (SOL_MAX_RT was 120 s there;
it is 3600 s since RFC 7083 / RFC 8415).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "ALL_DHCP_RELAY_AGENTS_AND_SERVERS",
    "CLIENT_PORT",
    "CNF_MAX_DELAY",
    "CNF_MAX_RD",
    "CNF_MAX_RT",
    "CNF_TIMEOUT",
    "Constant",
    "DEC_MAX_RC",
    "DEC_TIMEOUT",
    "DuidType",
    "HOP_COUNT_LIMIT",
    "INFINITY",
    "INF_MAX_DELAY",
    "INF_MAX_RT",
    "INF_TIMEOUT",
    "IRT_DEFAULT",
    "IRT_MINIMUM",
    "MAX_WAIT_TIME",
    "MsgType",
    "OptionCode",
    "RAND_MAX",
    "RAND_MIN",
    "REB_MAX_RT",
    "REB_TIMEOUT",
    "REC_MAX_RC",
    "REC_TIMEOUT",
    "REL_MAX_RC",
    "REL_TIMEOUT",
    "REN_MAX_RT",
    "REN_TIMEOUT",
    "REQ_MAX_RC",
    "REQ_MAX_RT",
    "REQ_TIMEOUT",
    "SERVER_PORT",
    "SOL_MAX_DELAY",
    "SOL_MAX_RT",
    "SOL_MAX_RT_RANGE",
    "INF_MAX_RT_RANGE",
    "SOL_TIMEOUT",
    "StatusCode",
    "TRANSMISSION_CONSTANTS",
]


@dataclass(frozen=True)
class Constant:
    """One protocol constant with the place that defines it.

    :ivar name: the RFC's name, e.g. ``SOL_MAX_RT``.
    :ivar value: seconds for times, a count for ``*_MAX_RC``, a factor for RAND.
    :ivar unit: ``"s"``, ``"count"`` or ``"factor"``.
    :ivar rfc: where it is defined, e.g. ``"RFC 9915 §7.6"``.
    :ivar meaning: the RFC's one-line description.
    """

    name: str
    value: float
    unit: str
    rfc: str
    meaning: str


_S76 = "RFC 9915 §7.6"

_TABLE: tuple[Constant, ...] = (
    Constant("SOL_MAX_DELAY", 1, "s", _S76, "Max delay of first Solicit"),
    Constant("SOL_TIMEOUT", 1, "s", _S76, "Initial Solicit timeout"),
    Constant("SOL_MAX_RT", 3600, "s", _S76, "Max Solicit timeout value"),
    Constant("REQ_TIMEOUT", 1, "s", _S76, "Initial Request timeout"),
    Constant("REQ_MAX_RT", 30, "s", _S76, "Max Request timeout value"),
    Constant("REQ_MAX_RC", 10, "count", _S76, "Max Request retry attempts"),
    Constant("CNF_MAX_DELAY", 1, "s", _S76, "Max delay of first Confirm"),
    Constant("CNF_TIMEOUT", 1, "s", _S76, "Initial Confirm timeout"),
    Constant("CNF_MAX_RT", 4, "s", _S76, "Max Confirm timeout"),
    Constant("CNF_MAX_RD", 10, "s", _S76, "Max Confirm duration"),
    Constant("REN_TIMEOUT", 10, "s", _S76, "Initial Renew timeout"),
    Constant("REN_MAX_RT", 600, "s", _S76, "Max Renew timeout value"),
    Constant("REB_TIMEOUT", 10, "s", _S76, "Initial Rebind timeout"),
    Constant("REB_MAX_RT", 600, "s", _S76, "Max Rebind timeout value"),
    Constant("INF_MAX_DELAY", 1, "s", _S76, "Max delay of first Information-request"),
    Constant("INF_TIMEOUT", 1, "s", _S76, "Initial Information-request timeout"),
    Constant("INF_MAX_RT", 3600, "s", _S76, "Max Information-request timeout value"),
    Constant("REL_TIMEOUT", 1, "s", _S76, "Initial Release timeout"),
    Constant("REL_MAX_RC", 4, "count", _S76, "Max Release retry attempts"),
    Constant("DEC_TIMEOUT", 1, "s", _S76, "Initial Decline timeout"),
    Constant("DEC_MAX_RC", 4, "count", _S76, "Max Decline retry attempts"),
    Constant("REC_TIMEOUT", 2, "s", _S76, "Initial Reconfigure timeout"),
    Constant("REC_MAX_RC", 8, "count", _S76, "Max Reconfigure attempts"),
    Constant("HOP_COUNT_LIMIT", 8, "count", _S76, "Max hop count in a Relay-forward"),
    Constant("IRT_DEFAULT", 86400, "s", _S76, "Default information refresh time"),
    Constant("IRT_MINIMUM", 600, "s", _S76, "Min information refresh time"),
    Constant("MAX_WAIT_TIME", 60, "s", _S76, "Max required time to wait for a response"),
    Constant("RAND_MIN", -0.1, "factor", "RFC 9915 §15", "Lower bound of RAND"),
    Constant("RAND_MAX", 0.1, "factor", "RFC 9915 §15", "Upper bound of RAND"),
)

#: Every transmission constant by name (read-only).
TRANSMISSION_CONSTANTS: Final = MappingProxyType({c.name: c for c in _TABLE})


def _v(name: str) -> float:
    return TRANSMISSION_CONSTANTS[name].value


def _n(name: str) -> int:
    return int(TRANSMISSION_CONSTANTS[name].value)


SOL_MAX_DELAY: Final = _v("SOL_MAX_DELAY")
SOL_TIMEOUT: Final = _v("SOL_TIMEOUT")
SOL_MAX_RT: Final = _v("SOL_MAX_RT")
REQ_TIMEOUT: Final = _v("REQ_TIMEOUT")
REQ_MAX_RT: Final = _v("REQ_MAX_RT")
REQ_MAX_RC: Final = _n("REQ_MAX_RC")
CNF_MAX_DELAY: Final = _v("CNF_MAX_DELAY")
CNF_TIMEOUT: Final = _v("CNF_TIMEOUT")
CNF_MAX_RT: Final = _v("CNF_MAX_RT")
CNF_MAX_RD: Final = _v("CNF_MAX_RD")
REN_TIMEOUT: Final = _v("REN_TIMEOUT")
REN_MAX_RT: Final = _v("REN_MAX_RT")
REB_TIMEOUT: Final = _v("REB_TIMEOUT")
REB_MAX_RT: Final = _v("REB_MAX_RT")
INF_MAX_DELAY: Final = _v("INF_MAX_DELAY")
INF_TIMEOUT: Final = _v("INF_TIMEOUT")
INF_MAX_RT: Final = _v("INF_MAX_RT")
REL_TIMEOUT: Final = _v("REL_TIMEOUT")
REL_MAX_RC: Final = _n("REL_MAX_RC")
DEC_TIMEOUT: Final = _v("DEC_TIMEOUT")
DEC_MAX_RC: Final = _n("DEC_MAX_RC")
REC_TIMEOUT: Final = _v("REC_TIMEOUT")
REC_MAX_RC: Final = _n("REC_MAX_RC")
HOP_COUNT_LIMIT: Final = _n("HOP_COUNT_LIMIT")
IRT_DEFAULT: Final = _v("IRT_DEFAULT")
IRT_MINIMUM: Final = _v("IRT_MINIMUM")
MAX_WAIT_TIME: Final = _v("MAX_WAIT_TIME")
RAND_MIN: Final = _v("RAND_MIN")
RAND_MAX: Final = _v("RAND_MAX")

#: Accepted range of a server's SOL_MAX_RT option value (RFC 9915 §21.24).
SOL_MAX_RT_RANGE: Final = (60, 86400)
#: Accepted range of a server's INF_MAX_RT option value (RFC 9915 §21.25).
INF_MAX_RT_RANGE: Final = (60, 86400)

#: Lifetime / T1 / T2 value meaning "infinity" (RFC 9915 §7.7).
INFINITY: Final = 0xFFFFFFFF

#: UDP ports (RFC 9915 §7.2).
CLIENT_PORT: Final = 546
SERVER_PORT: Final = 547
#: Where a client sends every message (RFC 9915 §7.1, §18.2).
ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Final = "ff02::1:2"


class MsgType(IntEnum):
    """Message types (RFC 9915 §7.3)."""

    SOLICIT = 1
    ADVERTISE = 2
    REQUEST = 3
    CONFIRM = 4
    RENEW = 5
    REBIND = 6
    REPLY = 7
    RELEASE = 8
    DECLINE = 9
    RECONFIGURE = 10
    INFORMATION_REQUEST = 11
    RELAY_FORW = 12
    RELAY_REPL = 13


class OptionCode(IntEnum):
    """Option codes used here (RFC 9915 §21 and the RFCs named per entry)."""

    CLIENTID = 1  # RFC 9915 §21.2
    SERVERID = 2  # RFC 9915 §21.3
    IA_NA = 3  # RFC 9915 §21.4
    IA_TA = 4  # RFC 9915 §21.5
    IAADDR = 5  # RFC 9915 §21.6
    ORO = 6  # RFC 9915 §21.7
    PREFERENCE = 7  # RFC 9915 §21.8
    ELAPSED_TIME = 8  # RFC 9915 §21.9
    RELAY_MSG = 9  # RFC 9915 §21.10
    AUTH = 11  # RFC 9915 §21.11
    UNICAST = 12  # RFC 8415 §21.12 (deprecated by RFC 9915)
    STATUS_CODE = 13  # RFC 9915 §21.13
    RAPID_COMMIT = 14  # RFC 9915 §21.14
    USER_CLASS = 15  # RFC 9915 §21.15
    VENDOR_CLASS = 16  # RFC 9915 §21.16
    VENDOR_OPTS = 17  # RFC 9915 §21.17
    INTERFACE_ID = 18  # RFC 9915 §21.18
    RECONF_MSG = 19  # RFC 9915 §21.19
    RECONF_ACCEPT = 20  # RFC 9915 §21.20
    DNS_SERVERS = 23  # RFC 3646 §3
    DOMAIN_LIST = 24  # RFC 3646 §4
    IA_PD = 25  # RFC 9915 §21.21
    IAPREFIX = 26  # RFC 9915 §21.22
    SNTP_SERVERS = 31  # RFC 4075 §4
    INFORMATION_REFRESH_TIME = 32  # RFC 9915 §21.23
    NTP_SERVER = 56  # RFC 5908 §4
    AFTR_NAME = 64  # RFC 6334 §3
    SOL_MAX_RT = 82  # RFC 9915 §21.24
    INF_MAX_RT = 83  # RFC 9915 §21.25


class StatusCode(IntEnum):
    """Status codes (RFC 9915 §21.13)."""

    SUCCESS = 0
    UNSPEC_FAIL = 1
    NO_ADDRS_AVAIL = 2
    NO_BINDING = 3
    NOT_ON_LINK = 4
    USE_MULTICAST = 5
    NO_PREFIX_AVAIL = 6


class DuidType(IntEnum):
    """DUID types (RFC 9915 §11.1; DUID-UUID is RFC 6355)."""

    LLT = 1
    EN = 2
    LL = 3
    UUID = 4
