"""Property tests: only DecodeError escapes the decoder; messages round-trip."""

from __future__ import annotations

import ipaddress
import uuid

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from routerd_dhcpv6 import codec
from routerd_dhcpv6.codec import DecodeError
from routerd_dhcpv6.codec import Message
from routerd_dhcpv6.codec import RelayMessage
from routerd_dhcpv6.codec import decode
from routerd_dhcpv6.codec import decode_any
from routerd_dhcpv6.codec import encode
from routerd_dhcpv6.duid import DuidEN
from routerd_dhcpv6.duid import DuidLL
from routerd_dhcpv6.duid import DuidLLT
from routerd_dhcpv6.duid import DuidUnknown
from routerd_dhcpv6.duid import DuidUUID

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addr = st.integers(0, (1 << 128) - 1).map(lambda i: str(ipaddress.IPv6Address(i)))
label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
name = st.lists(label, min_size=1, max_size=5).map(".".join)

duid = st.one_of(
    st.builds(DuidLLT, u16, u32, st.binary(min_size=1, max_size=16)),
    st.builds(DuidEN, u32, st.binary(min_size=1, max_size=32)),
    st.builds(DuidLL, u16, st.binary(min_size=1, max_size=16)),
    st.builds(DuidUUID, st.builds(uuid.UUID, int=st.integers(0, (1 << 128) - 1))),
    st.builds(DuidUnknown, st.integers(5, 0xFFFF), st.binary(min_size=1, max_size=20)),
)
prefix = st.builds(lambda a, n: f"{a}/{n}", addr, st.integers(0, 128))
status = st.builds(codec.StatusCodeOption, u16, st.text(max_size=20))
known_codes = {int(k) for k in codec._DECODERS}
unknown = st.builds(
    codec.UnknownOption,
    u16.filter(lambda c: c not in known_codes),
    st.binary(max_size=20),
)
ntp_sub = st.one_of(
    st.builds(codec.NtpSuboption, st.sampled_from([1, 2]), addr),
    st.builds(codec.NtpSuboption, st.just(3), name),
    st.builds(codec.NtpSuboption, st.integers(4, 0xFFFF), st.binary(max_size=8)),
)
leaf = st.one_of(
    st.builds(codec.ClientId, duid),
    st.builds(codec.ServerId, duid),
    st.builds(codec.OptionRequest, st.lists(u16, max_size=8).map(tuple)),
    st.builds(codec.Preference, u8),
    st.builds(codec.ElapsedTime, u16),
    st.builds(codec.Unicast, addr),
    status,
    st.builds(codec.RapidCommit),
    st.builds(codec.ReconfigureMessage, u8),
    st.builds(codec.ReconfigureAccept),
    st.builds(codec.DnsServers, st.lists(addr, max_size=3).map(tuple)),
    st.builds(codec.DomainList, st.lists(name, max_size=3).map(tuple)),
    st.builds(codec.SntpServers, st.lists(addr, max_size=3).map(tuple)),
    st.builds(codec.InformationRefreshTime, u32),
    st.builds(codec.NtpServer, st.lists(ntp_sub, max_size=3).map(tuple)),
    st.builds(codec.AftrName, name),
    st.builds(codec.SolMaxRt, u32),
    st.builds(codec.InfMaxRt, u32),
    unknown,
)
sub = st.lists(st.one_of(status, unknown), max_size=2).map(tuple)
iaprefix = st.builds(codec.IaPrefix, u32, u32, prefix, sub)
iaaddr = st.builds(codec.IaAddress, addr, u32, u32, sub)
option = st.one_of(
    leaf,
    st.builds(
        codec.IaPd,
        u32,
        u32,
        u32,
        st.lists(st.one_of(iaprefix, status), max_size=3).map(tuple),
    ),
    st.builds(
        codec.IaNa,
        u32,
        u32,
        u32,
        st.lists(st.one_of(iaaddr, status), max_size=3).map(tuple),
    ),
    st.builds(codec.IaTa, u32, st.lists(iaaddr, max_size=2).map(tuple)),
)
message = st.builds(
    Message,
    st.integers(0, 255).filter(lambda t: t not in (12, 13)),
    st.integers(0, 0xFFFFFF),
    st.lists(option, max_size=8).map(tuple),
)
relay = st.builds(
    RelayMessage,
    st.sampled_from([12, 13]),
    u8,
    addr,
    addr,
    st.lists(leaf, max_size=2).map(tuple),  # completed with a RelayMsg below
)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_decode_error(data: bytes) -> None:
    try:
        msg = decode_any(data)
    except DecodeError:
        return
    # Whatever decodes must encode back to the same bytes.
    assert encode(msg) == data


@FUZZ
@given(st.binary(max_size=200))
def test_random_options_after_valid_header(data: bytes) -> None:
    try:
        msg = decode(b"\x07\x01\x02\x03" + data)
    except DecodeError:
        return
    assert encode(msg) == b"\x07\x01\x02\x03" + data


@FUZZ
@given(message)
def test_generated_messages_round_trip(msg: Message) -> None:
    assert decode(encode(msg)) == msg


@FUZZ
@given(relay, message)
def test_generated_relay_messages_round_trip(r: RelayMessage, inner: Message) -> None:
    full = RelayMessage(
        r.msg_type,
        r.hop_count,
        r.link_address,
        r.peer_address,
        (*r.options, codec.RelayMsg(inner)),
    )
    assert decode_any(encode(full)) == full


@FUZZ
@given(message, st.data())
def test_mutated_valid_messages_only_decode_error(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
    ops = data.draw(st.lists(st.tuples(st.integers(0, 2), u16, u8), min_size=1, max_size=6))
    for op, pos, value in ops:
        if op == 0 and raw:  # flip a byte
            raw[pos % len(raw)] = value
        elif op == 1 and raw:  # truncate
            del raw[pos % len(raw) :]
        else:  # insert
            raw.insert(pos % (len(raw) + 1), value)
    try:
        decode_any(bytes(raw))
    except DecodeError:
        pass
