"""Client retransmission (RFC 9915 §15), sans-I/O.

One :class:`Retransmission` follows one message exchange. The caller sends
the message, calls :meth:`Retransmission.transmitted` with the time, and gets
back the absolute time at which to look again; at that time
:meth:`Retransmission.failed` says whether the exchange has failed (MRC
transmissions done or MRD elapsed) or the message should be sent again::

    RT  = IRT + RAND*IRT                 first transmission
    RT  = 2*RTprev + RAND*RTprev         each retransmission
    if MRT and RT > MRT: RT = MRT + RAND*MRT

RAND is drawn uniformly from [-0.1, +0.1] on every use (RFC 9915 §15); for
the first Solicit it must be strictly positive so that the first RT, during
which Advertises are collected, is longer than IRT (RFC 9915 §15, §18.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from typing import Final
from typing import Protocol

from routerd_dhcpv6 import constants as c

__all__ = [
    "CONFIRM",
    "DECLINE",
    "INFORMATION_REQUEST",
    "REBIND",
    "RELEASE",
    "RENEW",
    "REQUEST",
    "RandomSource",
    "Retransmission",
    "RetransmitParams",
    "SOLICIT",
    "rand_factor",
]


class RandomSource(Protocol):
    """What the protocol core needs from a random generator.

    ``random.Random`` and ``random.SystemRandom`` both fit; tests pass a seeded
    ``random.Random``.
    """

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...


@dataclass(frozen=True)
class RetransmitParams:
    """IRT, MRT, MRC and MRD for one kind of exchange (RFC 9915 §15).

    Zero MRT/MRC/MRD mean "no limit". Times are seconds.
    """

    irt: float
    mrt: float = 0.0
    mrc: int = 0
    mrd: float = 0.0

    def with_mrt(self, mrt: float) -> RetransmitParams:
        return replace(self, mrt=mrt)

    def with_mrd(self, mrd: float) -> RetransmitParams:
        return replace(self, mrd=mrd)


# RFC 9915 §18.2.1 .. §18.2.8: parameters per message, from the constants table.
SOLICIT: Final = RetransmitParams(c.SOL_TIMEOUT, c.SOL_MAX_RT)
REQUEST: Final = RetransmitParams(c.REQ_TIMEOUT, c.REQ_MAX_RT, c.REQ_MAX_RC)
CONFIRM: Final = RetransmitParams(c.CNF_TIMEOUT, c.CNF_MAX_RT, 0, c.CNF_MAX_RD)
# Renew's MRD is "until T2" and Rebind's "until all leases expire"; the core
# fills them in per exchange with with_mrd() (RFC 9915 §18.2.4, §18.2.5).
RENEW: Final = RetransmitParams(c.REN_TIMEOUT, c.REN_MAX_RT)
REBIND: Final = RetransmitParams(c.REB_TIMEOUT, c.REB_MAX_RT)
INFORMATION_REQUEST: Final = RetransmitParams(c.INF_TIMEOUT, c.INF_MAX_RT)
RELEASE: Final = RetransmitParams(c.REL_TIMEOUT, 0, c.REL_MAX_RC)
DECLINE: Final = RetransmitParams(c.DEC_TIMEOUT, 0, c.DEC_MAX_RC)


def rand_factor(rng: RandomSource, *, positive: bool = False) -> float:
    """A RAND value (RFC 9915 §15).

    Uniform in [RAND_MIN, RAND_MAX]; with ``positive`` in (0, RAND_MAX].
    """
    if positive:
        # 1 - random() lies in (0, 1], so the result is never 0.
        return c.RAND_MAX * (1.0 - rng.random())
    return c.RAND_MIN + (c.RAND_MAX - c.RAND_MIN) * rng.random()


class Retransmission:
    """Timing of one message exchange (RFC 9915 §15).

    :param params: IRT/MRT/MRC/MRD for the message.
    :param rng: source of RAND.
    :param first_rand_positive: draw the first RAND from (0, 0.1] (first
        Solicit, RFC 9915 §18.2.1).
    """

    def __init__(
        self,
        params: RetransmitParams,
        rng: RandomSource,
        *,
        first_rand_positive: bool = False,
    ) -> None:
        self.params = params
        self._rng = rng
        self._first_positive = first_rand_positive
        #: time of the first transmission, ``None`` before it.
        self.started: float | None = None
        #: transmissions so far (the first one included).
        self.count = 0
        #: the current RT in seconds (0 before the first transmission).
        self.rt = 0.0
        #: absolute time of the next retransmission or of failure.
        self.deadline: float | None = None

    def set_mrt(self, mrt: float) -> None:
        """Change MRT mid-exchange (a server's SOL_MAX_RT option, §18.2.9)."""
        self.params = self.params.with_mrt(mrt)

    def _next_rt(self) -> float:
        p = self.params
        if self.count == 0:
            rt = p.irt + rand_factor(self._rng, positive=self._first_positive) * p.irt
        else:
            rt = 2 * self.rt + rand_factor(self._rng) * self.rt
        if p.mrt and rt > p.mrt:
            rt = p.mrt + rand_factor(self._rng) * p.mrt
        return rt

    def transmitted(self, now: float) -> float:
        """Record a (re)transmission at ``now``; return the next deadline.

        At the deadline, either retransmit (call this again) or, if
        :meth:`failed` says so, give up the exchange.
        """
        if self.started is None:
            self.started = now
        self.rt = self._next_rt()
        self.count += 1
        deadline = now + self.rt
        if self.params.mrd:
            # The exchange ends MRD after the first transmission even if that
            # cuts the last RT short (RFC 9915 §15).
            deadline = min(deadline, self.started + self.params.mrd)
        self.deadline = deadline
        return deadline

    def failed(self, now: float) -> bool:
        """Whether the exchange has failed by ``now`` (MRC or MRD reached)."""
        if self.started is None:
            return False
        p = self.params
        if p.mrc and self.count >= p.mrc and now >= (self.deadline or now):
            # The last of MRC transmissions has had its RT to get an answer.
            return True
        return bool(p.mrd) and now >= self.started + p.mrd

    def elapsed_time(self, now: float) -> int:
        """Elapsed Time option value: 1/100 s since the first transmission,
        capped at 0xffff (RFC 9915 §21.9); 0 for the first transmission."""
        if self.started is None:
            return 0
        hundredths = round((now - self.started) * 100)
        return max(0, min(0xFFFF, hundredths))
