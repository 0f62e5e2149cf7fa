"""DHCPv4 codec tests: captures from tcpdump and pyroute2 as oracles.

Expected values are copied from tcpdump's ``.out`` files (tcpdump commit in
``shared/testdata/tcpdump/SOURCE_COMMIT``) and, for the pyroute2 captures
that have no text decode, from pyroute2's ``tests/test_linux/test_dhcp/
test_parser.py`` expectations and the packet bytes.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from pathlib import Path
import struct

import pytest
from routerd_dhcpv4.codec import BOOTREPLY
from routerd_dhcpv4.codec import BOOTREQUEST
from routerd_dhcpv4.codec import DecodeError
from routerd_dhcpv4.codec import DhcpMessage
from routerd_dhcpv4.codec import MessageType
from routerd_dhcpv4.codec import RequestKind
from routerd_dhcpv4.codec import build_decline
from routerd_dhcpv4.codec import build_discover
from routerd_dhcpv4.codec import build_frame
from routerd_dhcpv4.codec import build_release
from routerd_dhcpv4.codec import build_request
from routerd_dhcpv4.codec import client_id_from_mac
from routerd_dhcpv4.codec import client_id_rfc4361
from routerd_dhcpv4.codec import decode
from routerd_dhcpv4.codec import decode_classless_routes
from routerd_dhcpv4.codec import decode_domain_search
from routerd_dhcpv4.codec import encode
from routerd_dhcpv4.codec import encode_classless_routes
from routerd_dhcpv4.codec import encode_domain_search
from routerd_dhcpv4.codec import mac_to_str
from routerd_dhcpv4.codec import parse_client_id
from routerd_dhcpv4.codec import parse_frame

Frames = Callable[[str], list[bytes]]

# file -> (frames, decoded strictly, DecodeError strictly, decoded leniently
# among those errors).  Frames that are not IPv4/UDP to or from port 67 are
# not DHCP (ARP, ICMP, IPv6) and count in none of the last three.
CAPTURES: dict[str, tuple[int, int, int, int]] = {
    "tcpdump/bootp_asan.pcap": (1, 0, 0, 0),
    "tcpdump/bootp_asan-2.pcap": (1, 0, 0, 0),
    "tcpdump/dhcp-mud.pcap": (2, 2, 0, 0),
    "tcpdump/dhcp-option-108.pcapng": (2, 2, 0, 0),
    "tcpdump/dhcp-option-33.pcap": (5, 5, 0, 0),
    "tcpdump/dhcp-rfc3004.pcap": (4, 4, 0, 0),
    "tcpdump/dhcp-rfc4388.pcap": (54, 34, 2, 0),
    "tcpdump/dhcp-rfc5859.pcap": (4, 4, 0, 0),
    "tcpdump/dhcpv4v6-rfc5970-rfc8572.pcap": (14, 4, 0, 0),
    "pyroute2-dhcp/test_parser__test_android_reboot_request.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_parser__test_android_tethering_renew.pcap": (2, 2, 0, 0),
    "pyroute2-dhcp/test_parser__test_decode_simple_lease_process.pcap": (4, 4, 0, 0),
    "pyroute2-dhcp/test_parser__test_huawei_discover_option_148.pcap": (2, 2, 0, 0),
    "pyroute2-dhcp/test_parser__test_invalid_client_id_option.pcap": (1, 0, 1, 1),
    "pyroute2-dhcp/test_parser__test_invalid_router_option.pcap": (1, 0, 1, 1),
    "pyroute2-dhcp/test_parser__test_netatmo_discover_request.pcap": (3, 3, 0, 0),
    "pyroute2-dhcp/test_parser__test_truncated_packet.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_parser__test_washing_machine_request.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_parser__test_wii_discover.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_unit__test_ack_invalid_request_state.pcap": (2, 2, 0, 0),
    "pyroute2-dhcp/test_unit__test_get_and_renew_lease.pcap": (3, 3, 0, 0),
    "pyroute2-dhcp/test_unit__test_init_reboot_nak.pcap": (3, 3, 0, 0),
    "pyroute2-dhcp/test_unit__test_offer_wrong_xid.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_unit__test_requesting_timeout.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_unit__test_truncated_packet.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_unit__test_unexpected_dhcp_message.pcap": (1, 1, 0, 0),
    "pyroute2-dhcp/test_unit__test_unknown_message.pcap": (1, 1, 0, 0),
}


def _dhcp_payloads(frames: list[bytes]) -> list[bytes]:
    """UDP payloads of the frames that parse and use port 67.

    pyroute2's captures were edited by hand (xids, T1), so their UDP
    checksums are stale: checksums are not verified here.
    """
    out = []
    for frame in frames:
        try:
            parsed = parse_frame(frame, verify_checksums=False)
        except DecodeError:
            continue
        if 67 in (parsed.udp_sport, parsed.udp_dport):
            out.append(parsed.payload)
    return out


def _messages(frames: Frames, name: str, *, strict: bool = True) -> list[DhcpMessage]:
    return [decode(p, strict=strict) for p in _dhcp_payloads(frames(name))]


def _ip4(*parts: int) -> bytes:
    return bytes(parts)


# --------------------------------------------------------------- every capture


def test_capture_table_lists_every_dhcpv4_capture(testdata_dir: Path) -> None:
    found = {
        f"tcpdump/{p.name}"
        for p in (testdata_dir / "tcpdump").iterdir()
        if p.suffix in (".pcap", ".pcapng") and (p.name.startswith(("bootp", "dhcp-", "dhcpv4")))
    }
    found |= {
        f"pyroute2-dhcp/{p.name}"
        for p in (testdata_dir / "pyroute2-dhcp").iterdir()
        if p.suffix == ".pcap"
    }
    assert found == set(CAPTURES)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_capture_decodes_or_fails_cleanly(frames: Frames, name: str) -> None:
    all_frames = frames(name)
    total, decoded, failed, lenient = 0, 0, 0, 0
    for payload in _dhcp_payloads(all_frames):
        try:
            msg = decode(payload)
        except DecodeError as exc:
            assert str(exc)  # a reason is given
            failed += 1
            try:
                decode(payload, strict=False)
            except DecodeError:
                pass
            else:
                lenient += 1
            continue
        assert msg.op in (BOOTREQUEST, BOOTREPLY)
        decoded += 1
    total = len(all_frames)
    assert (total, decoded, failed, lenient) == CAPTURES[name]


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_decoded_capture_messages_survive_reencoding(frames: Frames, name: str) -> None:
    for payload in _dhcp_payloads(frames(name)):
        try:
            msg = decode(payload)
        except DecodeError:
            continue
        again = decode(encode(msg))
        assert again.without_raw() == msg.without_raw()
        assert {k: v for k, v in again.options.items() if k != 52} == {
            k: v for k, v in msg.options.items() if k != 52
        }


# --------------------------------------------------------------- tcpdump .out


def test_bootp_asan_truncated_frames_fail_cleanly(frames: Frames) -> None:
    for name in ("tcpdump/bootp_asan.pcap", "tcpdump/bootp_asan-2.pcap"):
        (frame,) = frames(name)
        # .out: "length 60951 ... [|bootp]": the IP length exceeds the frame
        with pytest.raises(DecodeError, match="IPv4 total length 60951"):
            parse_frame(frame)
        # and the bytes that are there are no DHCP message either
        with pytest.raises(DecodeError, match="truncated"):
            decode(frame[42:])


def test_dhcp_mud_request_and_ack(frames: Frames) -> None:
    request, ack = _messages(frames, "tcpdump/dhcp-mud.pcap")
    assert request.op == BOOTREQUEST
    assert request.xid == 0x68C4847
    assert request.hops == 1
    assert request.flags == 0
    assert request.message_type == MessageType.REQUEST
    assert request.ciaddr == "62.12.173.123"
    assert request.giaddr == "62.12.173.121"
    assert mac_to_str(request.chaddr) == "b8:27:eb:b8:53:c8"
    assert request.client_id == bytes.fromhex("01b827ebb853c8")
    assert parse_client_id(request.client_id).hwaddr == bytes.fromhex("b827ebb853c8")
    assert request.max_message_size == 1472
    assert request.options[161] == (b"https://mudctl.example.com/.well-known/mud/v1/rasbp101")
    assert request.vendor_class == b"dhcpcd-6.11.5:Linux-4.1.18-v7+:armv7l:BCM2709"
    assert request.hostname == "raspberrypi"
    assert request.options[145] == b"\x01"
    assert request.parameter_request_list == (
        1, 121, 33, 3, 6, 12, 15, 28, 42, 51, 54, 58, 59, 100, 101, 119,
    )  # fmt: skip

    assert ack.op == BOOTREPLY
    assert ack.xid == 0x68C4847
    assert ack.message_type == MessageType.ACK
    assert (ack.ciaddr, ack.yiaddr) == ("62.12.173.123", "62.12.173.123")
    assert ack.siaddr == "62.12.173.114"
    assert ack.giaddr == "62.12.173.121"
    assert ack.server_id == "62.12.173.114"
    assert ack.lease_time == 600
    assert ack.subnet_mask == "255.255.255.248"
    assert ack.prefixlen == 29
    assert ack.routers == ("62.12.173.121",)
    assert ack.dns_servers == ("62.12.173.114",)
    assert ack.domain_name == "ofcourseimright.com"
    assert ack.options[101] == b"Europe/Berlin"


def test_dhcp_option_108_pcapng(frames: Frames) -> None:
    discover, offer = _messages(frames, "tcpdump/dhcp-option-108.pcapng")
    assert discover.xid == offer.xid == 0x9EDF45B0
    assert discover.message_type == MessageType.DISCOVER
    assert mac_to_str(discover.chaddr) == "42:b4:44:b4:f0:ee"
    assert discover.parameter_request_list == (
        1, 121, 3, 6, 15, 108, 114, 119, 252, 95, 44, 46,
    )  # fmt: skip
    assert discover.max_message_size == 1500
    assert discover.client_id == bytes.fromhex("0142b444b4f0ee")
    assert discover.lease_time == 7776000
    assert discover.hostname == "MacBookPro"

    assert offer.message_type == MessageType.OFFER
    assert offer.hops == 1
    assert offer.yiaddr == "10.56.42.232"
    assert offer.giaddr == "10.56.0.2"
    assert offer.subnet_mask == "255.255.0.0"
    assert offer.routers == ("10.56.0.1",)
    assert offer.dns_servers == ("31.130.229.6", "31.130.229.7")
    assert offer.hostname == "macbookpro"
    assert offer.domain_name == "meeting.ietf.org"
    assert offer.lease_time == 3600
    assert offer.server_id == "31.130.229.6"
    assert offer.client_id == bytes.fromhex("0142b444b4f0ee")
    assert struct.unpack("!I", offer.options[108]) == (900,)  # IPv6-Only-Preferred


def test_dhcp_option_33_static_routes_stay_raw(frames: Frames) -> None:
    offers = _messages(frames, "tcpdump/dhcp-option-33.pcap")
    expected_33 = [
        _ip4(10, 0, 0, 1) + _ip4(10, 0, 0, 2),
        _ip4(10, 0, 0, 1, 10, 0, 0, 2, 10, 0, 0, 3, 10, 0, 0, 4),
        _ip4(10, 0, 0, 1, 10, 0, 0, 2, 10, 0, 0, 3, 10, 0, 0, 4) + _ip4(10, 0, 0, 5, 10, 0, 0, 6),
    ]
    for offer in offers:
        assert offer.xid == 0x12345678
        assert offer.message_type == MessageType.OFFER
        assert offer.yiaddr == "192.168.1.100"
        assert offer.siaddr == "192.168.1.1"
        assert offer.server_id == "192.168.1.1"
        assert offer.lease_time == 86400
        assert mac_to_str(offer.chaddr) == "00:11:22:33:44:55"
    assert [o.options[33] for o in offers[:3]] == expected_33
    # ".out: length 3 [length != N x 8 bytes]" and "length 0": kept raw,
    # the message still decodes (option 33 is not one a client uses).
    assert len(offers[3].options[33]) == 3
    assert offers[4].options[33] == b""


def test_dhcp_rfc3004_user_class(frames: Frames) -> None:
    discover, offer, request, ack = _messages(frames, "tcpdump/dhcp-rfc3004.pcap")
    assert {m.xid for m in (discover, offer, request, ack)} == {0x6E32864}
    assert discover.requested_ip == "192.168.1.4"
    assert discover.parameter_request_list == (1, 28, 2, 3, 15, 6, 12)
    user_class = discover.options[77]
    assert len(user_class) == 37
    assert user_class[:8] == b"\x07subopt1"
    assert offer.yiaddr == "192.168.1.4"
    assert offer.server_id == "192.168.1.1"
    assert offer.lease_time == 86400
    assert offer.domain_name == "Home"
    assert request.server_id == "192.168.1.1"
    assert request.requested_ip == "192.168.1.4"
    assert ack.message_type == MessageType.ACK
    assert ack.routers == ack.dns_servers == ("192.168.1.1",)


def test_dhcp_rfc4388_leasequery_and_bad_cookies(frames: Frames) -> None:
    all_frames = frames("tcpdump/dhcp-rfc4388.pcap")
    payloads = [parse_frame(f).payload for f in (all_frames[9], all_frames[42])]
    active = decode(payloads[0])
    # .out frame 10: LeaseActive with T1/T2 and Associated-IP (92)
    assert active.message_type == MessageType.LEASEACTIVE
    assert active.message_type_name == "LEASEACTIVE"
    assert active.xid == 1
    assert active.ciaddr == "10.30.4.4"
    assert active.server_id == "10.40.2.3"
    assert active.lease_time == 43187
    assert active.renewal_time == 21587
    assert active.rebinding_time == 37787
    assert active.options[92] == _ip4(10, 50, 4, 4)
    assert struct.unpack("!I", active.options[91]) == (13,)
    # .out frames 43 and 44: "Vendor-#0x53633501", "Vendor-#0x82536335"
    with pytest.raises(DecodeError, match="magic cookie 0x53633501"):
        decode(payloads[1])
    with pytest.raises(DecodeError, match="magic cookie 0x82536335"):
        decode(parse_frame(all_frames[43]).payload)


def test_dhcp_rfc5859_tftp_servers(frames: Frames) -> None:
    _, offer, _, ack = _messages(frames, "tcpdump/dhcp-rfc5859.pcap")
    for msg in (offer, ack):
        assert msg.xid == 0xDE549277
        assert msg.lease_time == 43200
        assert msg.options[150] == _ip4(192, 168, 1, 10, 192, 168, 1, 11)
        assert msg.prefixlen == 24


def test_dhcpv4v6_arista(frames: Frames) -> None:
    discover, offer, _, ack = _messages(frames, "tcpdump/dhcpv4v6-rfc5970-rfc8572.pcap")
    assert discover.xid == 0x796A827D
    assert discover.vendor_class == b"Arista"
    # .out: Client-ID length 6: "^@D^A^@^@" (type 0, then the 5 bytes)
    assert discover.client_id == b"\x00\x00D\x01\x00\x00"
    assert parse_client_id(discover.client_id).type == 0
    assert discover.parameter_request_list == (26, 1, 28, 3, 15, 6, 7, 12, 143, 121)
    for msg in (offer, ack):
        assert msg.yiaddr == "10.10.0.4"
        assert msg.server_id == "10.10.0.2"
        assert msg.lease_time == 28800
        assert msg.mtu == 1500
        assert msg.domain_name == "aristanetworks.com"
        assert len(msg.options[143]) == 141
        assert msg.options[143][2:28] == b"https://sztp1.download.com"


# --------------------------------------------------------------- pyroute2


def test_pyroute2_simple_lease_process(frames: Frames) -> None:
    name = "pyroute2-dhcp/test_parser__test_decode_simple_lease_process.pcap"
    discover, offer, request, ack = _messages(frames, name)
    assert {m.xid for m in (discover, offer, request, ack)} == {0x22334455}
    assert discover.broadcast and offer.broadcast
    assert discover.lease_time == 0xFFFFFFFF
    assert discover.parameter_request_list == (1, 3, 6, 15)
    for msg in (offer, ack):
        assert msg.lease_time == 43200
        assert msg.dns_servers == msg.routers == ("192.168.94.254",)
        assert msg.server_id == "192.168.94.254"
        assert msg.subnet_mask == "255.255.255.0"
        assert msg.yiaddr == "192.168.94.130"
    assert request.hostname == "LIFX Color 1000"
    assert request.requested_ip == "192.168.94.130"


def test_pyroute2_android_reboot_request(frames: Frames) -> None:
    name = "pyroute2-dhcp/test_parser__test_android_reboot_request.pcap"
    (request,) = _messages(frames, name)
    assert request.message_type == MessageType.REQUEST
    assert not request.broadcast
    assert mac_to_str(request.chaddr) == "32:7a:80:aa:a7:c7"
    assert request.client_id == client_id_from_mac(bytes.fromhex("327a80aaa7c7"))
    assert request.hostname == "TFY-LX1"
    assert request.max_message_size == 1500
    assert request.requested_ip == "192.168.94.191"
    assert request.server_id is None  # INIT-REBOOT form
    assert request.vendor_class == b"android-dhcp-13"
    assert request.parameter_request_list == (
        1, 3, 6, 15, 26, 28, 51, 58, 59, 43, 114, 108,
    )  # fmt: skip


def test_pyroute2_huawei_option_148(frames: Frames) -> None:
    name = "pyroute2-dhcp/test_parser__test_huawei_discover_option_148.pcap"
    discover, offer = _messages(frames, name)
    assert discover.vendor_class == b"huawei AirEngine5761-11"
    assert offer.options[148].startswith(b"agilemode=agile-cloud;")
    assert offer.subnet_mask == "255.255.240.0"
    assert offer.prefixlen == 20
    assert (offer.lease_time, offer.renewal_time, offer.rebinding_time) == (
        604800,
        302400,
        529200,
    )


def test_pyroute2_invalid_router_option(frames: Frames) -> None:
    name = "pyroute2-dhcp/test_parser__test_invalid_router_option.pcap"
    (payload,) = _dhcp_payloads(frames(name))
    with pytest.raises(DecodeError, match="option 3"):
        decode(payload)
    # pyroute2: "Last opt. has an invalid length; the rest of the packet is
    # decoded."  The lenient mode does the same.
    ack = decode(payload, strict=False)
    assert ack.message_type == MessageType.ACK
    assert ack.malformed_options == (3,)
    assert ack.routers == ()
    assert ack.broadcast_address == "192.168.42.255"
    assert ack.domain_name == "toulouse.fourcot.fr"
    assert ack.lease_time == 604800
    assert ack.dns_servers == ("192.168.42.10",)
    assert (ack.renewal_time, ack.rebinding_time) == (302400, 529200)
    assert ack.server_id == "192.168.42.10"
    assert ack.subnet_mask == "255.255.255.0"


def test_pyroute2_invalid_client_id_option(frames: Frames) -> None:
    name = "pyroute2-dhcp/test_parser__test_invalid_client_id_option.pcap"
    (payload,) = _dhcp_payloads(frames(name))
    with pytest.raises(DecodeError, match="option 4"):
        decode(payload)
    request = decode(payload, strict=False)
    # the client id claims 8 bytes for a 6-byte MAC; what follows is garbage
    assert request.client_id == bytes.fromhex("01a483e7b9da1f32")
    assert request.malformed_options == (4,)
    assert request.max_message_size == 1500


def test_pyroute2_unit_captures(frames: Frames) -> None:
    (offer, ack1, ack2) = _messages(
        frames, "pyroute2-dhcp/test_unit__test_get_and_renew_lease.pcap"
    )
    assert (offer.xid, ack1.xid, ack2.xid) == (0x12345675, 0x12345674, 0x12345677)
    assert offer.yiaddr == ack1.yiaddr == "192.168.186.73"
    assert (ack1.lease_time, ack1.renewal_time, ack1.rebinding_time) == (120, 1, 105)
    assert ack2.ciaddr == "192.168.186.73"
    (nak, _, _) = _messages(frames, "pyroute2-dhcp/test_unit__test_init_reboot_nak.pcap")
    assert nak.message_type == MessageType.NAK
    assert nak.yiaddr == "0.0.0.0"
    # the symlinked capture resolves to the requesting-timeout OFFER
    (offer2,) = _messages(frames, "pyroute2-dhcp/test_unit__test_offer_wrong_xid.pcap")
    assert offer2.xid == 0xDD435A25


# --------------------------------------------------------------- builders


MAC = bytes.fromhex("020000000001")


def test_discover_round_trip_and_fields() -> None:
    msg = build_discover(
        xid=0xCAFEBABE,
        chaddr=MAC,
        secs=70000,
        broadcast=True,
        client_id=client_id_from_mac(MAC),
        hostname="router",
        vendor_class=b"routerd",
        parameter_request_list=(1, 3, 6, 121),
        requested_ip="192.0.2.9",
        rapid_commit=True,
        max_message_size=1500,
    )
    raw = encode(msg)
    assert len(raw) == 300  # BOOTP minimum size
    assert raw[240:243] == b"\x35\x01\x01"  # option 53 first
    back = decode(raw)
    assert back.without_raw() == msg
    assert back.secs == 0xFFFF  # clamped
    assert back.broadcast
    assert back.rapid_commit and back.options[80] == b""
    assert back.message_type_name == "DISCOVER"


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        (RequestKind.SELECTING, {"server_id": "192.0.2.1", "requested_ip": "192.0.2.9"}),
        (RequestKind.INIT_REBOOT, {"requested_ip": "192.0.2.9"}),
        (RequestKind.RENEWING, {"ciaddr": "192.0.2.9"}),
        (RequestKind.REBINDING, {"ciaddr": "192.0.2.9"}),
    ],
)
def test_request_forms_round_trip(kind: RequestKind, kwargs: dict[str, str]) -> None:
    msg = build_request(kind, xid=7, chaddr=MAC, **kwargs)  # type: ignore[arg-type]
    back = decode(encode(msg))
    assert back.without_raw() == msg
    assert back.server_id == kwargs.get("server_id")
    assert back.requested_ip == kwargs.get("requested_ip")
    assert back.ciaddr == kwargs.get("ciaddr", "0.0.0.0")


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        (RequestKind.SELECTING, {"requested_ip": "192.0.2.9"}),
        (RequestKind.INIT_REBOOT, {"requested_ip": "1.2.3.4", "server_id": "1.1.1.1"}),
        (RequestKind.RENEWING, {"ciaddr": "1.2.3.4", "server_id": "1.1.1.1"}),
        (RequestKind.REBINDING, {"requested_ip": "1.2.3.4"}),
    ],
)
def test_request_forms_reject_wrong_fields(kind: RequestKind, kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="needs"):
        build_request(kind, xid=7, chaddr=MAC, **kwargs)  # type: ignore[arg-type]


def test_decline_and_release() -> None:
    decline = decode(
        encode(build_decline(xid=1, chaddr=MAC, requested_ip="192.0.2.9", server_id="192.0.2.1"))
    )
    assert decline.message_type == MessageType.DECLINE
    assert (decline.requested_ip, decline.server_id) == ("192.0.2.9", "192.0.2.1")
    assert decline.ciaddr == "0.0.0.0"
    release = decode(
        encode(build_release(xid=2, chaddr=MAC, ciaddr="192.0.2.9", server_id="192.0.2.1"))
    )
    assert release.message_type == MessageType.RELEASE
    assert release.ciaddr == "192.0.2.9"
    assert release.requested_ip is None
    assert release.parameter_request_list == ()


def test_full_ack_round_trip_with_long_options() -> None:
    search = tuple(f"d{i}.example.com" for i in range(40))  # > 255 bytes
    routes = (("0.0.0.0/0", "192.0.2.1"), ("10.0.0.0/8", "192.0.2.2"))
    msg = DhcpMessage(
        op=BOOTREPLY,
        xid=99,
        yiaddr="192.0.2.9",
        siaddr="192.0.2.1",
        chaddr=MAC,
        message_type=MessageType.ACK,
        subnet_mask="255.255.255.0",
        routers=("192.0.2.1",),
        dns_servers=("192.0.2.53", "192.0.2.54"),
        hostname="h",
        domain_name="example.com",
        mtu=1492,
        broadcast_address="192.0.2.255",
        ntp_servers=("192.0.2.123",),
        lease_time=3600,
        server_id="192.0.2.1",
        message="ok",
        renewal_time=1800,
        rebinding_time=3150,
        domain_search=search,
        classless_routes=routes,
        options={224: b"x" * 300, 3: b"ignored: the typed field wins"},
    )
    raw = encode(msg)
    # RFC 3396: option 119 and 224 are split into several instances
    assert raw.count(b"\xe0\xff" + b"x" * 10) == 1
    back = decode(raw)
    assert back.domain_search == search
    assert back.classless_routes == routes
    assert back.options[224] == b"x" * 300
    assert back.routers == ("192.0.2.1",)
    assert back.without_raw() == dataclasses.replace(msg, options={})


# --------------------------------------------------------------- malformed


def _header(op: int = BOOTREPLY, magic: int = 0x63825363) -> bytearray:
    raw = bytearray(encode(DhcpMessage(op=op, xid=1, chaddr=MAC), pad_to=0)[:236])
    raw += struct.pack("!I", magic)
    return raw


def test_decode_rejects_short_and_bad_headers() -> None:
    with pytest.raises(DecodeError, match="truncated"):
        decode(b"")
    with pytest.raises(DecodeError, match="truncated"):
        decode(bytes(_header())[:239])
    with pytest.raises(DecodeError, match="magic cookie"):
        decode(bytes(_header(magic=0x63825364)))
    bad_op = _header()
    bad_op[0] = 3
    with pytest.raises(DecodeError, match="bad op 3"):
        decode(bytes(bad_op))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (b"\x35", "truncated"),  # code without length
        (b"\x35\x05\x01", "truncated"),  # length past the end
        (b"\x35\x02\x01\x01", "message type"),
        (b"\x01\x04\xff\x00\xff\x00", "non-contiguous"),
        (b"\x03\x05\x01\x02\x03\x04\x05", "multiple of 4"),
        (b"\x33\x03\x00\x00\x01", "lease time"),
        (b"\x1a\x02\x00\x10", "mtu"),
        (b"\x39\x02\x00\x10", "below the minimum 576"),
        (b"\x0f\x04a\nb\x00", "printable"),  # newline in the domain name
        (b"\x3d\x01\x01", "client identifier"),
        (b"\x50\x01\x00", "rapid commit"),
        (b"\x79\x05\x21\x0a\x00\x00\x01", "width 33"),
        (b"\x79\x04\x18\x0a\x00\x00", "truncated route"),
        (b"\x77\x02\xc0\x00", "pointer"),  # points to itself
        (b"\x77\x03\x01a\xc0", "truncated compression pointer"),
        (b"\x77\x03\x05ab", "truncated label"),
        (b"\x77\x02\x40\x00", "reserved label type"),
        (b"\x34\x01\x04", "overload"),
    ],
)
def test_decode_rejects_bad_options(options: bytes, match: str) -> None:
    raw = bytes(_header()) + b"\x35\x01\x05" + options + b"\xff"
    if options.startswith(b"\x35"):
        raw = bytes(_header()) + options
    with pytest.raises(DecodeError, match=match):
        decode(raw)


def test_lenient_decode_keeps_raw_bad_values() -> None:
    raw = bytes(_header()) + b"\x35\x01\x05\x03\x03\x01\x02\x03\x33\x04\x00\x00\x00\x3c\xff"
    msg = decode(raw, strict=False)
    assert msg.routers == ()
    assert msg.options[3] == b"\x01\x02\x03"
    assert msg.malformed_options == (3,)
    assert msg.lease_time == 60


def test_option_overload_and_rfc3396_concatenation() -> None:
    raw = _header()
    # file field (offset 108) carries option 15, sname (offset 44) option 6
    file_opts = b"\x0f\x03abc\xff"
    sname_opts = b"\x06\x04\x01\x02\x03\x04"
    raw[108 : 108 + len(file_opts)] = file_opts
    raw[44 : 44 + len(sname_opts)] = sname_opts
    raw += b"\x35\x01\x05\x34\x01\x03"
    raw += b"\x0c\x02ho\x0c\x02st"  # hostname split in two instances
    raw += b"\xff"
    msg = decode(bytes(raw))
    assert msg.domain_name == "abc"
    assert msg.dns_servers == ("1.2.3.4",)
    assert msg.hostname == "host"
    assert msg.sname == b"" and msg.file == b""


def test_missing_end_option_is_accepted() -> None:
    raw = bytes(_header()) + b"\x35\x01\x02\x36\x04\xc0\x00\x02\x01"
    msg = decode(raw)
    assert msg.message_type == MessageType.OFFER
    assert msg.server_id == "192.0.2.1"


def test_bootp_reply_without_dhcp_options() -> None:
    msg = decode(bytes(_header()) + b"\xff")
    assert msg.message_type is None
    assert msg.message_type_name == "BOOTP"


# --------------------------------------------------------------- option 119/121


def test_domain_search_rfc3397_example() -> None:
    # RFC 3397 §2 example: "eng.apple.com." and "marketing.apple.com."
    data = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert decode_domain_search(data) == ("eng.apple.com", "marketing.apple.com")
    assert encode_domain_search(["eng.apple.com", "marketing.apple.com"]) == data


@pytest.mark.parametrize(
    "data",
    [
        b"\xc0\x00",  # self loop
        b"\x01a\xc0\x00",  # points back at the label that leads here: loop
        b"\x01a\xc0\x05\x01b\x00",  # forward pointer
        b"\x01a\x00\x01b\xc0\x03",  # pointer to the start of the name holding it
    ],
)
def test_domain_search_rejects_pointer_loops(data: bytes) -> None:
    raw = bytes(_header()) + b"\x35\x01\x05\x77" + bytes([len(data)]) + data
    with pytest.raises(DecodeError, match="pointer"):
        decode(raw)


def test_domain_search_rejects_overlong_names() -> None:
    label = b"\x3f" + b"a" * 63
    data = label * 4 + b"\x00"  # 256 octets
    with pytest.raises(DecodeError, match="255"):
        decode(bytes(_header()) + b"\x77\xff" + data[:255] + b"\x77\x01" + data[255:])


def test_classless_routes_rfc3442_examples() -> None:
    # RFC 3442 §3 encodings: 0/0, 10/8, 10.17/16, 10.27.129/24, 10.229.0.128/25
    data = (
        b"\x00" + _ip4(192, 0, 2, 1)
        + b"\x08\x0a" + _ip4(192, 0, 2, 2)
        + b"\x10\x0a\x11" + _ip4(192, 0, 2, 3)
        + b"\x18\x0a\x1b\x81" + _ip4(192, 0, 2, 4)
        + b"\x19\x0a\xe5\x00\x80" + _ip4(0, 0, 0, 0)
    )  # fmt: skip
    routes = decode_classless_routes(data)
    assert routes == (
        ("0.0.0.0/0", "192.0.2.1"),
        ("10.0.0.0/8", "192.0.2.2"),
        ("10.17.0.0/16", "192.0.2.3"),
        ("10.27.129.0/24", "192.0.2.4"),
        ("10.229.0.128/25", "0.0.0.0"),
    )
    assert encode_classless_routes(routes) == data


# --------------------------------------------------------------- client id


def test_client_id_helpers() -> None:
    assert client_id_from_mac(MAC) == b"\x01" + MAC
    duid = bytes.fromhex("00010001") + b"\x00" * 4 + MAC  # DUID-LLT
    cid = client_id_rfc4361(0x01020304, duid)
    assert cid == b"\xff\x01\x02\x03\x04" + duid
    parsed = parse_client_id(cid)
    assert (parsed.type, parsed.iaid, parsed.duid) == (255, 0x01020304, duid)
    assert parse_client_id(b"\x01" + MAC).hwaddr == MAC
    with pytest.raises(ValueError):
        client_id_rfc4361(1 << 32, duid)
    with pytest.raises(ValueError):
        client_id_from_mac(b"")
    with pytest.raises(DecodeError):
        parse_client_id(b"\xff\x00")


# --------------------------------------------------------------- frames


def test_frame_round_trip_and_checksums() -> None:
    payload = encode(build_discover(xid=5, chaddr=MAC))
    frame = build_frame(payload, src_mac=MAC)
    assert frame[:6] == b"\xff" * 6
    assert frame[6:12] == MAC
    parsed = parse_frame(frame)
    assert parsed == ("0.0.0.0", "255.255.255.255", 68, 67, payload)
    unicast = build_frame(
        payload,
        src_mac=MAC,
        dst_mac=b"\x02" * 6,
        src_ip="192.0.2.9",
        dst_ip="192.0.2.1",
    )
    assert parse_frame(unicast)[:2] == ("192.0.2.9", "192.0.2.1")
    corrupt = bytearray(frame)
    corrupt[-1] ^= 0xFF  # payload byte: UDP checksum no longer matches
    with pytest.raises(DecodeError, match="UDP checksum"):
        parse_frame(bytes(corrupt))
    assert parse_frame(bytes(corrupt), verify_checksums=False).payload[-1] == 0xFF
    bad_ip = bytearray(frame)
    bad_ip[14 + 8] ^= 1  # TTL
    with pytest.raises(DecodeError, match="header checksum"):
        parse_frame(bytes(bad_ip))


def test_frame_rejects_non_dhcp_transport() -> None:
    frame = build_frame(b"x" * 10, src_mac=MAC)
    with pytest.raises(DecodeError, match="Ethernet"):
        parse_frame(frame[:10])
    arp = bytearray(frame)
    arp[12:14] = b"\x08\x06"
    with pytest.raises(DecodeError, match="not IPv4"):
        parse_frame(bytes(arp))
    frag = bytearray(frame)
    frag[14 + 6] |= 0x20  # MF
    with pytest.raises(DecodeError, match="fragment"):
        parse_frame(bytes(frag), verify_checksums=False)
    tcp = bytearray(frame)
    tcp[14 + 9] = 6
    with pytest.raises(DecodeError, match="not UDP"):
        parse_frame(bytes(tcp), verify_checksums=False)
    with pytest.raises(DecodeError, match="total length"):
        parse_frame(frame[:-3])
    vlan = frame[:12] + b"\x81\x00\x00\x05" + frame[12:]
    assert parse_frame(vlan).payload == b"x" * 10
    odd = build_frame(b"y" * 11, src_mac=MAC)  # odd length: checksum padding
    assert parse_frame(odd + b"\x00" * 7).payload == b"y" * 11  # Ethernet padding
    bad_udp_len = bytearray(odd)
    bad_udp_len[14 + 20 + 4 : 14 + 20 + 6] = b"\x00\x04"
    with pytest.raises(DecodeError, match="UDP length"):
        parse_frame(bytes(bad_udp_len), verify_checksums=False)
    bad_version = bytearray(odd)
    bad_version[14] = 0x65
    with pytest.raises(DecodeError, match="version"):
        parse_frame(bytes(bad_version))
