"""The sans-I/O PPPoE client core with a fake clock: discovery, the RFC 1661
automaton, LCP options, PAP/CHAP, IPCP/IPv6CP, keepalive, teardown, redial.

Every timer is driven by ``Harness.advance`` (no sleeping); randomness is a
seeded ``random.Random``.
"""

from __future__ import annotations

from collections.abc import Callable
import hashlib
from typing import Any

import pytest
from routerd_pppoe import timing
from routerd_pppoe.codec import Code
from routerd_pppoe.codec import Tag
from routerd_pppoe.core import SendDiscovery
from routerd_pppoe.core import SendPpp
from routerd_pppoe.core import State
from routerd_pppoe.events import AuthFailed
from routerd_pppoe.events import AuthSucceeded
from routerd_pppoe.events import DiscoveryError
from routerd_pppoe.events import EchoReply
from routerd_pppoe.events import EchoTimeout
from routerd_pppoe.events import ExitReason
from routerd_pppoe.events import Ipv6Up
from routerd_pppoe.events import NetworkUp
from routerd_pppoe.events import OfferIgnored
from routerd_pppoe.events import RedialScheduled
from routerd_pppoe.events import RedialStopped
from routerd_pppoe.events import SessionEnded
from routerd_pppoe.events import SessionEstablished
from routerd_pppoe.events import SessionFailed
from routerd_pppoe.events import StaleSessionClosed
from routerd_pppoe.events import StateChanged
from routerd_pppoe.pppcodec import Code as PppCode
from routerd_pppoe.pppcodec import IpcpOption
from routerd_pppoe.pppcodec import Ipv6cpOption
from routerd_pppoe.pppcodec import LcpOption
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import encode_control

H = Any  # the conftest Harness (not importable in importlib mode)


# -- timing table ------------------------------------------------------------------------


def test_timing_constants_are_pinned() -> None:
    # RFC 1661 §4.6 defaults; RFC 2516 §7 MRU; pppd's MINMRU and PAP numbers.
    assert (timing.RESTART_TIMER, timing.MAX_TERMINATE, timing.MAX_CONFIGURE) == (3.0, 2, 10)
    assert timing.MAX_FAILURE == 5
    assert (timing.PPPOE_MRU, timing.PPP_DEFAULT_MRU, timing.MIN_MRU) == (1492, 1500, 128)
    assert (timing.AUTH_MAX_REQUESTS, timing.AUTH_WAIT) == (10, 30.0)
    assert (timing.DISCOVERY_TIMEOUT, timing.DISCOVERY_TIMEOUT_MAX) == (1.0, 8.0)
    assert timing.DISCOVERY_ATTEMPTS == 4
    assert [timing.discovery_timeout(n) for n in range(1, 6)] == [1, 2, 4, 8, 8]
    assert [timing.redial_delay(n, 5.0) for n in range(0, 8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert [timing.auth_failure_delay(n, 5.0) for n in range(1, 9)] == [
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert timing.REDIAL_BACKOFF_MAX == 300.0 and timing.BACKOFF_JITTER == 0.1


# -- discovery ---------------------------------------------------------------------------------


def test_padi_is_broadcast_with_service_name_and_host_uniq(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.start()
    (padi,) = h.discovery_of(out)
    assert padi.dst == b"\xff" * 6 and padi.packet.code == Code.PADI
    assert padi.packet.session_id == 0
    assert padi.packet.first(Tag.SERVICE_NAME) == b""
    assert padi.packet.host_uniq == h.host_uniq() and len(h.host_uniq()) == 8
    assert not padi.packet.has(Tag.PPP_MAX_PAYLOAD)
    assert h.core.state is State.DISCOVERY


def test_mtu_1500_asks_for_ppp_max_payload(harness: Callable[..., H]) -> None:
    h = harness(mtu=1500)
    (padi,) = h.discovery_of(h.start())
    assert padi.packet.ppp_max_payload == 1500


def test_padi_retransmits_doubling_then_connect_failed_and_redial(
    harness: Callable[..., H],
) -> None:
    h = harness()
    h.start()
    times = []
    for at, item in h.timeline(100):
        if isinstance(item, SendDiscovery):
            times.append(at)
        if isinstance(item, SessionFailed):
            break
    # RFC 2516 §5.1: resend, doubling the wait: at 1, 3, 7 s; then give up at 15 s.
    assert times == [1.0, 3.0, 7.0]
    failed = h.events_of(h.outputs, SessionFailed)[0]
    assert failed.reason is ExitReason.CONNECT_FAILED and failed.detail == "no_pado"
    assert failed.stage == "DISCOVERY"
    redial = h.events_of(h.outputs, RedialScheduled)[0]
    assert 2.0 * 0.9 <= redial.delay <= 2.0 * 1.1 and redial.failures == 1


def test_pado_without_our_host_uniq_is_dropped(harness: Callable[..., H]) -> None:
    h = harness()
    h.start()
    out = h.discovery_in(h.ac.pado(b"not-ours"))
    assert h.discovery_of(out) == [] and h.core.state is State.DISCOVERY
    out = h.discovery_in(h.ac.pado(None))
    assert h.discovery_of(out) == []
    assert h.core.all_counters()["dropped"]["host_uniq"] == 2


def test_first_valid_pado_gets_padr_echoing_cookie_and_relay_id(
    harness: Callable[..., H],
) -> None:
    h = harness()
    h.start()
    uniq = h.host_uniq()
    out = h.discovery_in(
        h.ac.pado(uniq, "ac1", (Tag.AC_COOKIE, b"cookie!"), (Tag.RELAY_SESSION_ID, b"relay")),
    )
    (padr,) = h.discovery_of(out)
    assert padr.dst == h.AC_MAC and padr.packet.code == Code.PADR
    assert padr.packet.first(Tag.AC_COOKIE) == b"cookie!"
    assert padr.packet.first(Tag.RELAY_SESSION_ID) == b"relay"
    assert padr.packet.host_uniq == uniq and padr.packet.first(Tag.SERVICE_NAME) == b""
    assert h.core.state is State.REQUEST
    # A second AC's PADO arriving late is not taken.
    out = h.discovery_in(h.ac.pado(uniq, "ac2"), src=h.AC2_MAC)
    assert h.discovery_of(out) == []
    # The PADR is retransmitted to the same AC.
    out = h.advance(1.0)
    assert [s.dst for s in h.discovery_of(out)] == [h.AC_MAC]


def test_request_state_is_announced_before_the_padr(harness: Callable[..., H]) -> None:
    # The glue opens the session socket on REQUEST; the AC answers a PADR
    # with the PADS and its first LCP request at once.
    h = harness()
    h.start()
    out = h.discovery_in(h.ac.pado(h.host_uniq()))
    kinds = [type(i).__name__ for i in out if isinstance(i, StateChanged | SendDiscovery)]
    assert kinds == ["StateChanged", "SendDiscovery"]


def test_ac_name_filter_takes_the_named_ac(harness: Callable[..., H]) -> None:
    h = harness(ac_name="ac2")
    h.start()
    uniq = h.host_uniq()
    out = h.discovery_in(h.ac.pado(uniq, "ac1"))
    assert h.discovery_of(out) == []
    (ignored,) = h.events_of(out, OfferIgnored)
    assert ignored.why == "ac_name" and ignored.ac_name == "ac1"
    out = h.discovery_in(h.ac.pado(uniq, "ac2"), src=h.AC2_MAC)
    assert [s.dst for s in h.discovery_of(out)] == [h.AC2_MAC]


def test_service_name_filter(harness: Callable[..., H]) -> None:
    h = harness(service_name="internet")
    (padi,) = h.discovery_of(h.start())
    assert padi.packet.first(Tag.SERVICE_NAME) == b"internet"
    uniq = h.host_uniq()
    out = h.discovery_in(h.ac.pado(uniq))  # offers only the empty service
    assert h.discovery_of(out) == []
    assert h.events_of(out, OfferIgnored)[0].why == "service_name"
    out = h.discovery_in(h.ac.pado(uniq, "ac1", (Tag.SERVICE_NAME, b"internet")))
    (padr,) = h.discovery_of(out)
    assert padr.packet.first(Tag.SERVICE_NAME) == b"internet"


def test_pado_with_error_tag_is_reported_and_ignored(harness: Callable[..., H]) -> None:
    h = harness()
    h.start()
    out = h.discovery_in(h.ac.pado(h.host_uniq(), "ac1", (Tag.AC_SYSTEM_ERROR, b"out of sessions")))
    assert h.discovery_of(out) == []
    (err,) = h.events_of(out, DiscoveryError)
    assert (err.code, err.tag, err.text) == ("PADO", "AC_SYSTEM_ERROR", "out of sessions")


def test_pads_with_service_name_error_fails_the_attempt(harness: Callable[..., H]) -> None:
    h = harness()
    h.start()
    uniq = h.host_uniq()
    h.discovery_in(h.ac.pado(uniq))
    out = h.discovery_in(h.ac.pads(uniq, 0, (Tag.SERVICE_NAME_ERROR, b"no such service")))
    (failed,) = h.events_of(out, SessionFailed)
    assert failed.reason is ExitReason.CONNECT_FAILED and failed.detail == "pads_error"
    assert "no such service" in failed.message
    assert h.core.state is State.HOLDOFF


def test_session_established_comes_before_the_first_lcp_frame(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.to_session(0x2222)
    kinds = [type(i).__name__ for i in out if isinstance(i, SessionEstablished | SendPpp)]
    assert kinds[:2] == ["SessionEstablished", "SendPpp"]
    (est,) = h.events_of(out, SessionEstablished)
    assert est.session_id == 0x2222 and est.ac_name == "ac1" and est.max_payload is None
    (cr,) = h.ppp_of(out, Protocol.LCP)
    assert cr[1].code == PppCode.CONFIGURE_REQUEST
    options = dict(h.options(cr[1]))
    assert options[LcpOption.MRU] == (1492).to_bytes(2, "big")
    assert len(options[LcpOption.MAGIC_NUMBER]) == 4
    assert set(options) == {LcpOption.MRU, LcpOption.MAGIC_NUMBER}


def test_stale_session_gets_a_padt_before_the_padi(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.start(stale=(0x4321, h.AC_MAC))
    sent = h.discovery_of(out)
    assert [(s.packet.code, s.dst, s.packet.session_id) for s in sent] == [
        (Code.PADT, h.AC_MAC, 0x4321),
        (Code.PADI, b"\xff" * 6, 0),
    ]
    assert h.events_of(out, StaleSessionClosed)[0].session_id == 0x4321


def test_ppp_max_payload_gives_mtu_1500_when_the_ac_echoes_it(harness: Callable[..., H]) -> None:
    h = harness(mtu=1500)
    h.start()
    uniq = h.host_uniq()
    payload = (Tag.PPP_MAX_PAYLOAD, (1500).to_bytes(2, "big"))
    h.discovery_in(h.ac.pado(uniq, "ac1", payload))
    out = h.discovery_in(h.ac.pads(uniq, 0x1234, payload))
    assert h.events_of(out, SessionEstablished)[0].max_payload == 1500
    (cr,) = h.ppp_of(out, Protocol.LCP)
    # MRU 1500 is LCP's default (RFC 1661 §6.1): not requested.
    assert LcpOption.MRU not in dict(h.options(cr[1]))


def test_without_the_ac_echoing_ppp_max_payload_the_mru_stays_1492(
    harness: Callable[..., H],
) -> None:
    h = harness(mtu=1500)
    out = h.to_session()
    assert h.events_of(out, SessionEstablished)[0].max_payload is None
    (cr,) = h.ppp_of(out, Protocol.LCP)
    assert dict(h.options(cr[1]))[LcpOption.MRU] == (1492).to_bytes(2, "big")


# -- the RFC 1661 automaton and LCP ---------------------------------------------------------


def test_our_request_is_resent_when_the_peers_first_request_arrives(
    harness: Callable[..., H],
) -> None:
    h = harness()
    out = h.to_session()
    first = h.ppp_of(out, Protocol.LCP)[0][1]
    out = h.ppp_in(Protocol.LCP, h.ac.lcp_request())
    lcp = h.ppp_of(out, Protocol.LCP)
    assert [p.code for _, p in lcp] == [PppCode.CONFIGURE_ACK, PppCode.CONFIGURE_REQUEST]
    # Same Identifier and options: a retransmission (RFC 1661 §5.1 allows it).
    assert lcp[1][1] == first
    # Only for the first one: a repeated peer request is just answered.
    out = h.ppp_in(Protocol.LCP, h.ac.lcp_request(2))
    assert [p.code for _, p in h.ppp_of(out, Protocol.LCP)] == [PppCode.CONFIGURE_ACK]


def test_restart_timer_and_max_configure_give_negotiation_failed(
    harness: Callable[..., H],
) -> None:
    h = harness()
    h.to_session()
    sent_at = [0.0]
    for at, item in h.timeline(60):
        if isinstance(item, SendPpp):
            sent_at.append(at)
        if isinstance(item, SessionFailed):
            break
    # RFC 1661 §4.6: every 3 s, 10 transmissions, then TO- 3 s after the last.
    assert sent_at == [3.0 * n for n in range(10)]
    failed = h.events_of(h.outputs, SessionFailed)[0]
    assert failed.reason is ExitReason.NEGOTIATION_FAILED and failed.detail == "lcp_timeout"
    assert failed.stage == "ESTABLISH"
    # The session is closed with a PADT to the AC.
    padt = [s for s in h.discovery_of(h.outputs) if s.packet.code == Code.PADT]
    assert [(p.dst, p.packet.session_id) for p in padt][:1] == [(h.AC_MAC, 0x1234)]


def test_retransmission_keeps_the_identifier(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.to_session()
    first = h.ppp_of(out, Protocol.LCP)[0][1]
    again = h.ppp_of(h.advance(3.0), Protocol.LCP)[0][1]
    assert again.identifier == first.identifier and again.data == first.data


def test_ack_with_other_identifier_or_options_is_dropped(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.to_session()
    ours = h.ppp_of(out, Protocol.LCP)[0][1]
    h.ppp_in(Protocol.LCP, encode_control(PppCode.CONFIGURE_ACK, ours.identifier + 1, ours.data))
    h.ppp_in(
        Protocol.LCP, encode_control(PppCode.CONFIGURE_ACK, ours.identifier, b"\x01\x04\x05\xd4")
    )
    assert h.core.link.lcp.state.name == "REQ_SENT"
    dropped = h.core.all_counters()["dropped"]
    assert dropped["lcp_bad_identifier"] == 1 and dropped["lcp_ack_mismatch"] == 1


def test_peer_nak_of_mru_and_reject_of_magic_change_our_request(
    harness: Callable[..., H],
) -> None:
    h = harness()
    out = h.to_session()
    ours = h.ppp_of(out, Protocol.LCP)[0][1]
    nak = h.ac.control(
        PppCode.CONFIGURE_NAK, ours.identifier, [(LcpOption.MRU, (1400).to_bytes(2, "big"))]
    )
    out = h.ppp_in(Protocol.LCP, nak)
    second = h.ppp_of(out, Protocol.LCP)[0][1]
    assert second.identifier != ours.identifier
    assert dict(h.options(second))[LcpOption.MRU] == (1400).to_bytes(2, "big")
    magic = dict(h.options(second))[LcpOption.MAGIC_NUMBER]
    rej = h.ac.control(
        PppCode.CONFIGURE_REJECT, second.identifier, [(LcpOption.MAGIC_NUMBER, magic)]
    )
    out = h.ppp_in(Protocol.LCP, rej)
    third = h.ppp_of(out, Protocol.LCP)[0][1]
    assert [k for k, _ in h.options(third)] == [LcpOption.MRU]


def test_a_reject_naming_options_we_did_not_send_is_dropped(harness: Callable[..., H]) -> None:
    h = harness()
    ours = h.ppp_of(h.to_session(), Protocol.LCP)[0][1]
    rej = h.ac.control(PppCode.CONFIGURE_REJECT, ours.identifier, [(LcpOption.ACCM, bytes(4))])
    assert h.ppp_of(h.ppp_in(Protocol.LCP, rej)) == []
    assert h.core.all_counters()["dropped"]["lcp_reject_mismatch"] == 1


def test_peer_options_we_refuse_are_rejected_exactly(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_session()
    request = h.ac.control(
        PppCode.CONFIGURE_REQUEST,
        7,
        [
            (LcpOption.MRU, (1492).to_bytes(2, "big")),
            (LcpOption.ACCM, bytes(4)),
            (LcpOption.PFC, b""),
            (LcpOption.ACFC, b""),
            (LcpOption.MAGIC_NUMBER, h.AC_MAGIC),
            (99, b"xyz"),
        ],
    )
    out = h.ppp_in(Protocol.LCP, request)
    reply = h.ppp_of(out, Protocol.LCP)[0][1]
    assert reply.code == PppCode.CONFIGURE_REJECT and reply.identifier == 7
    assert h.options(reply) == [
        (LcpOption.ACCM, bytes(4)),
        (LcpOption.PFC, b""),
        (LcpOption.ACFC, b""),
        (99, b"xyz"),
    ]


@pytest.mark.parametrize(
    ("methods", "asked", "nak_with"),
    [
        (frozenset({"pap", "chap"}), bytes.fromhex("c22381"), bytes.fromhex("c22305")),  # MS-CHAP
        (frozenset({"pap", "chap"}), bytes.fromhex("c227"), bytes.fromhex("c22305")),  # EAP
        (frozenset({"pap"}), bytes.fromhex("c22305"), bytes.fromhex("c023")),
        (frozenset({"chap"}), bytes.fromhex("c023"), bytes.fromhex("c22305")),
    ],
)
def test_auth_protocols_not_allowed_are_naked_with_ours(
    harness: Callable[..., H], methods: frozenset[str], asked: bytes, nak_with: bytes
) -> None:
    h = harness(auth_methods=methods)
    h.to_session()
    out = h.ppp_in(Protocol.LCP, h.ac.lcp_request(auth=asked))
    reply = h.ppp_of(out, Protocol.LCP)[0][1]
    assert reply.code == PppCode.CONFIGURE_NAK
    assert h.options(reply) == [(LcpOption.AUTH_PROTOCOL, nak_with)]


def test_max_failure_turns_naks_into_a_reject(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_session()
    codes = []
    for ident in range(1, 8):
        request = h.ac.control(
            PppCode.CONFIGURE_REQUEST, ident, [(LcpOption.MRU, (64).to_bytes(2, "big"))]
        )
        reply = h.ppp_of(h.ppp_in(Protocol.LCP, request), Protocol.LCP)
        codes.append(next(p.code for _, p in reply if p.identifier == ident))
    # RFC 1661 §4.6: Max-Failure (5) Naks, then Configure-Reject.
    assert codes == [PppCode.CONFIGURE_NAK] * 5 + [PppCode.CONFIGURE_REJECT] * 2


def test_our_magic_coming_back_is_a_loop(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.to_session()
    for ident in range(1, 10):
        if h.core.link is None:
            break
        magic = h.core.link.lcp_policy.our_magic
        request = h.ac.control(
            PppCode.CONFIGURE_REQUEST, ident, [(LcpOption.MAGIC_NUMBER, magic.to_bytes(4, "big"))]
        )
        out += h.ppp_in(Protocol.LCP, request)
    (failed,) = h.events_of(out, SessionFailed)
    assert failed.reason is ExitReason.LOOPBACK


def test_unknown_protocol_gets_protocol_reject_and_unknown_code_a_code_reject(
    harness: Callable[..., H],
) -> None:
    h = harness()
    h.lcp_open(auth=None)
    ccp = encode_control(1, 3, b"\x12\x06\x00\x00\x00\x01")
    out = h.ppp_in(Protocol.CCP, ccp)
    (rej,) = h.ppp_of(out, Protocol.LCP)
    assert rej[1].code == PppCode.PROTOCOL_REJECT
    assert rej[1].data == Protocol.CCP.to_bytes(2, "big") + ccp
    # IPv6CP without ipv6: rejected too (pppd's noipv6 does the same).
    out = h.ppp_in(Protocol.IPV6CP, encode_control(1, 1, b"\x01\x0a" + bytes(8)))
    assert h.ppp_of(out, Protocol.LCP)[0][1].code == PppCode.PROTOCOL_REJECT
    out = h.ppp_in(Protocol.LCP, encode_control(42, 9, b"abc"))
    (cj,) = h.ppp_of(out, Protocol.LCP)
    assert cj[1].code == PppCode.CODE_REJECT and cj[1].data == encode_control(42, 9, b"abc")


def test_non_lcp_before_lcp_is_open_is_discarded(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_session()
    out = h.ppp_in(Protocol.IPCP, encode_control(1, 1, b"\x03\x06" + bytes(4)))
    assert h.ppp_of(out) == []
    assert h.core.all_counters()["dropped"]["before_lcp"] == 1


# -- authentication ---------------------------------------------------------------------------


def test_pap_then_ipcp_with_dns_brings_the_session_up(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.to_running()
    (req,) = h.ppp_of(out, Protocol.PAP)
    # RFC 1334 §2.2.1: Peer-ID length, Peer-ID, Passwd length, Password.
    assert req[1].data == b"\x08user@isp" + bytes((len(h.PASSWORD),)) + h.PASSWORD
    (auth,) = h.events_of(h.outputs, AuthSucceeded)
    assert auth.method == "pap" and auth.message == "ok"
    (up,) = h.events_of(h.outputs, NetworkUp)
    assert (up.local, up.peer, up.dns, up.mtu, up.mru) == (
        "198.51.100.7",
        "198.51.100.1",
        ("192.0.2.53", "192.0.2.54"),
        1492,
        1492,
    )
    assert h.core.state is State.RUNNING
    first_ipcp = h.ppp_of(h.outputs, Protocol.IPCP)[0][1]
    assert h.options(first_ipcp) == [
        (IpcpOption.IP_ADDRESS, bytes(4)),
        (IpcpOption.PRIMARY_DNS, bytes(4)),
        (IpcpOption.SECONDARY_DNS, bytes(4)),
    ]


def test_chap_md5_response(harness: Callable[..., H]) -> None:
    h = harness()
    h.lcp_open(auth=h.CHAP_MD5)
    assert h.core.state is State.AUTHENTICATE
    challenge = bytes(range(16))
    out = h.ppp_in(Protocol.CHAP, encode_control(1, 0x42, b"\x10" + challenge + b"ac1"))
    (resp,) = h.ppp_of(out, Protocol.CHAP)
    value = hashlib.md5(b"\x42" + h.PASSWORD + challenge).digest()
    assert resp[1].code == 2 and resp[1].identifier == 0x42
    assert resp[1].data == b"\x10" + value + b"user@isp"
    out = h.ppp_in(Protocol.CHAP, encode_control(3, 0x42, b"Welcome"))
    assert h.events_of(out, AuthSucceeded)[0].method == "chap"
    assert h.core.state is State.NETWORK


def test_wrong_password_fails_with_peer_auth_failed_and_a_long_backoff(
    harness: Callable[..., H],
) -> None:
    h = harness()
    out = h.lcp_open()
    req = h.ppp_of(out, Protocol.PAP)[0][1]
    out = h.ppp_in(Protocol.PAP, encode_control(3, req.identifier, b"\x0cAuth failure"))
    (failed,) = h.events_of(out, AuthFailed)
    assert failed.method == "pap" and failed.message == "Auth failure"
    (term,) = h.ppp_of(out, Protocol.LCP)
    assert term[1].code == PppCode.TERMINATE_REQUEST
    assert h.core.state is State.TERMINATE
    out = h.ppp_in(Protocol.LCP, encode_control(PppCode.TERMINATE_ACK, term[1].identifier))
    assert [s.packet.code for s in h.discovery_of(out)] == [Code.PADT]
    (sf,) = h.events_of(out, SessionFailed)
    assert sf.reason is ExitReason.PEER_AUTH_FAILED and sf.stage == "AUTHENTICATE"
    (redial,) = h.events_of(out, RedialScheduled)
    assert redial.delay >= 60 * 0.9 and redial.reason is ExitReason.PEER_AUTH_FAILED
    assert h.core.state is State.HOLDOFF


def test_pap_without_an_answer_gives_up_after_ten_requests(harness: Callable[..., H]) -> None:
    h = harness(echo_interval=0)
    out = h.lcp_open()
    count = len(h.ppp_of(out, Protocol.PAP))
    for item in h.advance(40):
        if isinstance(item, SendPpp) and item.protocol == Protocol.PAP:
            count += 1
    assert count == 10
    assert h.events_of(h.outputs, AuthFailed)[0].message == "no answer to PAP Authenticate-Request"


# -- network phase -------------------------------------------------------------------------------


def test_rejected_secondary_dns_is_handled(harness: Callable[..., H]) -> None:
    h = harness()
    out = h.lcp_open()
    req = h.ppp_of(out, Protocol.PAP)[0][1]
    h.ppp_in(Protocol.PAP, encode_control(2, req.identifier, b"\x00"))
    ipcp = h.ppp_of(h.outputs, Protocol.IPCP)[-1][1]
    rej = h.ac.control(
        PppCode.CONFIGURE_REJECT, ipcp.identifier, [(IpcpOption.SECONDARY_DNS, bytes(4))]
    )
    out = h.ppp_in(Protocol.IPCP, rej)
    second = h.ppp_of(out, Protocol.IPCP)[0][1]
    assert [k for k, _ in h.options(second)] == [IpcpOption.IP_ADDRESS, IpcpOption.PRIMARY_DNS]
    nak = h.ac.control(
        PppCode.CONFIGURE_NAK,
        second.identifier,
        [
            (IpcpOption.IP_ADDRESS, bytes([203, 0, 113, 9])),
            (IpcpOption.PRIMARY_DNS, bytes([203, 0, 113, 53])),
        ],
    )
    third = h.ppp_of(h.ppp_in(Protocol.IPCP, nak), Protocol.IPCP)[0][1]
    h.ppp_in(Protocol.IPCP, encode_control(PppCode.CONFIGURE_ACK, third.identifier, third.data))
    out = h.ppp_in(
        Protocol.IPCP,
        h.ac.control(
            PppCode.CONFIGURE_REQUEST, 1, [(IpcpOption.IP_ADDRESS, bytes([203, 0, 113, 1]))]
        ),
    )
    (up,) = h.events_of(out, NetworkUp)
    assert up.local == "203.0.113.9" and up.dns == ("203.0.113.53",)


def test_peer_asking_for_vj_compression_is_rejected(harness: Callable[..., H]) -> None:
    h = harness()
    h.lcp_open(auth=None)
    vj = (IpcpOption.IP_COMPRESSION, bytes.fromhex("002d0f01"))
    request = h.ac.control(
        PppCode.CONFIGURE_REQUEST, 5, [(IpcpOption.IP_ADDRESS, bytes([10, 0, 0, 1])), vj]
    )
    reply = h.ppp_of(h.ppp_in(Protocol.IPCP, request), Protocol.IPCP)[0][1]
    assert reply.code == PppCode.CONFIGURE_REJECT and h.options(reply) == [vj]


def test_ipv6cp_negotiates_interface_identifiers(harness: Callable[..., H]) -> None:
    h = harness(ipv6=True)
    out = h.lcp_open(auth=None)
    (v6,) = h.ppp_of(out, Protocol.IPV6CP)
    # Modified EUI-64 of 02:00:00:00:00:01 (RFC 4291 appendix A).
    assert h.options(v6[1]) == [
        (Ipv6cpOption.INTERFACE_IDENTIFIER, bytes.fromhex("000000fffe000001"))
    ]
    h.ppp_in(Protocol.IPV6CP, encode_control(PppCode.CONFIGURE_ACK, v6[1].identifier, v6[1].data))
    peer_id = bytes.fromhex("0211223344556677")
    out = h.ppp_in(
        Protocol.IPV6CP,
        h.ac.control(PppCode.CONFIGURE_REQUEST, 1, [(Ipv6cpOption.INTERFACE_IDENTIFIER, peer_id)]),
    )
    (up,) = h.events_of(out, Ipv6Up)
    assert up.local == "fe80::ff:fe00:1" and up.peer == "fe80::211:2233:4455:6677"
    # A zero identifier from the peer is Nak'd with a suggestion (RFC 5072 §4.1).
    out = h.ppp_in(
        Protocol.IPV6CP,
        h.ac.control(PppCode.CONFIGURE_REQUEST, 2, [(Ipv6cpOption.INTERFACE_IDENTIFIER, bytes(8))]),
    )
    nak = h.ppp_of(out, Protocol.IPV6CP)[-1][1]
    assert nak.code == PppCode.CONFIGURE_NAK and any(h.options(nak)[0][1])


# -- keepalive, teardown, redial --------------------------------------------------------------------


def test_echo_reply_measures_rtt_and_silence_is_peer_dead(harness: Callable[..., H]) -> None:
    h = harness(echo_interval=10.0, echo_failure=3)
    h.to_running()
    up_at = h.now
    out = h.advance(up_at + 10)
    (echo,) = h.ppp_of(out, Protocol.LCP)
    assert echo[1].code == PppCode.ECHO_REQUEST
    h.now += 0.25
    out = h.ppp_in(Protocol.LCP, encode_control(PppCode.ECHO_REPLY, echo[1].identifier, h.AC_MAGIC))
    assert h.events_of(out, EchoReply)[0].rtt == pytest.approx(0.25)
    # Now silence: three Echo-Requests outstanding, dead at the fourth interval.
    timeline = h.timeline(up_at + 60)
    dead_at = next(at for at, item in timeline if isinstance(item, EchoTimeout))
    assert dead_at == up_at + 50  # requests at 20, 30, 40 unanswered
    out = [item for at, item in timeline if at == dead_at]
    before = [item for at, item in timeline if at < dead_at]
    requests = [p for _, p in h.ppp_of(before, Protocol.LCP) if p.code == PppCode.ECHO_REQUEST]
    assert len(requests) == 3
    (timeout,) = h.events_of(out, EchoTimeout)
    assert timeout.missed == 3
    (ended,) = h.events_of(out, SessionEnded)
    assert ended.reason is ExitReason.PEER_DEAD and ended.detail == "echo_timeout" and ended.was_up
    assert next(s.packet.code for s in h.discovery_of(out)) == Code.PADT
    (redial,) = h.events_of(out, RedialScheduled)
    assert 1.8 <= redial.delay <= 2.2 and redial.failures == 0
    # The redial is a new discovery.
    later = [item for at, item in timeline if at > dead_at]
    assert [s.packet.code for s in h.discovery_of(later)][:1] == [Code.PADI]
    assert h.core.redials == 1


def test_peer_echo_request_is_answered_with_our_magic(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_running()
    out = h.ppp_in(Protocol.LCP, encode_control(PppCode.ECHO_REQUEST, 77, h.AC_MAGIC + b"data"))
    (reply,) = h.ppp_of(out, Protocol.LCP)
    magic = h.core.link.lcp_policy.our_magic
    assert reply[1].code == PppCode.ECHO_REPLY and reply[1].identifier == 77
    assert reply[1].data == magic.to_bytes(4, "big") + b"data"


def test_padt_mid_session_ends_it_and_redials(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_running()
    out = h.discovery_in(h.ac.padt(0x1234, (Tag.GENERIC_ERROR, b"admin reset")))
    (ended,) = h.events_of(out, SessionEnded)
    assert ended.reason is ExitReason.HANGUP and ended.detail == "padt"
    assert h.events_of(out, DiscoveryError)[0].text == "admin reset"
    assert h.discovery_of(out) == []  # no PADT answers a PADT
    assert h.core.state is State.HOLDOFF
    # A PADT for another session id is not ours.
    h2 = harness()
    h2.to_running()
    h2.discovery_in(h2.ac.padt(0x9999))
    assert h2.core.state is State.RUNNING


def test_terminate_request_from_the_peer_is_acked_and_ends_the_session(
    harness: Callable[..., H],
) -> None:
    h = harness()
    h.to_running()
    out = h.ppp_in(Protocol.LCP, encode_control(PppCode.TERMINATE_REQUEST, 9, b"bye"))
    (ack,) = h.ppp_of(out, Protocol.LCP)
    assert ack[1].code == PppCode.TERMINATE_ACK and ack[1].identifier == 9
    # RFC 1661 §5.5: wait one Restart period for the peer to finish.
    out = h.advance(h.now + 3.0)
    (ended,) = h.events_of(out, SessionEnded)
    assert ended.reason is ExitReason.HANGUP and ended.detail == "terminate_request"


def test_stop_sends_terminate_then_padt_and_does_not_redial(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_running()
    assert h.core.stop(h.now) is True
    out = h.drain()
    (term,) = h.ppp_of(out, Protocol.LCP)
    assert term[1].code == PppCode.TERMINATE_REQUEST
    out = h.ppp_in(Protocol.LCP, encode_control(PppCode.TERMINATE_ACK, term[1].identifier))
    assert [(s.packet.code, s.packet.session_id) for s in h.discovery_of(out)] == [
        (Code.PADT, 0x1234)
    ]
    (ended,) = h.events_of(out, SessionEnded)
    assert ended.reason is ExitReason.USER_REQUEST
    assert h.events_of(out, RedialScheduled) == [] and h.core.state is State.STOPPED
    assert h.core.next_deadline() is None


def test_stop_without_terminate_ack_still_sends_padt(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_running()
    h.core.stop(h.now)
    h.drain()
    h.core.finish_stop(h.now + 0.4)
    out = h.drain()
    assert [s.packet.code for s in h.discovery_of(out)] == [Code.PADT]
    assert h.core.state is State.STOPPED


def test_reconnect_sends_padt_and_dials_again(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_running()
    h.core.reconnect(h.now)
    out = h.drain()
    assert [s.packet.code for s in h.discovery_of(out)] == [Code.PADT, Code.PADI]
    assert h.events_of(out, SessionEnded)[0].reason is ExitReason.USER_REQUEST
    assert h.core.state is State.DISCOVERY


def test_carrier_loss_ends_the_session_and_carrier_redials(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_running()
    h.core.link_down(h.now)
    out = h.drain()
    (ended,) = h.events_of(out, SessionEnded)
    assert ended.reason is ExitReason.HANGUP and ended.detail == "carrier_lost"
    assert h.discovery_of(out) == [] and h.core.state is State.LINK_DOWN
    h.core.link_up(h.now + 1)
    assert [s.packet.code for s in h.discovery_of(h.drain())] == [Code.PADI]


def test_failed_attempts_back_off_doubling_and_maxfail_stops(harness: Callable[..., H]) -> None:
    h = harness(maxfail=3, discovery_attempts=1, discovery_timeout=1.0, holdoff=2.0)
    h.start()
    h.advance(1000)
    delays = [r.delay for r in h.events_of(h.outputs, RedialScheduled)]
    assert len(delays) == 2
    assert 1.8 <= delays[0] <= 2.2 and 3.6 <= delays[1] <= 4.4
    (stopped,) = h.events_of(h.outputs, RedialStopped)
    assert stopped.failures == 3 and stopped.reason is ExitReason.CONNECT_FAILED
    assert h.core.state is State.FAILED and h.core.next_deadline() is None
    assert h.core.dial_now(h.now) is True and h.core.state is State.DISCOVERY


def test_a_session_that_came_up_resets_the_failure_count(harness: Callable[..., H]) -> None:
    h = harness(discovery_attempts=1)
    h.start()
    h.advance(1.0)  # one failed attempt
    assert h.core.failures == 1
    h.advance(h.core.redial_at)
    uniq = h.host_uniq()
    h.discovery_in(h.ac.pado(uniq))
    h.discovery_in(h.ac.pads(uniq))
    ours = h.ppp_of(h.outputs, Protocol.LCP)[-1][1]
    h.ppp_in(Protocol.LCP, encode_control(PppCode.CONFIGURE_ACK, ours.identifier, ours.data))
    h.ppp_in(Protocol.LCP, h.ac.lcp_request(auth=None))
    ipcp = h.ppp_of(h.outputs, Protocol.IPCP)[-1][1]
    h.ppp_in(
        Protocol.IPCP,
        h.ac.control(
            PppCode.CONFIGURE_NAK, ipcp.identifier, [(IpcpOption.IP_ADDRESS, bytes([10, 0, 0, 2]))]
        ),
    )
    ipcp = h.ppp_of(h.outputs, Protocol.IPCP)[-1][1]
    h.ppp_in(Protocol.IPCP, encode_control(PppCode.CONFIGURE_ACK, ipcp.identifier, ipcp.data))
    h.ppp_in(
        Protocol.IPCP,
        h.ac.control(PppCode.CONFIGURE_REQUEST, 1, [(IpcpOption.IP_ADDRESS, bytes([10, 0, 0, 1]))]),
    )
    assert h.core.state is State.RUNNING and h.core.failures == 0


def test_malformed_input_is_counted_never_raised(harness: Callable[..., H]) -> None:
    h = harness()
    h.to_running()
    for payload in (b"", b"\x11", b"\x11\x07\x00\x00\xff\xff", b"\x22\x07\x00\x00\x00\x00"):
        h.discovery_in(payload)
    for protocol, info in (
        (Protocol.LCP, b""),
        (Protocol.LCP, b"\x01\x01\x00\x02"),
        (Protocol.LCP, b"\x01\x01\x00\x06\x01\x00"),
        (Protocol.IPCP, b"\x01\x01\x00\x0a\x03\x01\x00\x00\x00\x00"),
        (Protocol.PAP, b"\x02"),
    ):
        h.ppp_in(protocol, info)
    dropped = h.core.all_counters()["dropped"]
    assert dropped["malformed_discovery"] == 4
    assert dropped["lcp_malformed"] == 2
    assert dropped["lcp_malformed_options"] == 1
    assert dropped["ipcp_malformed_options"] == 1
    assert h.core.state is State.RUNNING
