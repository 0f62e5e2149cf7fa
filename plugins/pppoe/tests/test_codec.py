"""The PPPoE and PPP codecs, checked against scapy as an independent oracle
(scapy is a test-only dependency: GPL, never imported by shipped code)."""

from __future__ import annotations

import hashlib

import pytest
from routerd_pppoe.codec import ETH_P_PPPOE_DISC
from routerd_pppoe.codec import Code
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.codec import Tag
from routerd_pppoe.codec import decode_discovery
from routerd_pppoe.codec import decode_session
from routerd_pppoe.codec import encode_discovery
from routerd_pppoe.codec import encode_session
from routerd_pppoe.codec import ethernet_frame
from routerd_pppoe.codec import parse_ethernet
from routerd_pppoe.pppcodec import ChapCode
from routerd_pppoe.pppcodec import LcpOption
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import chap_md5_response
from routerd_pppoe.pppcodec import decode_chap
from routerd_pppoe.pppcodec import decode_control
from routerd_pppoe.pppcodec import decode_options
from routerd_pppoe.pppcodec import decode_pap_reply
from routerd_pppoe.pppcodec import encode_chap_response
from routerd_pppoe.pppcodec import encode_control
from routerd_pppoe.pppcodec import encode_options
from routerd_pppoe.pppcodec import encode_pap_request
from routerd_pppoe.pppcodec import split_protocol

scapy_l2 = pytest.importorskip("scapy.layers.l2")
scapy_ppp = pytest.importorskip("scapy.layers.ppp")
Ether = scapy_l2.Ether

CLIENT = "02:00:00:00:00:01"
AC = "02:00:00:00:ac:01"


def _tags(*pairs: tuple[int, bytes]) -> object:
    return scapy_ppp.PPPoED_Tags(
        tag_list=[scapy_ppp.PPPoETag(tag_type=t, tag_value=v) for t, v in pairs]
    )


def test_scapy_pado_padded_to_60_bytes_decodes() -> None:
    frame = bytes(
        Ether(dst=CLIENT, src=AC)
        / scapy_ppp.PPPoED(code=0x07)
        / _tags((0x0102, b"ac-one"), (0x0101, b""), (0x0103, b"\x01\x02"), (0x0104, b"cookie"))
    )
    assert len(frame) < 60
    padded = frame + bytes(60 - len(frame))
    eth = parse_ethernet(padded)
    assert eth.ethertype == ETH_P_PPPOE_DISC and eth.src == bytes.fromhex("02000000ac01")
    pado = decode_discovery(eth.payload)
    assert pado.code == Code.PADO and pado.session_id == 0
    assert pado.ac_name == "ac-one" and pado.service_names == [""]
    assert pado.host_uniq == b"\x01\x02" and pado.first(Tag.AC_COOKIE) == b"cookie"
    assert len(pado.tags) == 4  # the padding is not a tag


def test_our_padr_parses_in_scapy() -> None:
    tags = [
        (Tag.SERVICE_NAME, b"internet"),
        (Tag.HOST_UNIQ, b"\xaa" * 8),
        (Tag.AC_COOKIE, b"c" * 20),
        (Tag.RELAY_SESSION_ID, b"r1"),
        (Tag.PPP_MAX_PAYLOAD, (1500).to_bytes(2, "big")),
    ]
    payload = encode_discovery(Code.PADR, 0, tags)
    frame = ethernet_frame(bytes.fromhex("02000000ac01"), bytes(6), ETH_P_PPPOE_DISC, payload)
    parsed = Ether(frame)
    disc = parsed[scapy_ppp.PPPoED]
    assert disc.code == 0x19 and disc.len == len(payload) - 6
    got = [(t.tag_type, bytes(t.tag_value)) for t in parsed[scapy_ppp.PPPoED_Tags].tag_list]
    assert got == [(int(t), v) for t, v in tags]


def test_end_of_list_stops_and_errors_are_reported() -> None:
    payload = encode_discovery(
        Code.PADS,
        0,
        [(Tag.SERVICE_NAME_ERROR, b"bad service\x07"), (Tag.END_OF_LIST, b""), (Tag.AC_NAME, b"x")],
    )
    pads = decode_discovery(payload)
    assert pads.errors() == [("SERVICE_NAME_ERROR", "bad service?")]
    assert not pads.has(Tag.AC_NAME)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x11\x07\x00", "shorter than a PPPoE header"),
        (b"\x21\x07\x00\x00\x00\x00", "VER/TYPE"),
        (b"\x11\x07\x00\x00\x00\x08\x01\x02\x00\x04", "runs past the frame"),
        (b"\x11\x07\x00\x00\x00\x03\x01\x02\x00", "truncated tag header"),
        (b"\x11\x07\x00\x00\x00\x06\x01\x02\x00\x09ab", "runs past the packet"),
        (b"\x11\x00\x12\x34\x00\x00", "not a discovery code"),
    ],
)
def test_malformed_discovery_raises_decode_error(payload: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_discovery(payload)


def test_session_frames_round_trip_and_match_scapy() -> None:
    lcp = encode_control(1, 7, encode_options([(LcpOption.MRU, (1492).to_bytes(2, "big"))]))
    payload = encode_session(0x1234, Protocol.LCP.to_bytes(2, "big") + lcp)
    assert decode_session(payload + b"\0\0") == (0x1234, Protocol.LCP.to_bytes(2, "big") + lcp)
    scapy_frame = Ether(ethernet_frame(bytes(6), bytes(6), 0x8864, payload))
    assert scapy_frame[scapy_ppp.PPPoE].sessionid == 0x1234
    conf = scapy_frame[scapy_ppp.PPP_LCP_Configure]
    assert conf.code == 1 and conf.id == 7
    assert conf.options[0].max_recv_unit == 1492
    with pytest.raises(DecodeError):
        decode_session(encode_discovery(Code.PADT, 1))


def test_scapy_lcp_request_decodes() -> None:
    pkt = scapy_ppp.PPP_LCP_Configure(
        code=1,
        id=3,
        options=[
            scapy_ppp.PPP_LCP_MRU_Option(max_recv_unit=1492),
            scapy_ppp.PPP_LCP_Auth_Protocol_Option(auth_protocol=0xC223, algorithm=5),
            scapy_ppp.PPP_LCP_Magic_Number_Option(magic_number=0x01020304),
        ],
    )
    packet = decode_control(bytes(pkt))
    assert (packet.code, packet.identifier) == (1, 3)
    assert decode_options(packet.data) == [
        (LcpOption.MRU, (1492).to_bytes(2, "big")),
        (LcpOption.AUTH_PROTOCOL, bytes.fromhex("c22305")),
        (LcpOption.MAGIC_NUMBER, bytes.fromhex("01020304")),
    ]


def test_control_packet_padding_is_ignored_and_bad_lengths_raise() -> None:
    assert decode_control(b"\x09\x01\x00\x08abcdPADDING").data == b"abcd"
    for bad in (b"\x09\x01\x00", b"\x09\x01\x00\x03", b"\x09\x01\x00\x09abcd"):
        with pytest.raises(DecodeError):
            decode_control(bad)
    for bad in (b"\x01", b"\x01\x01", b"\x01\x05\x00"):
        with pytest.raises(DecodeError):
            decode_options(bad)


def test_protocol_field_forms() -> None:
    assert split_protocol(b"\xc0\x21abc") == (0xC021, b"abc")
    assert split_protocol(b"\xff\x03\xc0\x21abc") == (0xC021, b"abc")  # Address/Control sent anyway
    assert split_protocol(b"\x21\x45") == (0x21, b"\x45")  # compressed (RFC 1661 §6.5)
    for bad in (b"", b"\xc0", b"\xc0\x20x"):
        with pytest.raises(DecodeError):
            split_protocol(bad)


def test_pap_request_matches_scapy() -> None:
    ours = encode_pap_request(9, b"user@isp", b"pw")
    pap = scapy_ppp.PPP_PAP(ours)
    assert pap.code == 1 and pap.id == 9
    assert pap.username == b"user@isp" and pap.password == b"pw"
    assert decode_pap_reply(decode_control(encode_control(2, 9, b"\x05Hello"))) == "Hello"
    assert decode_pap_reply(decode_control(encode_control(3, 9, b""))) == ""
    # A Msg-Length longer than the packet only cuts the text.
    assert decode_pap_reply(decode_control(encode_control(3, 9, b"\x40no"))) == "no"


def test_chap_md5_response_matches_scapy_and_rfc_1994() -> None:
    challenge = bytes(range(16))
    value = chap_md5_response(0x21, b"secret", challenge)
    assert value == hashlib.md5(b"\x21secret" + challenge).digest()
    wire = encode_chap_response(0x21, value, b"user")
    chap = scapy_ppp.PPP_CHAP_ChallengeResponse(wire)
    assert (
        chap.code == 2 and chap.id == 0x21 and chap.value == value and chap.optional_name == b"user"
    )
    scapy_challenge = bytes(
        scapy_ppp.PPP_CHAP_ChallengeResponse(code=1, id=0x21, value=challenge, optional_name=b"ac")
    )
    got = decode_chap(decode_control(scapy_challenge))
    assert (got.code, got.identifier, got.value, got.name) == (
        ChapCode.CHALLENGE,
        0x21,
        challenge,
        b"ac",
    )
    with pytest.raises(DecodeError):
        decode_chap(decode_control(encode_control(1, 1, b"\x20short")))
