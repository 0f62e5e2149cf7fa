"""Fuzzing the codecs and the core (DESIGN §9): decoders raise only
DecodeError; the core never raises at all, in any state, and counts drops.

Hypothesis runs derandomized without an example database, so every run is
the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
from routerd_pppoe.codec import Code
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.codec import Tag
from routerd_pppoe.codec import decode_discovery
from routerd_pppoe.codec import decode_session
from routerd_pppoe.codec import encode_discovery
from routerd_pppoe.codec import parse_ethernet
from routerd_pppoe.pppcodec import ControlPacket
from routerd_pppoe.pppcodec import IpcpOption
from routerd_pppoe.pppcodec import LcpOption
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import decode_chap
from routerd_pppoe.pppcodec import decode_control
from routerd_pppoe.pppcodec import decode_options
from routerd_pppoe.pppcodec import decode_pap_reply
from routerd_pppoe.pppcodec import encode_control
from routerd_pppoe.pppcodec import encode_options
from routerd_pppoe.pppcodec import split_protocol

FUZZ = settings(
    max_examples=500,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TAG_TYPES = st.sampled_from([int(t) for t in Tag] + [0x0109, 0xFFFF])
tag = st.tuples(TAG_TYPES, st.binary(max_size=40))
discovery = st.builds(
    lambda code, sid, tags: encode_discovery(code, sid, tags),
    st.sampled_from([int(c) for c in Code] + [0x42]),
    st.integers(0, 0xFFFF),
    st.lists(tag, max_size=8),
)
option = st.tuples(st.integers(0, 255), st.binary(max_size=12))
lcp_like = st.builds(
    lambda code, ident, options: encode_control(code, ident, encode_options(options)),
    st.integers(0, 20),
    st.integers(0, 255),
    st.lists(option, max_size=6),
)


def mutate(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data[: max(0, len(data) - cut)])
    for pos, value in flips:
        if out:
            out[pos % len(out)] ^= value
    return bytes(out)


mutations = st.tuples(
    st.integers(0, 8), st.lists(st.tuples(st.integers(0, 255), st.integers(1, 255)), max_size=4)
)
escapes: list[str] = []


def only_decode_error(fn: Callable[[], object]) -> None:
    try:
        fn()
    except DecodeError:
        pass
    except Exception as exc:  # pragma: no cover - the failure being tested for
        escapes.append(f"{type(exc).__name__}: {exc}")
        raise


@FUZZ
@given(st.one_of(st.binary(max_size=80), discovery), mutations)
def test_discovery_decoder(data: bytes, mut: tuple[int, list[tuple[int, int]]]) -> None:
    payload = mutate(data, *mut)
    only_decode_error(lambda: decode_discovery(payload))
    only_decode_error(lambda: decode_session(payload))
    only_decode_error(lambda: parse_ethernet(payload))


@FUZZ
@given(st.one_of(st.binary(max_size=60), lcp_like), mutations)
def test_ppp_decoders(data: bytes, mut: tuple[int, list[tuple[int, int]]]) -> None:
    info = mutate(data, *mut)
    only_decode_error(lambda: split_protocol(info))
    only_decode_error(lambda: decode_control(info))
    only_decode_error(lambda: decode_options(info))
    packet = ControlPacket(info[0] if info else 0, 1, info[1:])
    only_decode_error(lambda: decode_chap(packet))
    only_decode_error(lambda: decode_pap_reply(packet))


PROTOCOLS = [int(p) for p in Protocol] + [0x0001, 0x80FD, 0x8281]


def _running(harness: Callable[..., Any], stage: str) -> Any:
    h = harness(ipv6=True)
    if stage == "discovery":
        h.start()
    elif stage == "request":
        h.start()
        h.discovery_in(h.ac.pado(h.host_uniq()))
    elif stage == "establish":
        h.to_session()
    elif stage == "authenticate":
        h.lcp_open(auth=h.CHAP_MD5)
    else:
        h.to_running()
    return h


STAGES = ["discovery", "request", "establish", "authenticate", "running"]


@pytest.mark.parametrize("stage", STAGES)
def test_core_never_raises(harness: Callable[..., Any], stage: str) -> None:
    h = _running(harness, stage)
    hostile = st.one_of(
        st.tuples(st.just("disc"), st.one_of(discovery, st.binary(max_size=40)), mutations),
        st.tuples(
            st.sampled_from(PROTOCOLS), st.one_of(lcp_like, st.binary(max_size=40)), mutations
        ),
    )

    @FUZZ
    @given(st.lists(hostile, min_size=1, max_size=6))
    def run(inputs: list[tuple[Any, bytes, tuple[int, list[tuple[int, int]]]]]) -> None:
        for kind, data, mut in inputs:
            payload = mutate(data, *mut)
            try:
                if kind == "disc":
                    h.core.receive_discovery(h.AC_MAC, h.MAC, payload, h.now)
                else:
                    h.core.receive_ppp(kind, payload, h.now)
                h.core.on_timer(h.now)
                h.drain()
            except Exception as exc:  # pragma: no cover - the failure being tested for
                escapes.append(f"{stage}: {type(exc).__name__}: {exc}")
                raise

    run()
    assert escapes == []
    # Everything hostile was accounted for somewhere: dropped, rejected or answered.
    assert sum(h.core.all_counters()["dropped"].values()) > 0


def test_lcp_and_ipcp_options_fuzzed_through_the_core(harness: Callable[..., Any]) -> None:
    h = _running(harness, "running")

    @FUZZ
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([int(o) for o in LcpOption] + [0, 200]), st.binary(max_size=8)
            ),
            max_size=6,
        ),
        st.lists(
            st.tuples(
                st.sampled_from([int(o) for o in IpcpOption] + [0, 77]), st.binary(max_size=8)
            ),
            max_size=6,
        ),
        st.integers(1, 4),
    )
    def run(lcp: list[tuple[int, bytes]], ipcp: list[tuple[int, bytes]], code: int) -> None:
        h.core.receive_ppp(Protocol.LCP, encode_control(code, 9, encode_options(lcp)), h.now)
        h.core.receive_ppp(Protocol.IPCP, encode_control(code, 9, encode_options(ipcp)), h.now)
        h.drain()

    run()
    assert escapes == []
