"""The client side of PPPoE discovery (RFC 2516 §5), sans-I/O.

``start(now)`` broadcasts a PADI; PADOs are filtered and the first valid one
(or the one from the configured AC-Name) is answered with a PADR; a PADS
with a session id ends discovery. PADI and PADR are retransmitted, doubling
the wait (``timing.discovery_timeout``), ``attempts`` times each.

A PADO is valid when it comes from a unicast MAC to ours, carries SESSION_ID
0, echoes our Host-Uniq exactly (RFC 2516 §5.2: "any number of other TAG
types", but Host-Uniq "MUST" be echoed when sent), carries no error tag, and
offers our Service-Name (when we asked for one). The PADR echoes the chosen
PADO's AC-Cookie and Relay-Session-Id (RFC 2516 appendix A) and our
Host-Uniq and Service-Name. A PADS with an error tag or SESSION_ID 0 (RFC
2516 §5.4) fails the attempt.

Results: :attr:`DiscoveryClient.result` becomes :class:`Established` or
:class:`Failed`; packets to send are drained with :meth:`packets`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from dataclasses import field

from routerd_pppoe import timing
from routerd_pppoe.codec import BROADCAST_MAC
from routerd_pppoe.codec import Code
from routerd_pppoe.codec import Discovery
from routerd_pppoe.codec import Tag
from routerd_pppoe.codec import encode_discovery
from routerd_pppoe.codec import mac_to_str
from routerd_pppoe.randomness import RandomLike

__all__ = [
    "DiscoveryClient",
    "DiscoveryConfig",
    "Established",
    "Failed",
    "Ignored",
    "OutFrame",
    "ReportedError",
]


@dataclass(frozen=True)
class DiscoveryConfig:
    """:ivar mac: our MAC.
    :ivar service_name: the Service-Name to ask for ("" = any service).
    :ivar ac_name: only this AC-Name, or None for the first valid PADO.
    :ivar max_payload: RFC 4638 PPP-Max-Payload to ask for (> 1492), or None.
    :ivar timeout: the first PADI/PADR wait (doubles).
    :ivar attempts: transmissions of each of PADI and PADR.
    """

    mac: bytes
    service_name: str = ""
    ac_name: str | None = None
    max_payload: int | None = None
    timeout: float = timing.DISCOVERY_TIMEOUT
    attempts: int = timing.DISCOVERY_ATTEMPTS


@dataclass(frozen=True)
class OutFrame:
    """A discovery packet for ``dst``."""

    dst: bytes
    packet: bytes
    code: str


@dataclass(frozen=True)
class Established:
    session_id: int
    ac_mac: bytes
    ac_name: str | None
    service_name: str
    max_payload: int | None


@dataclass(frozen=True)
class Failed:
    detail: str  # no_pado, no_pads, pads_error
    message: str


@dataclass(frozen=True)
class Ignored:
    ac_mac: str
    ac_name: str | None
    why: str


@dataclass(frozen=True)
class ReportedError:
    code: str
    tag: str
    text: str
    ac_mac: str


@dataclass
class _Attempt:
    code: int
    dst: bytes
    tags: list[tuple[int, bytes]]
    sent: int = 0
    deadline: float = 0.0
    ac_name: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _unicast(mac: bytes) -> bool:
    return len(mac) == 6 and not mac[0] & 1 and any(mac)


class DiscoveryClient:
    """One discovery exchange (a dial attempt's first stage)."""

    def __init__(self, config: DiscoveryConfig, rng: RandomLike) -> None:
        self.config = config
        self.host_uniq = rng.getrandbits(64).to_bytes(8, "big")
        self.result: Established | Failed | None = None
        self.stage = "PADI"
        self.ac_mac: bytes | None = None
        self._attempt: _Attempt | None = None
        self._out: list[OutFrame] = []
        self.notes: list[Ignored | ReportedError] = []
        self.counters: dict[str, Counter[str]] = {
            "sent": Counter(),
            "received": Counter(),
            "dropped": Counter(),
        }

    # -- outputs -------------------------------------------------------------------
    def packets(self) -> list[OutFrame]:
        out, self._out = self._out, []
        return out

    def take_notes(self) -> list[Ignored | ReportedError]:
        out, self.notes = self.notes, []
        return out

    @property
    def deadline(self) -> float | None:
        if self.result is not None or self._attempt is None:
            return None
        return self._attempt.deadline

    # -- driving --------------------------------------------------------------------
    def _common_tags(self) -> list[tuple[int, bytes]]:
        tags: list[tuple[int, bytes]] = [
            (Tag.SERVICE_NAME, self.config.service_name.encode()),
            (Tag.HOST_UNIQ, self.host_uniq),
        ]
        if self.config.max_payload is not None:
            tags.append((Tag.PPP_MAX_PAYLOAD, self.config.max_payload.to_bytes(2, "big")))
        return tags

    def start(self, now: float) -> None:
        self.stage = "PADI"
        self._attempt = _Attempt(Code.PADI, BROADCAST_MAC, self._common_tags())
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        attempt = self._attempt
        assert attempt is not None
        attempt.sent += 1
        attempt.deadline = now + timing.discovery_timeout(attempt.sent, self.config.timeout)
        name = Code(attempt.code).name
        self.counters["sent"][name] += 1
        self._out.append(
            OutFrame(attempt.dst, encode_discovery(attempt.code, 0, attempt.tags), name)
        )

    def on_timer(self, now: float) -> None:
        attempt = self._attempt
        if self.result is not None or attempt is None or now < attempt.deadline:
            return
        if attempt.sent < self.config.attempts:
            self._transmit(now)
            return
        if attempt.code == Code.PADI:
            self.result = Failed(
                "no_pado",
                f"no access concentrator answered {attempt.sent} PADIs" + self._filter_text(),
            )
        else:
            self.result = Failed(
                "no_pads",
                f"the access concentrator {mac_to_str(attempt.dst)} did not answer "
                f"{attempt.sent} PADRs",
            )

    def _filter_text(self) -> str:
        parts = []
        if self.config.ac_name is not None:
            parts.append(f"AC-Name {self.config.ac_name!r}")
        if self.config.service_name:
            parts.append(f"Service-Name {self.config.service_name!r}")
        return f" (looking for {' and '.join(parts)})" if parts else ""

    def receive(self, src: bytes, dst: bytes, packet: Discovery, now: float) -> None:
        """A discovery packet addressed to us (the caller checked nothing else)."""
        if self.result is not None:
            self._drop("late")
            return
        self.counters["received"][packet.code_name] += 1
        if dst != self.config.mac:
            self._drop("not_for_us")  # PADO/PADS are unicast (RFC 2516 §5.2, §5.4)
        elif not _unicast(src):
            self._drop("bad_source")
        elif packet.host_uniq != self.host_uniq:
            self._drop("host_uniq")
        elif packet.code == Code.PADO:
            self._on_pado(src, packet, now)
        elif packet.code == Code.PADS:
            self._on_pads(src, packet)
        else:
            self._drop("unexpected_code")

    def _report_errors(self, src: bytes, packet: Discovery) -> bool:
        errors = packet.errors()
        for tag, text in errors:
            self.notes.append(ReportedError(packet.code_name, tag, text, mac_to_str(src)))
        return bool(errors)

    def _on_pado(self, src: bytes, packet: Discovery, now: float) -> None:
        if self.stage != "PADI":
            self._drop("late_pado")
            return
        if packet.session_id != 0:
            self._drop("bad_session_id")
            return
        ac_name = packet.ac_name
        if self._report_errors(src, packet):
            self._ignore(src, ac_name, "error_tag")
            return
        wanted = self.config.service_name
        if wanted and wanted not in packet.service_names:
            self._ignore(src, ac_name, "service_name")
            return
        if self.config.ac_name is not None and ac_name != self.config.ac_name:
            self._ignore(src, ac_name, "ac_name")
            return
        tags = self._common_tags()
        if self.config.max_payload is not None and packet.ppp_max_payload is None:
            # RFC 4638 §4: an AC that did not echo the tag does not support it.
            tags = [t for t in tags if t[0] != Tag.PPP_MAX_PAYLOAD]
        for echoed in (Tag.AC_COOKIE, Tag.RELAY_SESSION_ID):
            value = packet.first(echoed)
            if value is not None:
                tags.append((echoed, value))  # RFC 2516 appendix A: echo unmodified
        self.stage = "PADR"
        self.ac_mac = src
        self._attempt = _Attempt(Code.PADR, src, tags, ac_name=ac_name)
        self._attempt.extra["pado_payload"] = packet.ppp_max_payload
        self._transmit(now)

    def _on_pads(self, src: bytes, packet: Discovery) -> None:
        attempt = self._attempt
        if self.stage != "PADR" or attempt is None or src != attempt.dst:
            self._drop("unexpected_pads")
            return
        errors = self._report_errors(src, packet)
        if errors or packet.session_id == 0:
            text = "; ".join(f"{tag}: {text}" for tag, text in packet.errors()) or "no session id"
            self.result = Failed(
                "pads_error", f"the access concentrator {mac_to_str(src)} refused: {text}"
            )
            return
        max_payload = None
        if self.config.max_payload is not None:
            theirs = packet.ppp_max_payload
            if theirs is None:
                pado = attempt.extra.get("pado_payload")
                theirs = pado if isinstance(pado, int) else None
            if theirs is not None and theirs > timing.PPPOE_MRU:
                max_payload = min(theirs, self.config.max_payload)
        self.result = Established(
            packet.session_id, src, attempt.ac_name, self.config.service_name, max_payload
        )

    def _ignore(self, src: bytes, ac_name: str | None, why: str) -> None:
        self.counters["dropped"]["pado_" + why] += 1
        self.notes.append(Ignored(mac_to_str(src), ac_name, why))

    def _drop(self, reason: str) -> None:
        self.counters["dropped"][reason] += 1
