"""Codec against tcpdump's captures (expected values copied from the .out files)
and hand-built malformed inputs."""

from __future__ import annotations

import os
from pathlib import Path
import struct
import uuid

import dpkt
import pytest
from routerd_dhcpv6.codec import AftrName
from routerd_dhcpv6.codec import ClientId
from routerd_dhcpv6.codec import DecodeError
from routerd_dhcpv6.codec import DnsServers
from routerd_dhcpv6.codec import DomainList
from routerd_dhcpv6.codec import ElapsedTime
from routerd_dhcpv6.codec import IaAddress
from routerd_dhcpv6.codec import IaNa
from routerd_dhcpv6.codec import IaPd
from routerd_dhcpv6.codec import IaPrefix
from routerd_dhcpv6.codec import IaTa
from routerd_dhcpv6.codec import Message
from routerd_dhcpv6.codec import NtpServer
from routerd_dhcpv6.codec import NtpSuboption
from routerd_dhcpv6.codec import OptionRequest
from routerd_dhcpv6.codec import Preference
from routerd_dhcpv6.codec import RapidCommit
from routerd_dhcpv6.codec import ReconfigureAccept
from routerd_dhcpv6.codec import RelayMessage
from routerd_dhcpv6.codec import RelayMsg
from routerd_dhcpv6.codec import ServerId
from routerd_dhcpv6.codec import SolMaxRt
from routerd_dhcpv6.codec import StatusCodeOption
from routerd_dhcpv6.codec import UnknownOption
from routerd_dhcpv6.codec import decode
from routerd_dhcpv6.codec import decode_any
from routerd_dhcpv6.codec import encode
from routerd_dhcpv6.constants import MsgType
from routerd_dhcpv6.constants import StatusCode
from routerd_dhcpv6.duid import DuidEN
from routerd_dhcpv6.duid import DuidLL
from routerd_dhcpv6.duid import DuidLLT
from routerd_dhcpv6.duid import DuidUUID

TESTDATA = Path(__file__).resolve().parents[3].parent / "shared" / "testdata"
TCPDUMP = TESTDATA / "tcpdump"


def _capture(name: str) -> Path:
    path = TCPDUMP / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"test capture missing in CI: {path}")
        pytest.skip(f"test capture not available: {path}")
    return path


def dhcp_payloads(name: str) -> list[bytes]:
    """UDP payloads to or from port 546/547, Ethernet/IPv6 (or IPv4) stripped."""
    out: list[bytes] = []
    with _capture(name).open("rb") as fh:
        for _ts, frame in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(frame)
            udp = eth.data.data
            if isinstance(udp, dpkt.udp.UDP) and {udp.sport, udp.dport} & {546, 547}:
                out.append(bytes(udp.data))
    return out


def messages(name: str) -> list[Message]:
    payloads = dhcp_payloads(name)
    msgs = [decode(p) for p in payloads]
    for raw, msg in zip(payloads, msgs, strict=True):
        assert encode(msg) == raw  # byte-exact round trip of real traffic
    return msgs


MAC_000102030405 = bytes.fromhex("000102030405")
SERVER_001122334455 = bytes.fromhex("001122334455")


def test_ia_pd_exchange() -> None:
    sol, adv, req, rep = messages("dhcpv6-ia-pd.pcap")
    # 1 solicit (xid=e1e093 (client-ID hwaddr type 1 000102030405)
    #   (option-request DNS-server DNS-search-list) (elapsed-time 0)
    #   (IA_PD IAID:33752069 T1:3600 T2:5400))
    assert sol.msg_type == MsgType.SOLICIT and sol.transaction_id == 0xE1E093
    assert sol.get(ClientId) == ClientId(DuidLL(1, MAC_000102030405))
    assert sol.get(OptionRequest) == OptionRequest((23, 24))
    assert sol.get(ElapsedTime) == ElapsedTime(0)
    assert sol.get(IaPd) == IaPd(33752069, 3600, 5400, ())
    # 2 advertise (IA_PD IAID:33752069 T1:3600 T2:5400 (IA_PD-prefix
    #   2a00:1:1:100::/56 pltime:4500 vltime:7200)) ... (server-ID hwaddr/time
    #   type 1 time 407259545 001122334455)
    assert adv.msg_type == MsgType.ADVERTISE and adv.transaction_id == 0xE1E093
    assert adv.get(IaPd) == IaPd(33752069, 3600, 5400, (IaPrefix(4500, 7200, "2a00:1:1:100::/56"),))
    assert adv.get(ServerId) == ServerId(DuidLLT(1, 407259545, SERVER_001122334455))
    # 3 request (xid=12b08a ... (IA_PD-prefix 2a00:1:1:100::/56 pltime:7200 vltime:7500))
    assert req.msg_type == MsgType.REQUEST and req.transaction_id == 0x12B08A
    ia = req.get(IaPd)
    assert ia is not None and ia.prefixes == [IaPrefix(7200, 7500, "2a00:1:1:100::/56")]
    assert req.get(ServerId) == adv.get(ServerId)
    # 4 reply (xid=12b08a (IA_PD ... pltime:4500 vltime:7200))
    assert rep.msg_type == MsgType.REPLY and rep.transaction_id == 0x12B08A
    ia = rep.get(IaPd)
    assert ia is not None and (ia.t1, ia.t2) == (3600, 5400)
    assert ia.prefixes[0].network.prefixlen == 56
    assert str(ia.prefixes[0].network) == "2a00:1:1:100::/56"


def test_aftr_name_exchange() -> None:
    sol, adv, req, rep = messages("dhcpv6-AFTR-Name-RFC6334.pcap")
    # (option-request DNS-server AFTR-Name)
    assert sol.get(OptionRequest) == OptionRequest((23, 64))
    assert sol.transaction_id == 0xD81EB8
    # (IA_PD IAID:33752069 T1:150 T2:250 (IA_PD-prefix 2a00:1:1:100::/56
    #   pltime:250 vltime:300)) ... (preference 10) (DNS-server 2a01::1)
    #   (AFTR-Name aftr-name.mydomain.net)
    for msg in (adv, rep):
        assert msg.get(IaPd) == IaPd(33752069, 150, 250, (IaPrefix(250, 300, "2a00:1:1:100::/56"),))
        assert msg.get(Preference) == Preference(10)
        assert msg.get(DnsServers) == DnsServers(("2a01::1",))
        assert msg.get(AftrName) == AftrName("aftr-name.mydomain.net")
        assert msg.get(ServerId) == ServerId(DuidLLT(1, 406802160, SERVER_001122334455))
    assert req.transaction_id == 0x1E291D and rep.transaction_id == 0x1E291D


def test_ia_na_exchange() -> None:
    _sol, adv, _req, rep = messages("dhcpv6-ia-na.pcap")
    # (IA_NA IAID:33752069 T1:3600 T2:5400 (IA_ADDR
    #   2a00:1:1:200:38e6:b22e:c440:acdf pltime:4500 vltime:7200))
    expected = IaNa(
        33752069,
        3600,
        5400,
        (IaAddress("2a00:1:1:200:38e6:b22e:c440:acdf", 4500, 7200),),
    )
    assert adv.get(IaNa) == expected
    assert rep.get(IaNa) == expected
    assert rep.get(ServerId) == ServerId(DuidLLT(1, 407259276, SERVER_001122334455))


def test_ia_ta_exchange() -> None:
    sol, adv, _req, _rep = messages("dhcpv6-ia-ta.pcap")
    # (IA_TA IAID:33752069) / (IA_ADDR 2a00:1:1:200:5da2:f920:84c4:88cc
    #   pltime:4500 vltime:7200)
    assert sol.get(IaTa) == IaTa(33752069, ())
    assert adv.get(IaTa) == IaTa(
        33752069, (IaAddress("2a00:1:1:200:5da2:f920:84c4:88cc", 4500, 7200),)
    )


def test_domain_list() -> None:
    (rep,) = messages("dhcpv6-domain-list.pcap")
    # reply (xid=aa56ce (client-ID hwaddr/time type 1 time 418384703 000c2938f368)
    #   (server-ID hwaddr/time type 1 time 418354459 000c299ba153)
    #   (DNS-search-list example.com. sales.example.com. eng.example.com.))
    assert rep.transaction_id == 0xAA56CE
    assert rep.get(ClientId) == ClientId(DuidLLT(1, 418384703, bytes.fromhex("000c2938f368")))
    assert rep.get(ServerId) == ServerId(DuidLLT(1, 418354459, bytes.fromhex("000c299ba153")))
    assert rep.get(DomainList) == DomainList(
        ("example.com", "sales.example.com", "eng.example.com")
    )


def test_ntp_server() -> None:
    (rep,) = messages("dhcpv6-ntp-server.pcap")
    # (NTP-server subopt:1 2a01::1 subopt:2 ff05::101 subopt:3 ntp.example.com.)
    assert rep.transaction_id == 0xF69B57
    assert rep.get(NtpServer) == NtpServer(
        (
            NtpSuboption(1, "2a01::1"),
            NtpSuboption(2, "ff05::101"),
            NtpSuboption(3, "ntp.example.com"),
        )
    )


def test_duid_uuid_renew_reply() -> None:
    renew, rep = messages("dhcpv6-rfc6355-duid-uuid.pcap")
    # renew (xid=9f56b (client-ID uuid a256e92e40abd0d2a3ab3b3ff2ff8998)
    #   (server-ID hwaddr type 1 a021b7e0d871) (option-request DNS-server
    #   DNS-search-list DNS-server DNS-search-list client-ID) ...
    client = ClientId(DuidUUID(uuid.UUID("a256e92e40abd0d2a3ab3b3ff2ff8998")))
    assert renew.msg_type == MsgType.RENEW and renew.transaction_id == 0x9F56B
    assert renew.get(ClientId) == client
    assert renew.get(ServerId) == ServerId(DuidLL(1, bytes.fromhex("a021b7e0d871")))
    assert renew.get(OptionRequest) == OptionRequest((23, 24, 23, 24, 1))
    # reply (IA_NA IAID:971445380 T1:15 T2:45 (IA_ADDR
    #   2a02:2788:7c8:4dd:4a5b:39ff:fee7:1484 pltime:30 vltime:60))
    #   (DNS-server 2a02:2788:fff0:7::3 2a02:2788:fff0:5::140)
    #   (DNS-search-list voo.be.)
    assert rep.get(ClientId) == client
    assert rep.get(IaNa) == IaNa(
        971445380,
        15,
        45,
        (IaAddress("2a02:2788:7c8:4dd:4a5b:39ff:fee7:1484", 30, 60),),
    )
    assert rep.get(DnsServers) == DnsServers(("2a02:2788:fff0:7::3", "2a02:2788:fff0:5::140"))
    assert rep.get(DomainList) == DomainList(("voo.be",))


def test_duid_en() -> None:
    (req,) = messages("dhcpv6-rfc8415-duid-type2.pcap")
    # (client-ID enterprise 30065 4853483134343235313438)
    # (server-ID hwaddr/time type 1 time 721155524 828662a1defd)
    # (IA_NA IAID:16842752 T1:3600 T2:5400 (IA_ADDR 1234:5678::4 pltime:7200 vltime:7500))
    assert req.transaction_id == 0xE4A4A3
    assert req.get(ClientId) == ClientId(DuidEN(30065, bytes.fromhex("4853483134343235313438")))
    assert req.get(ServerId) == ServerId(DuidLLT(1, 721155524, bytes.fromhex("828662a1defd")))
    assert req.get(IaNa) == IaNa(16842752, 3600, 5400, (IaAddress("1234:5678::4", 7200, 7500),))
    # vendor-specific-info (17) and user-class (15) are kept raw.
    assert [o.code for o in req.options if isinstance(o, UnknownOption)] == [17, 15]


def test_rfc5970_capture_dhcpv6_packets() -> None:
    msgs = messages("dhcpv4v6-rfc5970-rfc8572.pcap")
    # 9 DHCPv6 packets (the DHCPv4 ones are on ports 67/68 and skipped).
    assert [m.msg_type for m in msgs] == [1, 1, 2, 3, 7, 1, 2, 3, 7, 11]
    assert [m.get(ElapsedTime) for m in msgs[:2]] == [ElapsedTime(703), ElapsedTime(0)]
    reply = msgs[4]
    # (IA_NA IAID:16842752 T1:0 T2:0 (IA_ADDR 1234:5678::4 pltime:7200 vltime:28800))
    # (DNS-search-list aristanetworks.com.) (DNS-server 1234:5678::2)
    assert reply.transaction_id == 0x5F98E6
    assert reply.get(IaNa) == IaNa(16842752, 0, 0, (IaAddress("1234:5678::4", 7200, 28800),))
    assert reply.get(DomainList) == DomainList(("aristanetworks.com",))
    assert reply.get(DnsServers) == DnsServers(("1234:5678::2",))
    assert reply.get(ServerId) == ServerId(DuidLLT(1, 701530524, bytes.fromhex("ce0db48a3384")))
    # 14 inf-req (xid=b5fcf (client-ID hwaddr type 1 000044010000) (elapsed-time 331))
    inf = msgs[-1]
    assert inf.msg_type == MsgType.INFORMATION_REQUEST
    assert inf.transaction_id == 0xB5FCF
    assert inf.get(ClientId) == ClientId(DuidLL(1, bytes.fromhex("000044010000")))
    assert inf.get(ElapsedTime) == ElapsedTime(331)


def test_relay_forward_mud_capture() -> None:
    payloads = dhcp_payloads("dhcpv6-mud.pcap")
    elapsed = []
    for raw in payloads:
        # A client never accepts relay messages ...
        with pytest.raises(DecodeError, match="relay"):
            decode(raw)
        # ... but they parse, and round-trip.
        relay = decode_any(raw)
        assert isinstance(relay, RelayMessage)
        assert encode(relay) == raw
        # relay-fwd (linkaddr=2001:8a8:1006:3:225:84ff:fedb:2380
        #   peeraddr=fe80::ba27:ebff:feb8:53c8 (relay-message (dhcp6 solicit
        #   (xid=78244b (client-ID hwaddr/time type 1 time 509769483 b827ebb853c8)
        #   ... (rapid-commit) (IA_NA IAID:3954725832 T1:0 T2:0) ...
        #   (reconfigure-accept) (option-request DNS-server DNS-search-list
        #   SNTP-servers Client-FQDN opt_82 opt_83))) (interface-ID 00000008))
        assert relay.msg_type == MsgType.RELAY_FORW
        assert relay.link_address == "2001:8a8:1006:3:225:84ff:fedb:2380"
        assert relay.peer_address == "fe80::ba27:ebff:feb8:53c8"
        assert relay.get(UnknownOption) == UnknownOption(18, b"\x00\x00\x00\x08")
        inner_opt = relay.get(RelayMsg)
        assert inner_opt is not None
        inner = inner_opt.message
        assert isinstance(inner, Message)
        assert inner.msg_type == MsgType.SOLICIT and inner.transaction_id == 0x78244B
        assert inner.get(ClientId) == ClientId(DuidLLT(1, 509769483, bytes.fromhex("b827ebb853c8")))
        assert inner.get(RapidCommit) == RapidCommit()
        assert inner.get(ReconfigureAccept) == ReconfigureAccept()
        assert inner.get(IaNa) == IaNa(3954725832, 0, 0, ())
        assert inner.get(OptionRequest) == OptionRequest((23, 24, 31, 39, 82, 83))
        elapsed.append(inner.get(ElapsedTime))
    assert elapsed == [ElapsedTime(v) for v in (0, 96, 287, 677, 1421)]


def test_relay_vendor_capture_round_trips() -> None:
    (raw,) = dhcp_payloads("dhcpv6-vendor-specific-information.pcap")
    relay = decode_any(raw)
    assert isinstance(relay, RelayMessage) and encode(relay) == raw
    inner_opt = relay.get(RelayMsg)
    assert inner_opt is not None and isinstance(inner_opt.message, Message)
    req = inner_opt.message
    # (client-ID hwaddr type 1 54d46ffa109a) (IA_NA IAID:1878659226 T1:0 T2:0
    #   (IA_ADDR fc00:502:411:1::31 pltime:27000 vltime:43200) ...)
    assert req.transaction_id == 0xD98C5D
    assert req.get(ClientId) == ClientId(DuidLL(1, bytes.fromhex("54d46ffa109a")))
    ia = req.get(IaNa)
    assert ia is not None and ia.get(IaAddress) == IaAddress("fc00:502:411:1::31", 27000, 43200)


def test_reconfigure_asan_fuzz_capture_fails_cleanly() -> None:
    # tcpdump: "dhcp6 relay-reply (linkaddr=300:10ed:ff:f01:f:0:7f:7f
    # peeraddr=ffb6:3a64::c1:2300:581c:d00 (reconfigure-message ?)
    # (reconfigure-message ?))": two option-19s of length 0, which must be 1.
    (raw,) = dhcp_payloads("dhcp6_reconf_asan.pcap")
    assert raw[0] == MsgType.RELAY_REPL
    with pytest.raises(DecodeError, match="reconfigure-message"):
        decode_any(raw)
    with pytest.raises(DecodeError):
        decode(raw)


def test_sip_domain_option_kept_raw() -> None:
    (rep,) = messages("dhcpv6-sip-server-d.pcap")
    opt = rep.get(UnknownOption)
    assert opt is not None and opt.code == 21
    assert opt.data.startswith(b"\x04sip1\x09my-domain\x03net\x00")


# ---------------------------------------------------------------- malformed

DUID = bytes.fromhex("00030001" + "020000000001")


def _opt(code: int, body: bytes) -> bytes:
    return struct.pack("!HH", code, len(body)) + body


def _msg(*opts: bytes, mtype: int = 7) -> bytes:
    return bytes([mtype]) + b"\x12\x34\x56" + b"".join(opts)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated message header"),
        (b"\x07\x00\x01", "truncated message header"),
        (_msg() + b"\x00\x01\x00", "truncated option header"),
        (_msg(_opt(1, DUID))[:-1], "overruns"),
        (_msg(_opt(1, b"\x00\x03")), "DUID too short"),
        (_msg(_opt(1, b"\x00\x04" + b"\x00" * 15)), "DUID-UUID"),
        (_msg(_opt(1, b"\x00\x01\x00\x01\x00\x00\x00\x00")), "DUID-LLT"),
        (_msg(_opt(1, b"\x00\x03" + b"\x00" * 200)), "DUID too long"),
        (_msg(_opt(7, b"")), "preference: length must be 1"),
        (_msg(_opt(8, b"\x00")), "elapsed-time"),
        (_msg(_opt(6, b"\x00\x17\x00")), "ORO: odd length"),
        (_msg(_opt(13, b"\x00")), "status-code"),
        (_msg(_opt(14, b"\x00")), "rapid-commit"),
        (_msg(_opt(23, b"\x00" * 15)), "multiple of 16"),
        (_msg(_opt(25, b"\x00" * 11)), "IA_PD"),
        (_msg(_opt(25, b"\x00" * 12 + _opt(26, b"\x00" * 24))), "IAPREFIX"),
        (
            _msg(_opt(25, b"\x00" * 12 + _opt(26, b"\x00" * 8 + b"\x81" + b"\x00" * 16))),
            "prefix length 129",
        ),
        # IAPREFIX claims more than its IA_PD holds.
        (_msg(_opt(25, b"\x00" * 12 + b"\x00\x1a\x00\x40" + b"\x00" * 25)), "overruns"),
        (_msg(_opt(24, b"\x07example\x03com")), "not terminated"),
        (_msg(_opt(24, b"\x07example\xc0\x0c")), "compressed"),
        (_msg(_opt(24, b"\x45" + b"a" * 69 + b"\x00")), "bad domain label length"),
        (_msg(_opt(24, b"\x03a b\x00")), "bad character"),
        (_msg(_opt(24, b"\x03a.b\x00")), "bad character"),
        (_msg(_opt(24, (b"\x3f" + b"a" * 63) * 4 + b"\x00")), "longer than 255"),
        (_msg(_opt(64, b"\x04aftr\x00\x00")), "trailing bytes"),
        (_msg(_opt(56, b"\x00\x01\x00\x10" + b"\x00" * 15)), "overruns"),
        (_msg(_opt(56, b"\x00\x01\x00\x04" + b"\x00" * 4)), "NTP server suboption 1"),
        (_msg(_opt(82, b"\x00\x00\x0e")), "SOL_MAX_RT"),
        (_msg(_opt(19, b"")), "reconfigure-message"),
        (b"\x0c\x00" + b"\x00" * 20, "truncated relay"),
        (b"\x0d\x00" + b"\x00" * 32, "without a Relay Message"),
    ],
)
def test_malformed_input_gives_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_any(data)


def test_nesting_too_deep() -> None:
    body = _opt(26, b"\x00" * 25)
    for _ in range(40):
        body = _opt(25, b"\x00" * 12 + body)
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode(_msg(body))


def test_relay_nesting_too_deep() -> None:
    inner = _msg(mtype=1)
    for _ in range(40):
        inner = b"\x0c\x00" + b"\x00" * 32 + _opt(9, inner)
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_any(inner)


def test_decode_error_is_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


def test_status_code_with_bad_utf8_round_trips() -> None:
    raw = _msg(_opt(13, b"\x00\x06no \xff prefix"))
    msg = decode(raw)
    status = msg.get(StatusCodeOption)
    assert status is not None and status.status == StatusCode.NO_PREFIX_AVAIL
    assert status.text == "no \ufffd prefix"
    assert status.name == "NO_PREFIX_AVAIL"
    assert encode(msg) == raw


def test_built_message_round_trips_and_encodes_lengths() -> None:
    msg = Message(
        MsgType.SOLICIT,
        0xABCDEF,
        (
            ClientId(DuidLL(1, MAC_000102030405)),
            ElapsedTime(0),
            OptionRequest((23, 24, 31, 64, 82, 83)),
            RapidCommit(),
            IaPd(7, 0, 0, (IaPrefix(0, 0, "::/56"),)),
            SolMaxRt(3600),
            StatusCodeOption(0, "ok"),
        ),
    )
    raw = encode(msg)
    assert raw[:4] == b"\x01\xab\xcd\xef"
    # IA_PD: 12 octets of header + 4 + 25 for the IAPREFIX hint.
    assert (
        _opt(
            25,
            struct.pack("!III", 7, 0, 0) + _opt(26, b"\x00" * 8 + b"\x38" + b"\x00" * 16),
        )
        in raw
    )
    assert decode(raw) == msg
