"""The PPP link over one PPPoE session (RFC 1661 §3), sans-I/O.

Phases, pppd's names (``pppd/pppd.h``): ESTABLISH (LCP), AUTHENTICATE (PAP
or CHAP, when the AC asked for it), NETWORK (IPCP, and IPv6CP with
``ipv6``), RUNNING (IPCP opened), TERMINATE (our Terminate-Request is out).

The link answers what every PPP implementation must (RFC 1661 §5.7-5.9):
Echo-Request with Echo-Reply in the Opened state, Discard-Request silently,
Protocol-Reject for a protocol it does not speak (including IPv6CP without
``ipv6``), Code-Reject for an unknown LCP code. Keepalive: an Echo-Request
every ``echo_interval`` seconds once LCP is open; when ``echo_failure`` are
outstanding at the next interval the peer is dead (pppd's LcpEchoCheck).

:attr:`PppLink.finished` is set once the link is over, with the exit reason;
the client core then ends the PPPoE session.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
import enum

from routerd_pppoe import timing
from routerd_pppoe.auth import FAILURE
from routerd_pppoe.auth import SUCCESS
from routerd_pppoe.auth import AuthClient
from routerd_pppoe.events import AuthFailed
from routerd_pppoe.events import AuthSucceeded
from routerd_pppoe.events import CoreEvent
from routerd_pppoe.events import EchoReply
from routerd_pppoe.events import EchoTimeout
from routerd_pppoe.events import ExitReason
from routerd_pppoe.events import Ipv6Up
from routerd_pppoe.events import NetworkDown
from routerd_pppoe.events import NetworkUp
from routerd_pppoe.fsm import Fsm
from routerd_pppoe.fsm import FsmState
from routerd_pppoe.lcp import AUTH_CHAP
from routerd_pppoe.lcp import AUTH_PAP
from routerd_pppoe.lcp import LcpConfig
from routerd_pppoe.lcp import LcpPolicy
from routerd_pppoe.ncp import IpcpPolicy
from routerd_pppoe.ncp import Ipv6cpPolicy
from routerd_pppoe.ncp import link_local
from routerd_pppoe.pppcodec import Code
from routerd_pppoe.pppcodec import ControlPacket
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import join_protocol
from routerd_pppoe.pppcodec import protocol_name
from routerd_pppoe.randomness import RandomLike

__all__ = ["LinkConfig", "LinkEnd", "Phase", "PppLink"]


class Phase(enum.Enum):
    DEAD = "DEAD"
    ESTABLISH = "ESTABLISH"
    AUTHENTICATE = "AUTHENTICATE"
    NETWORK = "NETWORK"
    RUNNING = "RUNNING"
    TERMINATE = "TERMINATE"


@dataclass(frozen=True)
class LinkConfig:
    """:ivar mac: our Ethernet MAC (the IPv6 interface identifier comes from it).
    :ivar mru: the MRU we ask for.
    :ivar max_send: the largest PPP payload the path carries (1492, or the
        RFC 4638 PPP-Max-Payload in force): the interface MTU is at most this.
    :ivar echo_interval: seconds between LCP Echo-Requests (0: none).
    """

    mac: bytes
    username: bytes
    password: bytes = field(repr=False)
    auth_methods: frozenset[str] = frozenset({AUTH_PAP, AUTH_CHAP})
    mru: int = timing.PPPOE_MRU
    max_send: int = timing.PPPOE_MRU
    ipv6: bool = False
    want_dns: bool = True
    echo_interval: float = 30.0
    echo_failure: int = 4
    restart_timer: float = timing.RESTART_TIMER


@dataclass(frozen=True)
class LinkEnd:
    reason: ExitReason
    detail: str
    message: str
    stage: str


class PppLink:
    """LCP, authentication and the NCPs of one session.

    :param send: queues a PPP frame ``(protocol, information)``.
    :param emit: publishes a core event.
    """

    def __init__(
        self,
        config: LinkConfig,
        rng: RandomLike,
        send: Callable[[int, bytes], None],
        emit: Callable[[CoreEvent], None],
    ) -> None:
        self.config = config
        self.rng = rng
        self._send_frame = send
        self._emit = emit
        self.phase = Phase.DEAD
        self.lcp_policy = LcpPolicy(
            LcpConfig(mru=config.mru, auth_methods=config.auth_methods), rng
        )
        self.ipcp_policy = IpcpPolicy(config.want_dns)
        self.ipv6cp_policy = Ipv6cpPolicy(config.mac, rng)
        timer = config.restart_timer
        self.lcp = Fsm(
            Protocol.LCP, self.lcp_policy, self, restart_timer=timer, resend_on_first_request=True
        )
        self.ipcp = Fsm(Protocol.IPCP, self.ipcp_policy, self, restart_timer=timer)
        self.ipv6cp = Fsm(Protocol.IPV6CP, self.ipv6cp_policy, self, restart_timer=timer)
        self.auth: AuthClient | None = None
        self.authenticated: str | None = None
        self.finished: LinkEnd | None = None
        self._closing: LinkEnd | None = None
        self.echo_deadline: float | None = None
        self.echo_pending = 0
        self._echo_sent: dict[int, float] = {}
        self.last_rtt: float | None = None
        self.network_up_at: float | None = None
        self.network: NetworkUp | None = None
        self.ncp_rejected: set[str] = set()
        self.counters: dict[str, Counter[str]] = {
            "sent": Counter(),
            "received": Counter(),
            "dropped": Counter(),
        }

    # -- state ---------------------------------------------------------------------
    @property
    def ipv4_up(self) -> bool:
        return self.ipcp.opened and self.ipcp_policy.local is not None

    @property
    def ipv6_up(self) -> bool:
        return self.ipv6cp.opened

    @property
    def mtu(self) -> int:
        """What we may send: the peer's MRU, at most what the path carries."""
        return min(self.lcp_policy.peer_mru, self.config.max_send)

    @property
    def mru(self) -> int:
        mru = self.lcp_policy.our_mru
        return mru if mru is not None else timing.PPP_DEFAULT_MRU

    def _fsms(self) -> tuple[Fsm, ...]:
        return (self.lcp, self.ipcp, self.ipv6cp)

    def next_deadline(self) -> float | None:
        times = [f.deadline for f in self._fsms() if f.deadline is not None]
        if self.auth is not None and self.auth.deadline is not None:
            times.append(self.auth.deadline)
        if self.echo_deadline is not None:
            times.append(self.echo_deadline)
        return min(times) if times else None

    # -- driving ----------------------------------------------------------------------
    def start(self, now: float) -> None:
        """The PPPoE session exists: run LCP (RFC 1661 §3.2 Link Establishment)."""
        self.phase = Phase.ESTABLISH
        self.lcp.open(now)
        self.lcp.up(now)

    def close(self, now: float, reason: ExitReason, detail: str, message: str) -> None:
        """End the link: LCP Terminate-Request, finished on Terminate-Ack or timeout."""
        if self.finished is not None or self._closing is not None:
            return
        self._closing = LinkEnd(reason, detail, message, self.phase.value)
        self.phase = Phase.TERMINATE
        self.echo_deadline = None
        self.lcp.close(now, message.encode()[:100])
        if self.lcp.state in (FsmState.INITIAL, FsmState.CLOSED, FsmState.STOPPED):
            self._finish(self._closing)

    def abort(self, now: float, reason: ExitReason, detail: str, message: str) -> None:
        """End the link at once (PADT received, carrier lost): nothing more is sent."""
        if self.finished is not None:
            return
        end = self._closing or LinkEnd(reason, detail, message, self.phase.value)
        for fsm in (self.ipv6cp, self.ipcp, self.lcp):
            fsm.down(now)
        self._finish(end)

    def force_finish(self, now: float) -> None:
        """After :meth:`close`, stop waiting for the Terminate-Ack."""
        if self.finished is None and self._closing is not None:
            self.abort(now, self._closing.reason, self._closing.detail, self._closing.message)

    def _finish(self, end: LinkEnd) -> None:
        if self.finished is not None:
            return
        self.finished = end
        self.phase = Phase.DEAD
        self.echo_deadline = None
        if self.auth is not None:
            self.auth.deadline = None
        for fsm in self._fsms():
            fsm.deadline = None

    def on_timer(self, now: float) -> None:
        if self.finished is not None:
            return
        for fsm in self._fsms():
            if fsm.deadline is not None and fsm.deadline <= now:
                fsm.timeout(now)
        if self.auth is not None and self.auth.deadline is not None and self.auth.deadline <= now:
            self.auth.timeout(now)
            self._auth_progress(now)
        if self.echo_deadline is not None and self.echo_deadline <= now:
            self._echo_check(now)
        self._check_loop(now)

    def receive(self, protocol: int, info: bytes, now: float) -> None:
        if self.finished is not None:
            return
        name = protocol_name(protocol)
        self.counters["received"][name] += 1
        if protocol == Protocol.LCP:
            self.lcp.receive(info, now)
            self._check_loop(now)
            return
        if not self.lcp.opened:
            # RFC 1661 §3.4: "Any non-LCP packets received during this phase
            # MUST be silently discarded."
            self._drop("before_lcp")
            return
        if protocol in (Protocol.PAP, Protocol.CHAP):
            if self.auth is None or self.auth.protocol != protocol:
                self._drop("auth_not_negotiated")
                return
            self.auth.receive(info, now)
            self._auth_progress(now)
        elif protocol == Protocol.IPCP:
            self._ncp_receive(self.ipcp, info, now)
        elif protocol == Protocol.IPV6CP and self.config.ipv6:
            self._ncp_receive(self.ipv6cp, info, now)
        elif protocol in (Protocol.IPV4, Protocol.IPV6):
            self._drop("data_not_for_control")
        else:
            self._protocol_reject(protocol, info)

    def _ncp_receive(self, fsm: Fsm, info: bytes, now: float) -> None:
        if self.phase not in (Phase.NETWORK, Phase.RUNNING):
            self._drop("ncp_before_network")  # RFC 1661 §3.5
            return
        fsm.receive(info, now)

    def _protocol_reject(self, protocol: int, info: bytes) -> None:
        # RFC 1661 §5.7: the rejected packet follows the protocol number,
        # cut so that the whole Protocol-Reject fits the peer's MRU.
        self.counters["dropped"]["protocol_rejected"] += 1
        data = join_protocol(protocol, info)[: self.mtu - 4]
        self.lcp.send_code(Code.PROTOCOL_REJECT, data)

    def echo_now(self, now: float) -> bool:
        """Send an Echo-Request now (the ``renew`` command); False when LCP is not open."""
        if not self.lcp.opened or self.phase is Phase.TERMINATE:
            return False
        self._send_echo(now)
        return True

    # -- authentication and network phases -------------------------------------------------
    def _auth_progress(self, now: float) -> None:
        auth = self.auth
        if auth is None or auth.result is None:
            return
        if auth.result == SUCCESS and self.phase is Phase.AUTHENTICATE:
            self.authenticated = auth.method
            self._emit(AuthSucceeded(auth.method, auth.message))
            self._network(now)
        elif auth.result == FAILURE and self._closing is None:
            self._emit(AuthFailed(auth.method, auth.message))
            self.close(
                now,
                ExitReason.PEER_AUTH_FAILED,
                f"{auth.method}_failed",
                f"{auth.method.upper()} authentication failed"
                + (f": {auth.message}" if auth.message else ""),
            )

    def _network(self, now: float) -> None:
        self.phase = Phase.NETWORK
        self.ipcp.open(now)
        self.ipcp.up(now)
        if self.config.ipv6:
            self.ipv6cp.open(now)
            self.ipv6cp.up(now)

    def _check_loop(self, now: float) -> None:
        if self.lcp_policy.looped and self._closing is None and self.finished is None:
            self.abort(now, ExitReason.LOOPBACK, "magic_number", "the link is looped back")

    # -- keepalive --------------------------------------------------------------------
    def _send_echo(self, now: float) -> None:
        magic = self.lcp_policy.our_magic or 0
        identifier = self.lcp.send_code(Code.ECHO_REQUEST, magic.to_bytes(4, "big"))
        self._echo_sent[identifier] = now
        if len(self._echo_sent) > 16:
            self._echo_sent.pop(next(iter(self._echo_sent)))

    def _echo_check(self, now: float) -> None:
        interval = self.config.echo_interval
        self.echo_deadline = now + interval
        if self.echo_pending >= self.config.echo_failure:
            self._emit(EchoTimeout(self.echo_pending, interval))
            # The peer is gone: one Terminate-Request, no waiting for its Ack.
            self.close(
                now,
                ExitReason.PEER_DEAD,
                "echo_timeout",
                f"no LCP Echo-Reply to {self.echo_pending} Echo-Requests",
            )
            self.force_finish(now)
            return
        self.echo_pending += 1
        self._send_echo(now)

    # -- FsmOwner ------------------------------------------------------------------------
    def send_control(self, protocol: int, packet: bytes) -> None:
        self.counters["sent"][protocol_name(protocol)] += 1
        self._send_frame(protocol, packet)

    def layer_started(self, fsm: Fsm, now: float) -> None:
        pass  # the PPPoE session is the lower layer; it is up while we exist

    def layer_up(self, fsm: Fsm, now: float) -> None:
        if fsm is self.lcp:
            if self.config.echo_interval > 0:
                self.echo_pending = 0
                self.echo_deadline = now + self.config.echo_interval
            method = self.lcp_policy.auth
            if method is None:
                self.authenticated = "none"
                self._emit(AuthSucceeded("none", ""))
                self._network(now)
            else:
                self.phase = Phase.AUTHENTICATE
                self.auth = AuthClient(
                    method,
                    self.config.username,
                    self.config.password,
                    self.send_control,
                    self.rng,
                    restart_timer=self.config.restart_timer,
                )
                self.auth.start(now)
        elif fsm is self.ipcp:
            policy = self.ipcp_policy
            if policy.local is None:
                self.close(
                    now,
                    ExitReason.NEGOTIATION_FAILED,
                    "no_address",
                    "IPCP opened without an IP address for us",
                )
                return
            self.phase = Phase.RUNNING
            self.network_up_at = now
            self.network = NetworkUp(
                policy.local, policy.peer, tuple(policy.dns), self.mtu, self.mru
            )
            self._emit(self.network)
        elif fsm is self.ipv6cp:
            peer = self.ipv6cp_policy.peer_id
            self._emit(
                Ipv6Up(
                    link_local(self.ipv6cp_policy.local_id),
                    link_local(peer) if peer is not None else None,
                )
            )

    def layer_down(self, fsm: Fsm, now: float) -> None:
        if fsm is self.lcp:
            # RFC 1661 §3.7-ish: LCP leaving Opened takes the NCPs down with it.
            self.echo_deadline = None
            for ncp in (self.ipv6cp, self.ipcp):
                ncp.down(now)
            self.auth = None
            if self.phase is not Phase.TERMINATE:
                self.phase = Phase.ESTABLISH
        else:
            self._emit(NetworkDown(fsm.name))
            if fsm is self.ipcp and self.phase is Phase.RUNNING:
                self.phase = Phase.NETWORK

    def layer_finished(self, fsm: Fsm, now: float) -> None:
        if fsm is self.lcp:
            self._finish(self._closing or self._lcp_end(fsm))
            return
        if self._closing is not None or self.finished is not None:
            return
        if fsm is self.ipcp:
            # pppd: "No network protocols running" when IPCP gives up.
            self.close(
                now,
                ExitReason.NEGOTIATION_FAILED,
                f"ipcp_{fsm.finish_reason}",
                f"IPCP {self._why(fsm.finish_reason)}",
            )

    def _lcp_end(self, fsm: Fsm) -> LinkEnd:
        why = fsm.finish_reason
        stage = self.phase.value
        if why == "terminated":
            return LinkEnd(
                ExitReason.HANGUP,
                "terminate_request",
                "the peer sent an LCP Terminate-Request",
                stage,
            )
        return LinkEnd(ExitReason.NEGOTIATION_FAILED, f"lcp_{why}", f"LCP {self._why(why)}", stage)

    @staticmethod
    def _why(reason: str | None) -> str:
        return {
            "timeout": "got no answer (Max-Configure requests sent)",
            "not_converging": "did not converge (the peer kept Nak'ing or rejecting our options)",
            "rejected": "was rejected by the peer",
            "terminated": "was terminated by the peer",
            "closed": "was closed",
        }.get(reason or "", str(reason))

    def extra_code(self, fsm: Fsm, packet: ControlPacket, now: float) -> bool:
        if fsm is not self.lcp:
            return False
        code = packet.code
        if code == Code.PROTOCOL_REJECT:
            self._on_protocol_reject(packet, now)
        elif code == Code.ECHO_REQUEST:
            if fsm.opened:
                magic = packet.data[:4]
                ours = self.lcp_policy.our_magic
                if ours and magic == ours.to_bytes(4, "big"):
                    self.lcp_policy.loop_signs += 1  # our own request came back
                reply = (ours or 0).to_bytes(4, "big") + packet.data[4:]
                fsm.reply(Code.ECHO_REPLY, packet.identifier, reply)
            else:
                self._drop("echo_not_opened")
        elif code == Code.ECHO_REPLY:
            sent = self._echo_sent.pop(packet.identifier, None)
            if sent is None:
                self._drop("echo_reply_unknown")
            else:
                self.echo_pending = 0
                self.last_rtt = now - sent
                self._emit(EchoReply(self.last_rtt))
        elif code in (Code.DISCARD_REQUEST, Code.IDENTIFICATION, Code.TIME_REMAINING):
            pass  # RFC 1661 §5.10, RFC 1570: taken and ignored
        else:
            return False
        return True

    def _on_protocol_reject(self, packet: ControlPacket, now: float) -> None:
        if len(packet.data) < 2:
            self._drop("malformed_protocol_reject")
            return
        rejected = int.from_bytes(packet.data[:2], "big")
        # RFC 1661 §4.3: a Protocol-Reject of an NCP is RXJ+ for LCP; the NCP stops.
        self.lcp.rxj_good()
        if rejected == Protocol.LCP:
            self.lcp.rxj_bad(now)
            return
        for fsm in (self.ipcp, self.ipv6cp):
            if fsm.protocol == rejected:
                self.ncp_rejected.add(fsm.name)
                was_open = fsm.opened
                fsm.down(now)
                fsm.deadline = None
                if was_open:
                    self._emit(NetworkDown(fsm.name))
                if fsm is self.ipcp and self._closing is None:
                    self.close(
                        now,
                        ExitReason.NEGOTIATION_FAILED,
                        "ipcp_rejected",
                        "the peer rejected IPCP",
                    )
        if rejected in (Protocol.PAP, Protocol.CHAP) and self.auth is not None:
            self.auth.result = FAILURE
            self.auth.message = f"the peer rejected {protocol_name(rejected)}"
            self._auth_progress(now)

    def _drop(self, reason: str) -> None:
        self.counters["dropped"][reason] += 1

    def all_counters(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {k: Counter() for k in ("sent", "received", "dropped")}
        for group in out:
            out[group].update(self.counters[group])
        for fsm in self._fsms():
            out["dropped"].update(
                {f"{fsm.name.lower()}_{k}": v for k, v in fsm.counters["dropped"].items()}
            )
        if self.auth is not None:
            out["dropped"].update(
                {f"auth_{k}": v for k, v in self.auth.counters["dropped"].items()}
            )
        return out
