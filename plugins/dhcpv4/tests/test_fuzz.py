"""Fuzzing the DHCPv4 codec (DESIGN §9: only DecodeError may ever escape).

Hypothesis runs derandomized (a fixed seed per test) without an example
database, so every run is the same run.
"""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
from routerd_dhcpv4.codec import BOOTREPLY
from routerd_dhcpv4.codec import BOOTREQUEST
from routerd_dhcpv4.codec import DecodeError
from routerd_dhcpv4.codec import DhcpMessage
from routerd_dhcpv4.codec import MessageType
from routerd_dhcpv4.codec import Option
from routerd_dhcpv4.codec import build_discover
from routerd_dhcpv4.codec import build_frame
from routerd_dhcpv4.codec import decode
from routerd_dhcpv4.codec import decode_classless_routes
from routerd_dhcpv4.codec import decode_domain_search
from routerd_dhcpv4.codec import encode
from routerd_dhcpv4.codec import encode_classless_routes
from routerd_dhcpv4.codec import encode_domain_search
from routerd_dhcpv4.codec import parse_frame
from routerd_dhcpv4.core import ClientConfig
from routerd_dhcpv4.core import DhcpClientCore

FUZZ = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

MAC = bytes.fromhex("020000000001")
TYPED_CODES = {int(code) for code in Option}

ipv4 = st.integers(0, 2**32 - 1).map(
    lambda n: ".".join(str((n >> s) & 0xFF) for s in (24, 16, 8, 0))
)
label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)
printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
prefix = st.tuples(ipv4, st.integers(0, 32)).map(
    lambda t: str(ipaddress.IPv4Network(f"{t[0]}/{t[1]}", strict=False))
)


def _seed_messages() -> list[bytes]:
    ack = DhcpMessage(
        op=BOOTREPLY,
        xid=0x11223344,
        yiaddr="192.0.2.9",
        chaddr=MAC,
        message_type=MessageType.ACK,
        subnet_mask="255.255.255.0",
        routers=("192.0.2.1",),
        dns_servers=("192.0.2.53",),
        domain_name="example.com",
        domain_search=("a.example.com", "b.example.com", "example.org"),
        classless_routes=(("10.0.0.0/8", "192.0.2.1"), ("0.0.0.0/0", "192.0.2.1")),
        lease_time=3600,
        server_id="192.0.2.1",
        mtu=1500,
        options={52: b"\x03", 200: b"raw"},
    )
    discover = build_discover(
        xid=1, chaddr=MAC, hostname="h", parameter_request_list=(1, 3, 6, 119, 121)
    )
    return [encode(ack), encode(discover), encode(ack, pad_to=0)]


SEEDS = _seed_messages()


def _decode_only_decode_error(data: bytes) -> None:
    for strict in (True, False):
        try:
            msg = decode(data, strict=strict)
        except DecodeError:
            continue
        assert msg.op in (BOOTREQUEST, BOOTREPLY)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    _decode_only_decode_error(data)


@FUZZ
@given(st.binary(min_size=0, max_size=400))
def test_random_option_area_only_raises_decode_error(options: bytes) -> None:
    # a valid header and cookie, so the option walker sees all the noise
    _decode_only_decode_error(SEEDS[2][:240] + options)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=12),
)
def test_mutated_packets_only_raise_decode_error(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    _decode_only_decode_error(bytes(data))


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(0, 300), st.binary(max_size=20))
def test_spliced_packets_only_raise_decode_error(seed: bytes, pos: int, insert: bytes) -> None:
    _decode_only_decode_error(seed[:pos] + insert + seed[pos:])


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_every_truncation_decodes_or_fails_cleanly(seed: int) -> None:
    data = SEEDS[seed]
    outcomes = set()
    for end in range(len(data) + 1):
        try:
            decode(data[:end])
            outcomes.add("ok")
        except DecodeError:
            outcomes.add("error")
    assert outcomes == {"ok", "error"}  # short prefixes fail, long ones decode


@FUZZ
@given(st.binary(max_size=400))
def test_frames_only_raise_decode_error(data: bytes) -> None:
    frame = build_frame(SEEDS[1], src_mac=MAC)
    for candidate in (data, frame[:34] + data, frame[: len(data) % len(frame)]):
        for verify in (True, False):
            try:
                parse_frame(candidate, verify_checksums=verify)
            except DecodeError:
                pass


@FUZZ
@given(st.binary(max_size=300))
def test_core_never_raises_on_garbage(data: bytes) -> None:
    class Rng:
        def getrandbits(self, k: int) -> int:
            return 0x11223344

        def uniform(self, a: float, b: float) -> float:
            return 0.0

    core = DhcpClientCore(ClientConfig(mac=MAC), Rng())
    core.start(0.0)
    core.receive_payload(SEEDS[2][:240] + data, 1.0)
    core.receive_payload(data, 1.0)
    dropped = sum(core.counters["dropped"].values())
    assert dropped + core.counters["received"].get("ACK", 0) >= 1


# --------------------------------------------------------------- round trips


messages = st.builds(
    DhcpMessage,
    op=st.sampled_from([BOOTREQUEST, BOOTREPLY]),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 0xFFFF),
    flags=st.sampled_from([0, 0x8000]),
    ciaddr=ipv4,
    yiaddr=ipv4,
    siaddr=ipv4,
    giaddr=ipv4,
    chaddr=st.binary(min_size=0, max_size=16),
    hops=st.integers(0, 255),
    message_type=st.none() | st.integers(1, 13),
    subnet_mask=st.none()
    | st.integers(0, 32).map(
        lambda n: ".".join(
            str(((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF) >> s & 0xFF) for s in (24, 16, 8, 0)
        )
    ),
    routers=st.lists(ipv4, max_size=3).map(tuple),
    dns_servers=st.lists(ipv4, max_size=3).map(tuple),
    hostname=st.none() | printable,
    domain_name=st.none() | printable,
    mtu=st.none() | st.integers(68, 0xFFFF),
    broadcast_address=st.none() | ipv4,
    ntp_servers=st.lists(ipv4, max_size=2).map(tuple),
    requested_ip=st.none() | ipv4,
    lease_time=st.none() | st.integers(0, 2**32 - 1),
    server_id=st.none() | ipv4,
    parameter_request_list=st.lists(st.integers(1, 254), max_size=20).map(tuple),
    message=st.none() | st.text(max_size=30).filter(lambda s: "\x00" not in s),
    max_message_size=st.none() | st.integers(576, 0xFFFF),
    renewal_time=st.none() | st.integers(0, 2**32 - 1),
    rebinding_time=st.none() | st.integers(0, 2**32 - 1),
    vendor_class=st.none() | st.binary(min_size=1, max_size=300),
    client_id=st.none() | st.binary(min_size=2, max_size=40),
    rapid_commit=st.booleans(),
    domain_search=st.lists(domain, max_size=12).map(tuple),
    classless_routes=st.lists(st.tuples(prefix, ipv4), max_size=6).map(tuple),
    options=st.dictionaries(
        st.integers(1, 254).filter(lambda c: c not in TYPED_CODES),
        st.binary(max_size=300),
        max_size=4,
    ),
)


@FUZZ
@given(messages)
def test_encode_decode_round_trip(msg: DhcpMessage) -> None:
    back = decode(encode(msg))
    assert back.without_raw() == msg.without_raw()
    # raw options (codes without a typed field) come back unchanged
    for code, value in msg.options.items():
        assert back.options[code] == value


@FUZZ
@given(st.lists(domain, min_size=1, max_size=20))
def test_domain_search_round_trip(names: list[str]) -> None:
    assert decode_domain_search(encode_domain_search(names)) == tuple(names)


@FUZZ
@given(st.lists(st.tuples(prefix, ipv4), min_size=1, max_size=10))
def test_classless_routes_round_trip(routes: list[tuple[str, str]]) -> None:
    assert decode_classless_routes(encode_classless_routes(routes)) == tuple(routes)
