"""LCP options on a PPPoE link (RFC 1661 §6, RFC 2516 §7, RFC 4638).

What we request: MRU when it is not the default 1500 (1492 on PPPoE, RFC
2516 §7; up to 1500 when RFC 4638 PPP-Max-Payload allows), and a Magic-Number
(RFC 1661 §6.4) for loopback detection. Nothing else.

What we accept from the access concentrator:

* MRU of at least 128 (pppd's MINMRU); smaller is Nak'd with 128.
* Authentication-Protocol PAP (0xc023) or CHAP with MD5 (0xc223, algorithm
  5) when ``auth_methods`` allows it; anything else (MS-CHAP, EAP, a method
  not allowed) is Nak'd with the method we prefer: CHAP-MD5, else PAP.
* Magic-Number: not zero (Nak'd, RFC 1661 §6.4 "MUST always be Nak'd") and
  not ours (a loop, or a clash: Nak'd with a new number, and ours changes).
* Rejected: ACCM (RFC 2516 §7 "MUST NOT" on PPPoE), Protocol-Field- and
  Address-and-Control-Field-Compression (RFC 2516 §7; pppd's rp-pppoe
  plugin refuses them too), Quality-Protocol, Callback, the multilink
  options and any option we do not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from routerd_pppoe import timing
from routerd_pppoe.fsm import OptionPolicy
from routerd_pppoe.fsm import Verdict
from routerd_pppoe.pppcodec import CHAP_MD5
from routerd_pppoe.pppcodec import Code
from routerd_pppoe.pppcodec import LcpOption
from routerd_pppoe.pppcodec import Option
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import u16
from routerd_pppoe.pppcodec import u32
from routerd_pppoe.randomness import RandomLike

__all__ = ["AUTH_CHAP", "AUTH_PAP", "LcpConfig", "LcpPolicy"]

AUTH_PAP = "pap"
AUTH_CHAP = "chap"
_PAP_VALUE = Protocol.PAP.to_bytes(2, "big")
_CHAP_MD5_VALUE = Protocol.CHAP.to_bytes(2, "big") + bytes((CHAP_MD5,))


@dataclass(frozen=True)
class LcpConfig:
    """:ivar mru: the MRU we want (1492, or up to 1500 with PPP-Max-Payload).
    :ivar auth_methods: the methods we accept (``pap``, ``chap``).
    :ivar magic: send a Magic-Number.
    """

    mru: int = timing.PPPOE_MRU
    auth_methods: frozenset[str] = frozenset({AUTH_PAP, AUTH_CHAP})
    magic: bool = True


class LcpPolicy(OptionPolicy):
    def __init__(self, config: LcpConfig, rng: RandomLike) -> None:
        self.config = config
        self.rng = rng
        self.our_mru: int | None = config.mru
        self.our_magic: int | None = None
        self.peer_mru: int = timing.PPP_DEFAULT_MRU
        self.peer_magic: int | None = None
        self.auth: str | None = None
        #: Consecutive signs of a looped-back link (RFC 1661 §6.4).
        self.loop_signs = 0
        self._pending_auth: str | None = None
        self.reset()

    def _new_magic(self) -> int:
        while True:
            value = self.rng.getrandbits(32)
            if value and value != self.our_magic:
                return value

    def reset(self) -> None:
        self.our_mru = self.config.mru
        self.our_magic = self._new_magic() if self.config.magic else None
        self.peer_mru = timing.PPP_DEFAULT_MRU
        self.peer_magic = None
        self.auth = None
        self.loop_signs = 0

    def request(self) -> list[Option]:
        options: list[Option] = []
        if self.our_mru is not None and self.our_mru != timing.PPP_DEFAULT_MRU:
            options.append((LcpOption.MRU, self.our_mru.to_bytes(2, "big")))
        if self.our_magic is not None:
            options.append((LcpOption.MAGIC_NUMBER, self.our_magic.to_bytes(4, "big")))
        return options

    def _preferred_auth(self) -> bytes:
        if AUTH_CHAP in self.config.auth_methods:
            return _CHAP_MD5_VALUE
        return _PAP_VALUE

    def _auth_of(self, value: bytes) -> str | None:
        if value == _PAP_VALUE and AUTH_PAP in self.config.auth_methods:
            return AUTH_PAP
        if value == _CHAP_MD5_VALUE and AUTH_CHAP in self.config.auth_methods:
            return AUTH_CHAP
        return None

    def check(self, options: list[Option]) -> Verdict:
        naks: list[Option] = []
        rejects: list[Option] = []
        for kind, value in options:
            if kind == LcpOption.MRU:
                mru = u16(value)
                if mru is None:
                    rejects.append((kind, value))
                elif mru < timing.MIN_MRU:
                    naks.append((kind, timing.MIN_MRU.to_bytes(2, "big")))
            elif kind == LcpOption.AUTH_PROTOCOL:
                if self._auth_of(value) is None:
                    naks.append((kind, self._preferred_auth()))
            elif kind == LcpOption.MAGIC_NUMBER:
                magic = u32(value)
                if magic is None:
                    rejects.append((kind, value))
                elif magic == 0:
                    naks.append((kind, self._new_magic().to_bytes(4, "big")))
                elif self.our_magic is not None and magic == self.our_magic:
                    # RFC 1661 §6.4: our own number back: a loop, or a clash.
                    # Nak with another number and pick a new one ourselves.
                    self.loop_signs += 1
                    self.our_magic = self._new_magic()
                    naks.append((kind, self._new_magic().to_bytes(4, "big")))
            else:
                rejects.append((kind, value))
        if rejects:
            return Verdict(Code.CONFIGURE_REJECT, tuple(rejects))
        if naks:
            return Verdict(Code.CONFIGURE_NAK, tuple(naks))
        return Verdict(Code.CONFIGURE_ACK, tuple(options))

    def peer_acked(self, options: list[Option]) -> None:
        self.peer_mru = timing.PPP_DEFAULT_MRU
        self.auth = None
        self.peer_magic = None
        for kind, value in options:
            if kind == LcpOption.MRU:
                self.peer_mru = u16(value) or timing.PPP_DEFAULT_MRU
            elif kind == LcpOption.AUTH_PROTOCOL:
                self.auth = self._auth_of(value)
            elif kind == LcpOption.MAGIC_NUMBER:
                self.peer_magic = u32(value)

    def acked(self, options: list[Option]) -> None:
        self.loop_signs = 0

    def nakked(self, options: list[Option]) -> None:
        for kind, value in options:
            if kind == LcpOption.MRU:
                mru = u16(value)
                # pppd takes any suggestion up to the default 1500: it only
                # bounds what the peer sends us, never what we send.
                if mru is not None and timing.MIN_MRU <= mru <= timing.PPP_DEFAULT_MRU:
                    self.our_mru = mru
            elif kind == LcpOption.MAGIC_NUMBER and self.our_magic is not None:
                # RFC 1661 §6.4: a Nak of our number means a clash or a loop.
                self.loop_signs += 1
                self.our_magic = self._new_magic()
            # Suggestions of options we did not request (RFC 1661 §5.3)
            # are hints we do not need: ignored.

    def rejected(self, options: list[Option]) -> None:
        for kind, _value in options:
            if kind == LcpOption.MRU:
                self.our_mru = None
            elif kind == LcpOption.MAGIC_NUMBER:
                self.our_magic = None

    @property
    def looped(self) -> bool:
        return self.loop_signs >= timing.LOOPBACK_MAX
