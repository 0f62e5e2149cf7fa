"""Pin every transmission constant and its RFC section (RFC 9915 §7.6, §15).

Peers still ship RFC 3315 values (SOL_MAX_RT 120 s); this table must not.
"""

from __future__ import annotations

import pytest
from routerd_dhcpv6 import constants as c
from routerd_dhcpv6 import retransmit as rtx

EXPECTED = {
    "SOL_MAX_DELAY": (1, "s", "RFC 9915 §7.6"),
    "SOL_TIMEOUT": (1, "s", "RFC 9915 §7.6"),
    "SOL_MAX_RT": (3600, "s", "RFC 9915 §7.6"),
    "REQ_TIMEOUT": (1, "s", "RFC 9915 §7.6"),
    "REQ_MAX_RT": (30, "s", "RFC 9915 §7.6"),
    "REQ_MAX_RC": (10, "count", "RFC 9915 §7.6"),
    "CNF_MAX_DELAY": (1, "s", "RFC 9915 §7.6"),
    "CNF_TIMEOUT": (1, "s", "RFC 9915 §7.6"),
    "CNF_MAX_RT": (4, "s", "RFC 9915 §7.6"),
    "CNF_MAX_RD": (10, "s", "RFC 9915 §7.6"),
    "REN_TIMEOUT": (10, "s", "RFC 9915 §7.6"),
    "REN_MAX_RT": (600, "s", "RFC 9915 §7.6"),
    "REB_TIMEOUT": (10, "s", "RFC 9915 §7.6"),
    "REB_MAX_RT": (600, "s", "RFC 9915 §7.6"),
    "INF_MAX_DELAY": (1, "s", "RFC 9915 §7.6"),
    "INF_TIMEOUT": (1, "s", "RFC 9915 §7.6"),
    "INF_MAX_RT": (3600, "s", "RFC 9915 §7.6"),
    "REL_TIMEOUT": (1, "s", "RFC 9915 §7.6"),
    "REL_MAX_RC": (4, "count", "RFC 9915 §7.6"),
    "DEC_TIMEOUT": (1, "s", "RFC 9915 §7.6"),
    "DEC_MAX_RC": (4, "count", "RFC 9915 §7.6"),
    "REC_TIMEOUT": (2, "s", "RFC 9915 §7.6"),
    "REC_MAX_RC": (8, "count", "RFC 9915 §7.6"),
    "HOP_COUNT_LIMIT": (8, "count", "RFC 9915 §7.6"),
    "IRT_DEFAULT": (86400, "s", "RFC 9915 §7.6"),
    "IRT_MINIMUM": (600, "s", "RFC 9915 §7.6"),
    "MAX_WAIT_TIME": (60, "s", "RFC 9915 §7.6"),
    "RAND_MIN": (-0.1, "factor", "RFC 9915 §15"),
    "RAND_MAX": (0.1, "factor", "RFC 9915 §15"),
}


def test_table_has_exactly_the_expected_entries() -> None:
    assert set(c.TRANSMISSION_CONSTANTS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_constant_value_unit_and_section(name: str) -> None:
    value, unit, rfc = EXPECTED[name]
    entry = c.TRANSMISSION_CONSTANTS[name]
    assert (entry.name, entry.value, entry.unit, entry.rfc) == (name, value, unit, rfc)
    # The module-level name is the same number as the table entry.
    assert getattr(c, name) == value


def test_not_rfc3315_values() -> None:
    assert c.SOL_MAX_RT != 120
    assert c.INF_MAX_RT != 120


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        c.TRANSMISSION_CONSTANTS["SOL_MAX_RT"] = c.TRANSMISSION_CONSTANTS["SOL_TIMEOUT"]  # type: ignore[index]


def test_retransmission_parameters_use_the_table() -> None:
    assert rtx.RetransmitParams(1, 3600, 0, 0) == rtx.SOLICIT
    assert rtx.RetransmitParams(1, 30, 10, 0) == rtx.REQUEST
    assert rtx.RetransmitParams(1, 4, 0, 10) == rtx.CONFIRM
    assert rtx.RetransmitParams(10, 600, 0, 0) == rtx.RENEW
    assert rtx.RetransmitParams(10, 600, 0, 0) == rtx.REBIND
    assert rtx.RetransmitParams(1, 3600, 0, 0) == rtx.INFORMATION_REQUEST
    assert rtx.RetransmitParams(1, 0, 4, 0) == rtx.RELEASE
    assert rtx.RetransmitParams(1, 0, 4, 0) == rtx.DECLINE


def test_code_numbers() -> None:
    assert [int(m) for m in c.MsgType] == list(range(1, 14))
    assert c.MsgType.INFORMATION_REQUEST == 11
    assert (c.OptionCode.IA_PD, c.OptionCode.IAPREFIX) == (25, 26)
    assert (c.OptionCode.DNS_SERVERS, c.OptionCode.DOMAIN_LIST) == (23, 24)
    assert (c.OptionCode.SNTP_SERVERS, c.OptionCode.NTP_SERVER) == (31, 56)
    assert (c.OptionCode.AFTR_NAME, c.OptionCode.SOL_MAX_RT) == (64, 82)
    assert c.OptionCode.INF_MAX_RT == 83
    assert c.OptionCode.RAPID_COMMIT == 14 and c.OptionCode.RECONF_ACCEPT == 20
    assert [int(s) for s in c.StatusCode] == [0, 1, 2, 3, 4, 5, 6]
    assert c.StatusCode.NO_PREFIX_AVAIL == 6 and c.StatusCode.NO_BINDING == 3
    assert c.SOL_MAX_RT_RANGE == (60, 86400) and c.INF_MAX_RT_RANGE == (60, 86400)
    assert (c.CLIENT_PORT, c.SERVER_PORT) == (546, 547)
    assert c.ALL_DHCP_RELAY_AGENTS_AND_SERVERS == "ff02::1:2"
    assert c.INFINITY == 0xFFFFFFFF
