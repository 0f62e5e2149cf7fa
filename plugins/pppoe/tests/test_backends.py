"""The data-plane backends' kernel interfaces, checked without a PPP kernel.

The structures and ioctl numbers the ``kernel`` backend hands to Linux are
checked against ``ctypes`` layouts of the C declarations and the values the
kernel headers give; the backend itself runs in the qemu VM (docs/pppoe.md).
The ``tun`` backend runs end to end in ``test_lab.py``.
"""

from __future__ import annotations

import ctypes
import os
import struct

import pytest
from routerd_pppoe import kernel
from routerd_pppoe.backend import BackendError
from routerd_pppoe.backend import SessionParams
from routerd_pppoe.backend import choose
from routerd_pppoe.backend import ppp_ifname
from routerd_pppoe.transport import session_filter
from routerd_pppoe.tun import TUNSETIFF
from routerd_pppoe.tun import tun_ifreq

AC = bytes.fromhex("02000000ac01")


class PppoeAddr(ctypes.Structure):
    # linux/if_pppox.h: struct pppoe_addr {sid_t sid; unsigned char remote[ETH_ALEN]; char dev[IFNAMSIZ];}
    _pack_ = 1
    _fields_ = [
        ("sid", ctypes.c_uint16),
        ("remote", ctypes.c_ubyte * 6),
        ("dev", ctypes.c_char * 16),
    ]


class SockaddrPppox(ctypes.Structure):
    # struct sockaddr_pppox {__kernel_sa_family_t sa_family; unsigned int sa_protocol;
    #                        union {struct pppoe_addr pppoe; ...} sa_addr;} __packed;
    _pack_ = 1
    _fields_ = [
        ("sa_family", ctypes.c_ushort),
        ("sa_protocol", ctypes.c_uint),
        ("pppoe", PppoeAddr),
    ]


def test_sockaddr_pppox_matches_the_packed_c_layout() -> None:
    raw = kernel.sockaddr_pppox(0x1234, AC, "wan0")
    assert len(raw) == 30 == ctypes.sizeof(SockaddrPppox)
    parsed = SockaddrPppox.from_buffer_copy(raw)
    assert parsed.sa_family == kernel.AF_PPPOX == 24
    assert parsed.sa_protocol == kernel.PX_PROTO_OE == 0
    # sid_t is __be16: network order inside a host-order structure.
    assert raw[6:8] == b"\x12\x34"
    assert bytes(parsed.pppoe.remote) == AC
    assert parsed.pppoe.dev == b"wan0" and raw[18:30] == bytes(12)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"remote": b"\x01" * 5}, "6-byte MAC"),
        ({"device": ""}, "1-15 bytes"),
        ({"device": "x" * 16}, "1-15 bytes"),
    ],
)
def test_sockaddr_pppox_refuses_bad_input(bad: dict[str, object], error: str) -> None:
    args: dict[str, object] = {"session_id": 1, "remote": AC, "device": "wan0", **bad}
    with pytest.raises(ValueError, match=error):
        kernel.sockaddr_pppox(**args)  # type: ignore[arg-type]


def test_ioctl_numbers_are_those_of_linux_ppp_ioctl_h() -> None:
    # Values of the _IOR/_IOW/_IOWR macros on x86-64 and arm64 (asm-generic/ioctl.h).
    assert kernel.PPPIOCGCHAN == 0x80047437
    assert kernel.PPPIOCATTCHAN == 0x40047438
    assert kernel.PPPIOCDISCONN == 0x00007439
    assert kernel.PPPIOCCONNECT == 0x4004743A
    assert kernel.PPPIOCNEWUNIT == 0xC004743E
    assert kernel.PPPIOCSNPMODE == 0x4008744B
    assert kernel.PPPIOCSMRU == 0x40047452
    assert kernel.PPPIOCGUNIT == 0x80047456
    assert kernel.SIOCSIFNAME == 0x8923
    assert TUNSETIFF == 0x400454CA  # _IOW('T', 202, int), linux/if_tun.h


def test_npioctl_and_ifreq_layouts() -> None:
    # struct npioctl {int protocol; enum NPmode mode;}
    assert kernel.npioctl(0x21, kernel.NPMODE_PASS) == struct.pack("=ii", 0x21, 0)
    assert len(kernel.npioctl(0x57, kernel.NPMODE_DROP)) == 8
    # struct ifreq is 40 bytes; ifr_newname starts right after ifr_name.
    req = kernel.rename_ifreq("ppp3", "ppp-isp")
    assert len(req) == 40 and req[:16].rstrip(b"\0") == b"ppp3"
    assert req[16:32].rstrip(b"\0") == b"ppp-isp"
    tun = tun_ifreq("ppp-isp")
    assert len(tun) == 40 and tun[:16].rstrip(b"\0") == b"ppp-isp"
    # IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL
    assert struct.unpack_from("=H", tun, 16)[0] == 0x9001
    with pytest.raises(ValueError):
        tun_ifreq("x" * 16)


def test_session_filter_program() -> None:
    program = session_filter(0xBEEF)
    assert program[1] == (0x15, 0, 3, 0x8864)  # ethertype, else reject
    assert program[3] == (0x15, 0, 1, 0xBEEF)  # SESSION_ID, else reject
    assert program[-1] == (0x06, 0, 0, 0) and program[-2][0] == 0x06
    # Jumps land on the final reject.
    assert 1 + 1 + program[1][2] == len(program) - 1
    assert 3 + 1 + program[3][2] == len(program) - 1


def test_ppp_ifname_fits_ifnamsiz() -> None:
    assert ppp_ifname("isp") == "ppp-isp"
    assert ppp_ifname("a" * 11) == "ppp-" + "a" * 11
    long = ppp_ifname("my-second-isp-uplink")
    assert len(long) == 15 and long.startswith("ppp-my-sec-")
    assert long != ppp_ifname("my-second-isp-other")


@pytest.mark.skipif(os.path.exists("/dev/ppp"), reason="this kernel has PPP (the VM tests it)")
def test_without_kernel_ppp_auto_picks_tun_and_kernel_fails_clearly() -> None:
    why = kernel.kernel_ppp_available()
    assert why is not None and "/dev/ppp" in why
    assert choose("auto") == "tun" and choose("kernel") == "kernel"
    params = SessionParams("ppp-test", "lo", bytes(6), AC, 1, 1492)
    with pytest.raises(BackendError, match="kernel PPPoE: cannot"):
        kernel.KernelBackend(params)
