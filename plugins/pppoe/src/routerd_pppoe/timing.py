"""Every PPPoE/PPP timing constant and counter, in one table (style rule 13).

Each entry names where it comes from. ``tests/test_core.py`` pins the values,
so a change here is deliberate. Times are seconds.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AUTH_FAILURE_BACKOFF_MAX",
    "AUTH_FAILURE_BACKOFF_MIN",
    "AUTH_MAX_REQUESTS",
    "AUTH_WAIT",
    "BACKOFF_JITTER",
    "DISCOVERY_ATTEMPTS",
    "DISCOVERY_TIMEOUT",
    "DISCOVERY_TIMEOUT_MAX",
    "LOOPBACK_MAX",
    "MAX_CONFIGURE",
    "MAX_FAILURE",
    "MAX_TERMINATE",
    "MIN_MRU",
    "PPPOE_MRU",
    "PPP_DEFAULT_MRU",
    "REDIAL_BACKOFF_MAX",
    "RESTART_TIMER",
    "STOP_ACK_WAIT",
    "auth_failure_delay",
    "discovery_timeout",
    "redial_delay",
]

# RFC 2516 §5.1: "If the Host does not receive a PADO packet within a
# specified amount of time, it SHOULD resend its PADI packet and double the
# waiting period. This is repeated as many times as desired." The RFC gives
# no numbers; rp-pppoe (pppd's rp-pppoe.so) waits 5 s and tries 3 times
# (pppoe-padi-timeout / pppoe-padi-attempts). Starting at 1 s gets a
# session up faster after an AC restart; 1+2+4+8 = 15 s before the attempt
# counts as failed. The same schedule serves PADR (§5.3).
DISCOVERY_TIMEOUT: Final = 1.0
DISCOVERY_TIMEOUT_MAX: Final = 8.0
DISCOVERY_ATTEMPTS: Final = 4

# RFC 1661 §4.6: "The Restart timer ... default value SHOULD be three (3)
# seconds." "Max-Terminate ... default value SHOULD be two (2)."
# "Max-Configure ... default value SHOULD be ten (10)." "Max-Failure ...
# default value SHOULD be five (5)."
RESTART_TIMER: Final = 3.0
MAX_TERMINATE: Final = 2
MAX_CONFIGURE: Final = 10
MAX_FAILURE: Final = 5

# RFC 1661 §6.1: the default MRU is 1500. RFC 2516 §7: "the maximum MRU is
# 1492" on PPPoE (8 octets of PPPoE and PPP header in a 1500-octet frame),
# unless RFC 4638 PPP-Max-Payload lets it go higher. pppd refuses an MRU
# below 128 (MINMRU).
PPP_DEFAULT_MRU: Final = 1500
PPPOE_MRU: Final = 1492
MIN_MRU: Final = 128

# RFC 1661 §6.4: magic-number loopback. After this many consecutive
# Configure-Naks of our magic number (or requests carrying it) the link is
# taken to be looped back (pppd: "Serial line is looped back").
LOOPBACK_MAX: Final = 5

# PAP (RFC 1334 §2.1 gives no numbers): pppd's pap-restart 3 and
# pap-max-authreq 10. CHAP: the peer sends the Challenge; wait as long as
# PAP would try (pppd's chap-timeout is for the authenticator side).
AUTH_MAX_REQUESTS: Final = 10
AUTH_WAIT: Final = RESTART_TIMER * AUTH_MAX_REQUESTS

# On stop, how long to wait for the peer's Terminate-Ack before sending the
# PADT anyway: the daemon must stop within a second (DESIGN §2).
STOP_ACK_WAIT: Final = 0.4

# Redial (pppd persist/holdoff): the first redial waits ``holdoff``; each
# failed attempt since the last session that came up doubles it, up to this
# cap, +/- BACKOFF_JITTER so many clients of one AC do not redial together.
REDIAL_BACKOFF_MAX: Final = 300.0
BACKOFF_JITTER: Final = 0.1

# An authentication failure waits much longer: an ISP can lock an account
# that retries a wrong password quickly (RADIUS lockout after N failures per
# minute is common). 60 s, doubling to an hour.
AUTH_FAILURE_BACKOFF_MIN: Final = 60.0
AUTH_FAILURE_BACKOFF_MAX: Final = 3600.0


def discovery_timeout(attempt: int, initial: float = DISCOVERY_TIMEOUT) -> float:
    """Wait after transmission ``attempt`` (1-based) of a PADI or PADR (RFC 2516 §5.1)."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    return min(initial * (1 << min(attempt - 1, 16)), max(initial, DISCOVERY_TIMEOUT_MAX))


def redial_delay(failures: int, holdoff: float) -> float:
    """Delay before a redial after ``failures`` failed attempts since the last Up (0: none)."""
    if failures < 0:
        raise ValueError("failures must be >= 0")
    return min(holdoff * (1 << min(failures, 20)), max(holdoff, REDIAL_BACKOFF_MAX))


def auth_failure_delay(auth_failures: int, holdoff: float) -> float:
    """Delay after the ``auth_failures``-th consecutive authentication failure (1-based)."""
    if auth_failures < 1:
        raise ValueError("auth_failures is 1-based")
    base = max(AUTH_FAILURE_BACKOFF_MIN, holdoff)
    return min(base * (1 << min(auth_failures - 1, 20)), AUTH_FAILURE_BACKOFF_MAX)
