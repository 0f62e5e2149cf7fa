"""The RFC 1661 §4 option negotiation automaton, shared by LCP, IPCP and IPv6CP.

:class:`Fsm` implements the state transition table of RFC 1661 §4.1 (states,
events, actions with their RFC names) for one control protocol. What is
specific to a protocol lives in an :class:`OptionPolicy`: the options we
request, the verdict on the peer's, and what a Nak or Reject of ours changes.
The layer above (:class:`FsmOwner`, the PPP link) gets the This-Layer-Up,
-Down, -Started and -Finished actions, sends the packets, and handles codes
other than 1-7 (LCP's Echo, Discard, Protocol-Reject ...).

Sans-I/O: no clock, no socket. Every entry point takes ``now``;
:attr:`Fsm.deadline` is when :meth:`Fsm.timeout` is due (the Restart timer).

Choices where RFC 1661 leaves room (pppd's behaviour, named):

* A retransmitted Configure-Request keeps its Identifier (§5.1 allows it),
  so a late Ack of the previous copy still counts. A new request (changed
  options, or after a valid reply) gets a new Identifier.
* Max-Failure (§4.6): after that many Configure-Naks sent without an Ack in
  between, further Naks become Rejects of the same options.
* A peer that Naks or Rejects our requests more than Max-Configure times in a
  row without ever Acking is "not converging": the layer finishes as on TO-.
* ``resend_on_first_request``: when the peer's first Configure-Request
  arrives while ours is unanswered, send ours again at once. pppd-based ACs
  start LCP about a second after the PADS, so our first request is lost and
  would otherwise cost a whole Restart interval.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
import enum
import logging
from typing import Protocol

from routerd_pppoe import timing
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.pppcodec import Code
from routerd_pppoe.pppcodec import ControlPacket
from routerd_pppoe.pppcodec import Option
from routerd_pppoe.pppcodec import decode_control
from routerd_pppoe.pppcodec import decode_options
from routerd_pppoe.pppcodec import encode_control
from routerd_pppoe.pppcodec import encode_options
from routerd_pppoe.pppcodec import protocol_name

__all__ = ["Fsm", "FsmOwner", "FsmState", "OptionPolicy", "Verdict"]

log = logging.getLogger(__name__)


class FsmState(enum.Enum):
    """RFC 1661 §4.2 states, numbered as in the table."""

    INITIAL = 0
    STARTING = 1
    CLOSED = 2
    STOPPED = 3
    CLOSING = 4
    STOPPING = 5
    REQ_SENT = 6
    ACK_RCVD = 7
    ACK_SENT = 8
    OPENED = 9


_S = FsmState
_NEGOTIATING = frozenset({_S.REQ_SENT, _S.ACK_RCVD, _S.ACK_SENT})
_TIMED = frozenset({_S.CLOSING, _S.STOPPING, _S.REQ_SENT, _S.ACK_RCVD, _S.ACK_SENT})


@dataclass(frozen=True)
class Verdict:
    """The answer to a peer's Configure-Request: a code and its options.

    ``code`` is ``CONFIGURE_ACK`` (``options`` are the request's, unchanged),
    ``CONFIGURE_NAK`` (the values we would accept) or ``CONFIGURE_REJECT``
    (the options we do not take, unchanged).
    """

    code: int
    options: tuple[Option, ...]


class OptionPolicy:
    """What one protocol requests and accepts. Subclass per protocol."""

    def reset(self) -> None:
        """A new negotiation begins (This-Layer-Started, or a new request cycle)."""

    def request(self) -> list[Option]:
        """The options of our next Configure-Request."""
        return []

    def check(self, options: list[Option]) -> Verdict:
        """The verdict on the peer's Configure-Request (RFC 1661 §5.1-5.4).

        Reject outranks Nak: when any option must be rejected, the answer
        is a Configure-Reject of exactly those.
        """
        return Verdict(Code.CONFIGURE_ACK, tuple(options))

    def acked(self, options: list[Option]) -> None:
        """Our request was acknowledged; these values are in force."""

    def nakked(self, options: list[Option]) -> None:
        """The peer Nak'd; adjust what :meth:`request` returns."""

    def rejected(self, options: list[Option]) -> None:
        """The peer rejected these options; stop requesting them."""

    def peer_acked(self, options: list[Option]) -> None:
        """We acknowledged these peer options; they are in force."""


class FsmOwner(Protocol):
    """The layer above an :class:`Fsm` (the PPP link)."""

    def send_control(self, protocol: int, packet: bytes) -> None:
        """Queue a control packet of ``protocol``."""
        ...

    def layer_up(self, fsm: Fsm, now: float) -> None:
        """This-Layer-Up: the automaton entered Opened."""
        ...

    def layer_down(self, fsm: Fsm, now: float) -> None:
        """This-Layer-Down: it left Opened."""
        ...

    def layer_started(self, fsm: Fsm, now: float) -> None:
        """This-Layer-Started: it needs the lower layer."""
        ...

    def layer_finished(self, fsm: Fsm, now: float) -> None:
        """This-Layer-Finished: it no longer needs the lower layer (``fsm.finish_reason`` says why)."""
        ...

    def extra_code(self, fsm: Fsm, packet: ControlPacket, now: float) -> bool:
        """Handle a code other than 1-7; False makes it an unknown code (Code-Reject)."""
        ...


class Fsm:
    """One control protocol's automaton (RFC 1661 §4).

    :param protocol: the PPP protocol number (LCP 0xc021, IPCP 0x8021 ...).
    :param policy: the protocol's option policy.
    :param owner: receives the layer actions and the packets to send.
    :param restart_timer: seconds (§4.6, default 3).
    """

    def __init__(
        self,
        protocol: int,
        policy: OptionPolicy,
        owner: FsmOwner,
        *,
        restart_timer: float = timing.RESTART_TIMER,
        max_configure: int = timing.MAX_CONFIGURE,
        max_terminate: int = timing.MAX_TERMINATE,
        max_failure: int = timing.MAX_FAILURE,
        resend_on_first_request: bool = False,
    ) -> None:
        self.protocol = protocol
        self.name = protocol_name(protocol)
        self.policy = policy
        self.owner = owner
        self.restart_timer = restart_timer
        self.max_configure = max_configure
        self.max_terminate = max_terminate
        self.max_failure = max_failure
        self.resend_on_first_request = resend_on_first_request
        self.state = _S.INITIAL
        self.deadline: float | None = None
        self.restart_count = 0
        self.identifier = 0
        self._req_id: int | None = None
        self._req_options: list[Option] = []
        self._req_bytes = b""
        self._naks_sent = 0
        self._replies_without_ack = 0
        self._peer_request_seen = False
        self._reply_seen = False
        #: Why the layer finished last: ``timeout``, ``not_converging``,
        #: ``terminated`` (by the peer), ``closed`` (by us), ``rejected``.
        self.finish_reason: str | None = None
        self._closing_reason: str | None = None
        self.terminate_reason = b""
        self.counters: dict[str, Counter[str]] = {
            "sent": Counter(),
            "received": Counter(),
            "dropped": Counter(),
        }

    def __repr__(self) -> str:
        return f"<Fsm {self.name} {self.state.name}>"

    @property
    def opened(self) -> bool:
        return self.state is _S.OPENED

    # -- administrative and lower-layer events (RFC 1661 §4.3) -----------------
    def up(self, now: float) -> None:
        if self.state is _S.INITIAL:
            self._to(_S.CLOSED)
        elif self.state is _S.STARTING:
            self._begin()
            self._irc(self.max_configure)
            self._scr(now)
            self._to(_S.REQ_SENT)

    def down(self, now: float) -> None:
        state = self.state
        self.deadline = None
        if state in (_S.CLOSED, _S.CLOSING):
            self._to(_S.INITIAL)
        elif state is _S.STOPPED:
            self._to(_S.STARTING)
            self.owner.layer_started(self, now)
        elif state in (_S.STOPPING, *_NEGOTIATING):
            self._to(_S.STARTING)
        elif state is _S.OPENED:
            self._to(_S.STARTING)
            self.owner.layer_down(self, now)

    def open(self, now: float) -> None:
        state = self.state
        if state is _S.INITIAL:
            self._to(_S.STARTING)
            self.owner.layer_started(self, now)
        elif state is _S.CLOSED:
            self._begin()
            self._irc(self.max_configure)
            self._scr(now)
            self._to(_S.REQ_SENT)
        elif state is _S.CLOSING:
            self._to(_S.STOPPING)

    def close(self, now: float, reason: bytes = b"") -> None:
        state = self.state
        self.terminate_reason = reason
        if state not in (_S.INITIAL, _S.CLOSED):
            self._closing_reason = "closed"
        if state is _S.STARTING:
            self._to(_S.INITIAL)
            self._finished(now, "closed")
        elif state is _S.STOPPED:
            self._to(_S.CLOSED)
        elif state is _S.STOPPING:
            self._to(_S.CLOSING)
        elif state in _NEGOTIATING:
            self._irc(self.max_terminate)
            self._str(now)
            self._to(_S.CLOSING)
        elif state is _S.OPENED:
            self._to(_S.CLOSING)
            self.owner.layer_down(self, now)
            self._irc(self.max_terminate)
            self._str(now)

    def timeout(self, now: float) -> None:
        """The Restart timer expired (TO+ or TO-, RFC 1661 §4.3)."""
        if self.deadline is None or now < self.deadline or self.state not in _TIMED:
            return
        self.deadline = None
        state = self.state
        if self.restart_count > 0:
            if state in (_S.CLOSING, _S.STOPPING):
                self._str(now)
            elif state in (_S.REQ_SENT, _S.ACK_RCVD):
                self._scr(now, retransmit=state is _S.REQ_SENT)
                self._to(_S.REQ_SENT)
            else:  # ACK_SENT
                self._scr(now, retransmit=True)
            return
        if state is _S.CLOSING:
            self._to(_S.CLOSED)
            self._finished(now, "closed")
        elif state is _S.STOPPING:
            self._to(_S.STOPPED)
            self._finished(now, "terminated")
        else:
            self._to(_S.STOPPED)
            self._finished(now, "timeout")

    # -- received packets ------------------------------------------------------
    def receive(self, info: bytes, now: float) -> None:
        """A packet of this protocol; malformed ones are counted and dropped."""
        try:
            packet = decode_control(info)
        except DecodeError:
            self._drop("malformed")
            return
        if self.state in (_S.INITIAL, _S.STARTING):
            self._drop("not_started")  # RFC 1661 §4.2: the lower layer is not up for us
            return
        code = packet.code
        try:
            name = Code(code).name
        except ValueError:
            name = str(code)
        self.counters["received"][name] += 1
        if code == Code.CONFIGURE_REQUEST:
            self._rcr(packet, now)
        elif code == Code.CONFIGURE_ACK:
            self._rca(packet, now)
        elif code in (Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
            self._rcn(packet, now)
        elif code == Code.TERMINATE_REQUEST:
            self._rtr(packet, now)
        elif code == Code.TERMINATE_ACK:
            self._rta(now)
        elif code == Code.CODE_REJECT:
            self._code_reject(packet, now)
        elif not self.owner.extra_code(self, packet, now):
            self._ruc(info, packet, now)

    def _rcr(self, packet: ControlPacket, now: float) -> None:
        state = self.state
        if state in (_S.CLOSING, _S.STOPPING):
            return
        if state is _S.CLOSED:
            self._sta(packet.identifier)
            return
        try:
            options = decode_options(packet.data)
        except DecodeError:
            self._drop("malformed_options")
            return
        verdict = self.policy.check(options)
        if verdict.code == Code.CONFIGURE_NAK:
            self._naks_sent += 1
            if self._naks_sent > self.max_failure:
                # RFC 1661 §4.6 Max-Failure: the Naks are not converging.
                verdict = Verdict(
                    Code.CONFIGURE_REJECT,
                    tuple(o for o in options if o[0] in {t for t, _ in verdict.options}),
                )
        good = verdict.code == Code.CONFIGURE_ACK
        first = not self._peer_request_seen
        self._peer_request_seen = True
        if state is _S.OPENED:
            self._to(_S.REQ_SENT)
            self.owner.layer_down(self, now)
            self._scr(now)
        elif state is _S.STOPPED:
            self._irc(self.max_configure)
            self._scr(now)
        self._send_verdict(packet.identifier, verdict)
        if good:
            self._naks_sent = 0
            self.policy.peer_acked(options)
        if first and self.resend_on_first_request and state is _S.REQ_SENT and not self._reply_seen:
            # pppd-based ACs ignore requests sent before their LCP started.
            self._scr(now, retransmit=True, count=False)
        if state is _S.ACK_RCVD and good:
            self._to(_S.OPENED)
            self.deadline = None
            self.owner.layer_up(self, now)
        elif state in (_S.REQ_SENT, _S.ACK_SENT, _S.OPENED, _S.STOPPED):
            self._to(_S.ACK_SENT if good else _S.REQ_SENT)

    def _valid_reply(self, packet: ControlPacket) -> bool:
        if self._req_id is None or packet.identifier != self._req_id:
            self._drop("bad_identifier")  # RFC 1661 §5.2: silently discarded
            return False
        return True

    def _rca(self, packet: ControlPacket, now: float) -> None:
        state = self.state
        if state in (_S.CLOSED, _S.STOPPED):
            self._sta(packet.identifier)
            return
        if state in (_S.CLOSING, _S.STOPPING) or not self._valid_reply(packet):
            return
        if packet.data != self._req_bytes:
            # RFC 1661 §5.2: the options of an Ack MUST match the request exactly.
            self._drop("ack_mismatch")
            return
        self._reply_seen = True
        self._replies_without_ack = 0
        self._req_id = None  # a duplicate Ack is not a second one
        self.policy.acked(list(self._req_options))
        if state is _S.REQ_SENT:
            self._irc(self.max_configure)
            self._to(_S.ACK_RCVD)
        elif state is _S.ACK_RCVD:
            self._scr(now)  # crossed connection (x)
            self._to(_S.REQ_SENT)
        elif state is _S.ACK_SENT:
            self._irc(self.max_configure)
            self._to(_S.OPENED)
            self.deadline = None
            self.owner.layer_up(self, now)
        elif state is _S.OPENED:
            self._to(_S.REQ_SENT)
            self.owner.layer_down(self, now)
            self._scr(now)

    def _rcn(self, packet: ControlPacket, now: float) -> None:
        state = self.state
        if state in (_S.CLOSED, _S.STOPPED):
            self._sta(packet.identifier)
            return
        if state in (_S.CLOSING, _S.STOPPING) or not self._valid_reply(packet):
            return
        try:
            options = decode_options(packet.data)
        except DecodeError:
            self._drop("malformed_options")
            return
        if packet.code == Code.CONFIGURE_REJECT:
            sent = set(self._req_options)
            if any(o not in sent for o in options):
                # RFC 1661 §5.4: a Reject carries our options unchanged.
                self._drop("reject_mismatch")
                return
            self.policy.rejected(options)
        else:
            self.policy.nakked(options)
        self._reply_seen = True
        self._req_id = None
        self._replies_without_ack += 1
        if self._replies_without_ack > self.max_configure:
            self.deadline = None
            if state is _S.OPENED:
                self.owner.layer_down(self, now)
            self._to(_S.STOPPED)
            self._finished(now, "not_converging")
            return
        if state is _S.REQ_SENT:
            self._irc(self.max_configure)
            self._scr(now)
        elif state is _S.ACK_RCVD:
            self._scr(now)
            self._to(_S.REQ_SENT)
        elif state is _S.ACK_SENT:
            self._irc(self.max_configure)
            self._scr(now)
        elif state is _S.OPENED:
            self._to(_S.REQ_SENT)
            self.owner.layer_down(self, now)
            self._scr(now)

    def _rtr(self, packet: ControlPacket, now: float) -> None:
        state = self.state
        self.terminate_reason = packet.data
        self._sta(packet.identifier)
        if state in _NEGOTIATING:
            self._to(_S.REQ_SENT)
        elif state is _S.OPENED:
            self._to(_S.STOPPING)
            self.owner.layer_down(self, now)
            self.restart_count = 0  # zrc: wait one Restart period, then finish
            self.deadline = now + self.restart_timer

    def _rta(self, now: float) -> None:
        state = self.state
        if state is _S.CLOSING:
            self.deadline = None
            self._to(_S.CLOSED)
            self._finished(now, "closed")
        elif state is _S.STOPPING:
            self.deadline = None
            self._to(_S.STOPPED)
            self._finished(now, "terminated")
        elif state is _S.ACK_RCVD:
            self._to(_S.REQ_SENT)
        elif state is _S.OPENED:
            self._to(_S.REQ_SENT)
            self.owner.layer_down(self, now)
            self._scr(now)

    def _code_reject(self, packet: ControlPacket, now: float) -> None:
        rejected = packet.data[0] if packet.data else 0
        if 1 <= rejected <= 7:
            self.rxj_bad(now)  # RXJ-: the peer cannot do what negotiation needs
        else:
            self.rxj_good()

    def rxj_good(self) -> None:
        """RXJ+: a rejection we can live with (RFC 1661 §4.3)."""
        if self.state is _S.ACK_RCVD:
            self._to(_S.REQ_SENT)

    def rxj_bad(self, now: float) -> None:
        """RXJ-: a rejection that makes this protocol unusable (RFC 1661 §4.3)."""
        state = self.state
        if state in (_S.CLOSED, _S.CLOSING):
            self.deadline = None
            self._to(_S.CLOSED)
            self._finished(now, "rejected")
        elif state in (_S.STOPPED, _S.STOPPING, *_NEGOTIATING):
            self.deadline = None
            self._to(_S.STOPPED)
            self._finished(now, "rejected")
        elif state is _S.OPENED:
            self._closing_reason = "rejected"
            self._to(_S.STOPPING)
            self.owner.layer_down(self, now)
            self._irc(self.max_terminate)
            self._str(now)

    def _ruc(self, info: bytes, packet: ControlPacket, now: float) -> None:
        # RFC 1661 §5.6: Code-Reject carries the rejected packet, cut to fit the MRU.
        self.counters["dropped"]["unknown_code"] += 1
        rejected = info[: timing.PPPOE_MRU - 4]
        self.identifier = (self.identifier + 1) & 0xFF
        self._send(Code.CODE_REJECT, self.identifier, rejected)

    # -- actions (RFC 1661 §4.4) ------------------------------------------------
    def _to(self, state: FsmState) -> None:
        if state is not self.state:
            log.debug("%s %s -> %s", self.name, self.state.name, state.name)
        self.state = state

    def _irc(self, count: int) -> None:
        self.restart_count = count

    def _begin(self) -> None:
        """A negotiation starts from scratch (Up in Starting, Open in Closed)."""
        self._peer_request_seen = False
        self._reply_seen = False
        self._naks_sent = 0
        self._replies_without_ack = 0
        self._closing_reason = None
        self.policy.reset()

    def _finished(self, now: float, reason: str) -> None:
        self.finish_reason = self._closing_reason or reason
        self._closing_reason = None
        self.owner.layer_finished(self, now)

    def _send(self, code: int, identifier: int, data: bytes) -> None:
        try:
            name = Code(code).name
        except ValueError:
            name = str(code)
        self.counters["sent"][name] += 1
        self.owner.send_control(self.protocol, encode_control(code, identifier, data))

    def _scr(self, now: float, *, retransmit: bool = False, count: bool = True) -> None:
        options = self.policy.request()
        data = encode_options(options)
        if not retransmit or self._req_id is None or data != self._req_bytes:
            self.identifier = (self.identifier + 1) & 0xFF
        self._req_id = self.identifier
        self._req_options = options
        self._req_bytes = data
        if count:
            self.restart_count -= 1
        self.deadline = now + self.restart_timer
        self._send(Code.CONFIGURE_REQUEST, self.identifier, data)

    def _send_verdict(self, identifier: int, verdict: Verdict) -> None:
        self._send(verdict.code, identifier, encode_options(verdict.options))

    def _str(self, now: float) -> None:
        self.restart_count -= 1
        self.deadline = now + self.restart_timer
        self.identifier = (self.identifier + 1) & 0xFF
        self._send(Code.TERMINATE_REQUEST, self.identifier, self.terminate_reason)

    def _sta(self, identifier: int) -> None:
        self._send(Code.TERMINATE_ACK, identifier, b"")

    def send_code(self, code: int, data: bytes) -> int:
        """Send a packet of another code (LCP Echo-Request ...); returns its Identifier."""
        self.identifier = (self.identifier + 1) & 0xFF
        self._send(code, self.identifier, data)
        return self.identifier

    def reply(self, code: int, identifier: int, data: bytes) -> None:
        """Send a reply with the request's Identifier (Echo-Reply ...)."""
        self._send(code, identifier, data)

    def _drop(self, reason: str) -> None:
        self.counters["dropped"][reason] += 1
