"""The authenticatee side of PAP (RFC 1334 §2) and CHAP-MD5 (RFC 1994).

Sans-I/O: :meth:`AuthClient.start`, :meth:`AuthClient.receive` and
:meth:`AuthClient.timeout` queue packets through ``send`` and end with
:attr:`AuthClient.result` set to ``"success"`` or ``"failure"`` (with
:attr:`AuthClient.message`, the peer's text).

* PAP: Authenticate-Request every Restart interval (3 s), at most
  ``timing.AUTH_MAX_REQUESTS`` times (pppd's pap-restart and
  pap-max-authreq); an Ack succeeds, a Nak fails, silence fails.
* CHAP: wait for the peer's Challenge (at most ``timing.AUTH_WAIT``);
  answer each Challenge with MD5(Identifier, secret, Challenge) and our
  name; Success succeeds, Failure fails. A Challenge after Success (RFC
  1994 §2.3: the authenticator may re-challenge at any time) is answered too;
  a repeated Challenge with the same Identifier gets the same Response.

The password only ever goes into the packets; it is not kept in any
message, result or counter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from routerd_pppoe import timing
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.lcp import AUTH_CHAP
from routerd_pppoe.lcp import AUTH_PAP
from routerd_pppoe.pppcodec import ChapCode
from routerd_pppoe.pppcodec import ControlPacket
from routerd_pppoe.pppcodec import PapCode
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import chap_md5_response
from routerd_pppoe.pppcodec import decode_chap
from routerd_pppoe.pppcodec import decode_control
from routerd_pppoe.pppcodec import decode_pap_reply
from routerd_pppoe.pppcodec import encode_chap_response
from routerd_pppoe.pppcodec import encode_pap_request
from routerd_pppoe.randomness import RandomLike

__all__ = ["AuthClient"]

SUCCESS = "success"
FAILURE = "failure"


class AuthClient:
    """One authentication of ``method`` (``pap`` or ``chap``).

    :param send: queues ``(protocol, packet)``.
    """

    def __init__(
        self,
        method: str,
        username: bytes,
        password: bytes,
        send: Callable[[int, bytes], None],
        rng: RandomLike,
        *,
        restart_timer: float = timing.RESTART_TIMER,
    ) -> None:
        if method not in (AUTH_PAP, AUTH_CHAP):
            raise ValueError(f"unknown auth method {method!r}")
        self.method = method
        self.protocol = Protocol.PAP if method == AUTH_PAP else Protocol.CHAP
        self._username = username
        self._password = password
        self._send = send
        self.restart_timer = restart_timer
        self.identifier = rng.getrandbits(8)
        self.deadline: float | None = None
        self.transmissions = 0
        self.result: str | None = None
        self.message = ""
        self.succeeded_once = False
        self.counters: dict[str, Counter[str]] = {
            "sent": Counter(),
            "received": Counter(),
            "dropped": Counter(),
        }
        self._last_challenge: tuple[int, bytes] | None = None

    def start(self, now: float) -> None:
        if self.method == AUTH_PAP:
            self._pap_request(now)
        else:
            self.deadline = now + timing.AUTH_WAIT

    def _pap_request(self, now: float) -> None:
        self.transmissions += 1
        self.deadline = now + self.restart_timer
        self.counters["sent"]["Authenticate-Request"] += 1
        self._send(
            Protocol.PAP, encode_pap_request(self.identifier, self._username, self._password)
        )

    def timeout(self, now: float) -> None:
        if self.deadline is None or now < self.deadline or self.result is not None:
            return
        self.deadline = None
        if self.method == AUTH_PAP and self.transmissions < timing.AUTH_MAX_REQUESTS:
            self._pap_request(now)
            return
        self._finish(
            FAILURE,
            "no answer to PAP Authenticate-Request"
            if self.method == AUTH_PAP
            else "the peer sent no CHAP Challenge",
        )

    def receive(self, info: bytes, now: float) -> None:
        try:
            packet = decode_control(info)
            if self.method == AUTH_PAP:
                self._pap(packet)
            else:
                self._chap(packet, now)
        except DecodeError:
            self.counters["dropped"]["malformed"] += 1

    def _pap(self, packet: ControlPacket) -> None:
        if packet.code not in (PapCode.AUTHENTICATE_ACK, PapCode.AUTHENTICATE_NAK):
            self.counters["dropped"]["unexpected_code"] += 1
            return
        if packet.identifier != self.identifier:
            self.counters["dropped"]["bad_identifier"] += 1
            return
        if self.result is not None:
            return  # a duplicate answer to a retransmission
        message = decode_pap_reply(packet)
        if packet.code == PapCode.AUTHENTICATE_ACK:
            self.counters["received"]["Authenticate-Ack"] += 1
            self._finish(SUCCESS, message)
        else:
            self.counters["received"]["Authenticate-Nak"] += 1
            self._finish(FAILURE, message or "PAP Authenticate-Nak")

    def _chap(self, packet: ControlPacket, now: float) -> None:
        chap = decode_chap(packet)
        if chap.code == ChapCode.CHALLENGE:
            self.counters["received"]["Challenge"] += 1
            if self.result == FAILURE:
                return
            key = (chap.identifier, chap.value)
            self._last_challenge = key
            response = chap_md5_response(chap.identifier, self._password, chap.value)
            self.counters["sent"]["Response"] += 1
            self._send(
                Protocol.CHAP, encode_chap_response(chap.identifier, response, self._username)
            )
            if self.result is None:
                # The peer retransmits its Challenge if our Response is lost.
                self.deadline = now + timing.AUTH_WAIT
            return
        if chap.code == ChapCode.RESPONSE:
            self.counters["dropped"]["unexpected_code"] += 1
            return
        if self._last_challenge is None or chap.identifier != self._last_challenge[0]:
            self.counters["dropped"]["bad_identifier"] += 1
            return
        if chap.code == ChapCode.SUCCESS:
            self.counters["received"]["Success"] += 1
            if self.result is None:
                self._finish(SUCCESS, chap.message)
        else:
            self.counters["received"]["Failure"] += 1
            self._finish(FAILURE, chap.message or "CHAP Failure")

    def _finish(self, result: str, message: str) -> None:
        self.result = result
        self.deadline = None
        # A peer echoing the password back must not put it in a message.
        if self._password and self._password.decode("utf-8", "replace") in message:
            message = message.replace(self._password.decode("utf-8", "replace"), "***")
        self.message = message
        if result == SUCCESS:
            self.succeeded_once = True
