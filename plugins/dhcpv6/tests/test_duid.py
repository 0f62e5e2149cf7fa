"""DUID construction/parsing (RFC 9915 §11, RFC 6355) and IAID derivation (§12)."""

from __future__ import annotations

import datetime
import uuid

import pytest
from routerd_dhcpv6.duid import DuidEN
from routerd_dhcpv6.duid import DuidError
from routerd_dhcpv6.duid import DuidLL
from routerd_dhcpv6.duid import DuidLLT
from routerd_dhcpv6.duid import DuidUnknown
from routerd_dhcpv6.duid import DuidUUID
from routerd_dhcpv6.duid import duid_en
from routerd_dhcpv6.duid import duid_ll
from routerd_dhcpv6.duid import duid_llt
from routerd_dhcpv6.duid import duid_uuid
from routerd_dhcpv6.duid import iaid_from_mac
from routerd_dhcpv6.duid import iaid_from_name
from routerd_dhcpv6.duid import parse_duid

UTC = datetime.UTC


def test_duid_ll_bytes() -> None:
    assert duid_ll("00:01:02:03:04:05") == bytes.fromhex("00030001000102030405")
    assert parse_duid(duid_ll(b"\x00\x01\x02\x03\x04\x05")) == DuidLL(
        1, bytes.fromhex("000102030405")
    )


def test_duid_llt_time_counts_from_2000() -> None:
    # tcpdump shows "hwaddr/time type 1 time 407259545 001122334455":
    # 407259545 s after 2000-01-01 is 2012-11-26 15:39:05 UTC.
    when = datetime.datetime(2012, 11, 26, 15, 39, 5, tzinfo=UTC)
    raw = duid_llt("00:11:22:33:44:55", when)
    assert raw == bytes.fromhex("0001000118464999001122334455")
    assert parse_duid(raw) == DuidLLT(1, 407259545, bytes.fromhex("001122334455"))
    with pytest.raises(DuidError, match="timezone"):
        duid_llt("00:11:22:33:44:55", datetime.datetime(2020, 1, 1))


def test_duid_en_and_uuid() -> None:
    assert duid_en(30065, b"HSH") == bytes.fromhex("0002000075714853 48".replace(" ", ""))
    assert parse_duid(duid_en(30065, b"HSH")) == DuidEN(30065, b"HSH")
    u = uuid.UUID("a256e92e40abd0d2a3ab3b3ff2ff8998")
    assert duid_uuid(u) == b"\x00\x04" + u.bytes
    assert parse_duid(duid_uuid(u.bytes)) == DuidUUID(u)


def test_unknown_duid_type_kept_raw() -> None:
    raw = b"\x00\x09hello"
    parsed = parse_duid(raw)
    assert parsed == DuidUnknown(9, b"hello")
    assert parsed.to_bytes() == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "too short"),
        (b"\x00\x03\x00", "DUID-LL"),
        (b"\x00\x03" + b"\x01" * 129, "too long"),
        (b"\x00\x01\x00\x01\x00\x00\x00\x00", "DUID-LLT"),
        (b"\x00\x02\x00\x00\x00\x01", "DUID-EN"),
        (b"\x00\x03\x00\x01", "DUID-LL"),
        (b"\x00\x03", "too short"),
        (b"\x00\x04" + b"\x00" * 17, "DUID-UUID"),
    ],
)
def test_bad_duids(raw: bytes, reason: str) -> None:
    with pytest.raises(DuidError, match=reason):
        parse_duid(raw)


@pytest.mark.parametrize("mac", ["00:01:02", "zz:01:02:03:04:05", b"\x00" * 7])
def test_bad_mac(mac: str | bytes) -> None:
    with pytest.raises(DuidError):
        duid_ll(mac)


def test_iaid_is_stable_and_per_interface() -> None:
    assert iaid_from_name("wan0") == iaid_from_name("wan0")
    assert iaid_from_name("wan0") != iaid_from_name("wan1")
    assert 0 <= iaid_from_name("ppp0") <= 0xFFFFFFFF
    # Pinned, so that a refactor cannot silently change every user's IAID.
    assert iaid_from_name("wan0") == int.from_bytes(
        __import__("hashlib").sha256(b"routerd-iaid:wan0").digest()[:4], "big"
    )
    assert iaid_from_mac("00:01:02:03:04:05") == 0x02030405
    with pytest.raises(ValueError):
        iaid_from_name("")
