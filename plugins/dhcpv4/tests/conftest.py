"""Fixtures for the DHCPv4 tests: the shared capture directory and a reader.

The captures live in ``../shared/testdata`` next to the repository (see its
README).  When the directory is absent the tests that need it skip, except
under ``CI=true``, where a missing prerequisite is a failure (DESIGN §10).
"""

from __future__ import annotations

from collections.abc import Callable
import io
import os
from pathlib import Path

import dpkt
import pytest

TESTDATA = Path(__file__).resolve().parents[3].parent / "shared" / "testdata"

_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


@pytest.fixture(scope="session")
def testdata_dir() -> Path:
    """The shared testdata directory (skip, or fail under CI, when absent)."""
    if not TESTDATA.is_dir():
        message = f"shared testdata not found at {TESTDATA}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return TESTDATA


def _resolve(path: Path) -> bytes:
    """Read a capture; follow git symlinks checked out as text files.

    pyroute2's ``test_unit/test_offer_wrong_xid.pcap`` is a symlink to
    ``test_requesting_timeout.pcap``; the copy here holds the link text, and
    the flattened name carries a ``test_unit__`` prefix.
    """
    data = path.read_bytes()
    if data.startswith(_PCAP_MAGICS) or data.startswith(_PCAPNG_MAGIC):
        return data
    target = data.decode("ascii").strip()
    prefix = path.name.split("__", 1)[0] + "__" if "__" in path.name else ""
    return (path.parent / (prefix + target)).read_bytes()


def read_frames(path: Path) -> list[bytes]:
    """Every frame of a pcap or pcapng file."""
    data = _resolve(path)
    stream = io.BytesIO(data)
    if data.startswith(_PCAPNG_MAGIC):
        reader = dpkt.pcapng.Reader(stream)
    else:
        reader = dpkt.pcap.Reader(stream)
    return [bytes(buf) for _, buf in reader]


@pytest.fixture(scope="session")
def frames(testdata_dir: Path) -> Callable[[str], list[bytes]]:
    """``frames("tcpdump/dhcp-mud.pcap")`` → the file's Ethernet frames."""

    def load(relative: str) -> list[bytes]:
        return read_frames(testdata_dir / relative)

    return load
