"""Every DHCPv4 client timing constant, in one table (style rule 13).

Each entry names the RFC text it comes from.  ``tests/test_core.py`` pins the
values, so a change here is a deliberate, reviewed change.  Times are seconds.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DECLINE_BACKOFF",
    "INIT_DELAY_MAX",
    "INIT_DELAY_MIN",
    "NAK_BACKOFF_INITIAL",
    "NAK_BACKOFF_MAX",
    "REBOOT_MAX_ATTEMPTS",
    "RENEW_MIN_RETRANSMIT",
    "REQUEST_MAX_ATTEMPTS",
    "RETRANSMIT_INITIAL",
    "RETRANSMIT_JITTER",
    "RETRANSMIT_MAX",
    "T1_FACTOR",
    "T2_FACTOR",
    "renew_retransmit_delay",
    "retransmit_base",
]

# RFC 2131 §4.1: "a DHCP client using the 10Mb/sec Ethernet ... SHOULD be
# delayed by 4 seconds before the first retransmission, ... the delay ...
# doubled with subsequent retransmissions up to a maximum of 64 seconds.
# The delay ... SHOULD be randomized by the value of a uniform random number
# chosen from the range -1 to +1."
RETRANSMIT_INITIAL: Final = 4.0
RETRANSMIT_MAX: Final = 64.0
RETRANSMIT_JITTER: Final = 1.0

# RFC 2131 §3.1 step 5 / §4.4.1: with neither ACK nor NAK "after employing
# the retransmission algorithm" the client reverts to INIT.  The RFC leaves
# the number to the client: 4 transmissions (about 4+8+16+32 = 60 s) is what
# dhclient and networkd effectively give a REQUEST.
REQUEST_MAX_ATTEMPTS: Final = 4

# RFC 2131 §3.2 step 3: INIT-REBOOT with no reply "after employing the
# retransmission algorithm".  Kept short (about 4+8 = 12 s; dhcpcd waits 5 s,
# dhclient 10 s) because the client falls back to discovery afterwards.
REBOOT_MAX_ATTEMPTS: Final = 2

# RFC 2131 §4.4.5: "T1 defaults to (0.5 * duration_of_lease).  T2 defaults
# to (0.875 * duration_of_lease)."
T1_FACTOR: Final = 0.5
T2_FACTOR: Final = 0.875

# RFC 2131 §4.4.5: in RENEWING and REBINDING "the client SHOULD wait one-half
# of the remaining time until T2 (in RENEWING state) and one-half of the
# remaining lease time (in REBINDING state), down to a minimum of 60 seconds,
# before retransmitting the DHCPREQUEST message."
RENEW_MIN_RETRANSMIT: Final = 60.0

# RFC 2131 §4.4.1: "The client SHOULD wait a random time between one and ten
# seconds to desynchronize the use of DHCP at startup."  The configured
# ``initial_delay`` (default 0, as networkd and dhcpcd do for a single
# interface) is the upper bound actually used; these are the RFC's numbers.
INIT_DELAY_MIN: Final = 1.0
INIT_DELAY_MAX: Final = 10.0

# RFC 2131 §3.1 step 5: after a DHCPDECLINE "the client SHOULD wait a minimum
# of ten seconds before restarting the configuration process".
DECLINE_BACKOFF: Final = 10.0

# RFC 2131 §3.1 step 5 / §4.4.4: on DHCPNAK the client restarts configuration;
# the RFC gives no delay.  Back off 1, 2, 4 ... 64 s on consecutive NAKs so a
# misconfigured server cannot make the client flood the link (dhcpcd does
# the same); the count resets once the client is BOUND.
NAK_BACKOFF_INITIAL: Final = 1.0
NAK_BACKOFF_MAX: Final = 64.0


def retransmit_base(attempt: int) -> float:
    """Delay after transmission number ``attempt`` (1-based), before jitter.

    RFC 2131 §4.1: 4, 8, 16, 32, 64, 64, ... seconds.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    return min(RETRANSMIT_INITIAL * (1 << min(attempt - 1, 16)), RETRANSMIT_MAX)


def renew_retransmit_delay(remaining: float) -> float:
    """RFC 2131 §4.4.5: half the time left (to T2 or lease end), at least 60 s."""
    return max(remaining / 2.0, RENEW_MIN_RETRANSMIT)
