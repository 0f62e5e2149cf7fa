"""Shared pieces of the PPPoE tests: a fake clock harness around the sans-I/O
core, builders for what an access concentrator sends, and the scapy access
concentrator in a namespace pair.

Tests get them through fixtures (``harness``, ``ac_frames``, ``pair``, ``ac``,
``password_file``) because test modules are imported in importlib mode and
cannot import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
import json
from pathlib import Path
import random
import socket
import sys
from typing import Any

import pytest
from routerd.testing.daemon import poll
from routerd.testing.netns import Lab
from routerd.testing.netns import ManagedProcess
from routerd.testing.netns import Netns
from routerd.testing.netns import require_netns_prereqs
from routerd_pppoe.codec import Code
from routerd_pppoe.codec import Discovery
from routerd_pppoe.codec import Tag
from routerd_pppoe.codec import decode_discovery
from routerd_pppoe.codec import encode_discovery
from routerd_pppoe.core import ClientConfig
from routerd_pppoe.core import PPPoEClientCore
from routerd_pppoe.core import SendDiscovery
from routerd_pppoe.core import SendPpp
from routerd_pppoe.events import CoreEvent
from routerd_pppoe.pppcodec import Code as PppCode
from routerd_pppoe.pppcodec import ControlPacket
from routerd_pppoe.pppcodec import IpcpOption
from routerd_pppoe.pppcodec import LcpOption
from routerd_pppoe.pppcodec import Option
from routerd_pppoe.pppcodec import Protocol
from routerd_pppoe.pppcodec import decode_control
from routerd_pppoe.pppcodec import decode_options
from routerd_pppoe.pppcodec import encode_control
from routerd_pppoe.pppcodec import encode_options

MAC = bytes.fromhex("020000000001")
AC_MAC = bytes.fromhex("02000000ac01")
AC2_MAC = bytes.fromhex("02000000ac02")
PASSWORD = b"s3cret-pw!"
PAP = Protocol.PAP.to_bytes(2, "big")
CHAP_MD5 = Protocol.CHAP.to_bytes(2, "big") + b"\x05"
AC_MAGIC = (0x0A0B0C0D).to_bytes(4, "big")


def config(**fields: Any) -> ClientConfig:
    base: dict[str, Any] = {
        "mac": MAC,
        "username": b"user@isp",
        "password": PASSWORD,
        "echo_interval": 10.0,
        "echo_failure": 3,
        "holdoff": 2.0,
    }
    base.update(fields)
    return ClientConfig(**base)


class AcBuilder:
    """What an access concentrator sends, built with the plugin's own codec."""

    def pado(self, host_uniq: bytes | None, name: str = "ac1", *extra: tuple[int, bytes]) -> bytes:
        tags: list[tuple[int, bytes]] = [(Tag.AC_NAME, name.encode()), (Tag.SERVICE_NAME, b"")]
        if host_uniq is not None:
            tags.append((Tag.HOST_UNIQ, host_uniq))
        tags.extend(extra)
        return encode_discovery(Code.PADO, 0, tags)

    def pads(self, host_uniq: bytes, session_id: int = 0x1234, *extra: tuple[int, bytes]) -> bytes:
        tags = [(Tag.SERVICE_NAME, b""), (Tag.HOST_UNIQ, host_uniq), *extra]
        return encode_discovery(Code.PADS, session_id, tags)

    def padt(self, session_id: int = 0x1234, *extra: tuple[int, bytes]) -> bytes:
        return encode_discovery(Code.PADT, session_id, list(extra))

    def control(self, code: int, identifier: int, options: list[Option] | bytes = b"") -> bytes:
        data = options if isinstance(options, bytes) else encode_options(options)
        return encode_control(code, identifier, data)

    def lcp_request(self, identifier: int = 1, auth: bytes | None = PAP) -> bytes:
        options: list[Option] = [(LcpOption.MRU, (1492).to_bytes(2, "big"))]
        if auth is not None:
            options.append((LcpOption.AUTH_PROTOCOL, auth))
        options.append((LcpOption.MAGIC_NUMBER, AC_MAGIC))
        return self.control(PppCode.CONFIGURE_REQUEST, identifier, options)


@dataclass
class Sent:
    dst: bytes
    packet: Discovery


class Harness:
    """The core with a fake clock; records every output."""

    MAC = MAC
    AC_MAC = AC_MAC
    AC2_MAC = AC2_MAC
    PASSWORD = PASSWORD
    PAP = PAP
    CHAP_MD5 = CHAP_MD5
    AC_MAGIC = AC_MAGIC

    def __init__(self, seed: int = 1, **fields: Any) -> None:
        self.now = 0.0
        self.core = PPPoEClientCore(config(**fields), random.Random(seed))
        self.outputs: list[Any] = []
        self.ac = AcBuilder()

    def drain(self) -> list[Any]:
        items = self.core.outputs()
        self.outputs.extend(items)
        return items

    def start(self, stale: tuple[int, bytes] | None = None) -> list[Any]:
        self.core.start(self.now, stale)
        return self.drain()

    def advance(self, to: float) -> list[Any]:
        """Run every timer due up to ``to`` in order; return the outputs."""
        out: list[Any] = []
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > to:
                break
            self.now = max(self.now, deadline)
            self.core.on_timer(self.now)
            out.extend(self.drain())
        self.now = to
        return out

    def timeline(self, to: float) -> list[tuple[float, Any]]:
        """Like :meth:`advance`, with the time each output was made."""
        out: list[tuple[float, Any]] = []
        while True:
            deadline = self.core.next_deadline()
            if deadline is None or deadline > to:
                break
            self.now = max(self.now, deadline)
            self.core.on_timer(self.now)
            out.extend((self.now, item) for item in self.drain())
        self.now = to
        return out

    def discovery_in(self, payload: bytes, src: bytes = AC_MAC, dst: bytes = MAC) -> list[Any]:
        self.core.receive_discovery(src, dst, payload, self.now)
        return self.drain()

    def ppp_in(self, protocol: int, info: bytes) -> list[Any]:
        self.core.receive_ppp(protocol, info, self.now)
        return self.drain()

    # -- what the client sent ---------------------------------------------------------
    @staticmethod
    def discovery_of(items: list[Any]) -> list[Sent]:
        return [
            Sent(i.dst, decode_discovery(i.packet)) for i in items if isinstance(i, SendDiscovery)
        ]

    @staticmethod
    def ppp_of(items: list[Any], protocol: int | None = None) -> list[tuple[int, ControlPacket]]:
        return [
            (i.protocol, decode_control(i.info))
            for i in items
            if isinstance(i, SendPpp) and (protocol is None or i.protocol == protocol)
        ]

    @staticmethod
    def events_of(items: list[Any], kind: type[CoreEvent] | None = None) -> list[Any]:
        return [
            i for i in items if isinstance(i, CoreEvent) and (kind is None or isinstance(i, kind))
        ]

    @staticmethod
    def options(packet: ControlPacket) -> list[Option]:
        return decode_options(packet.data)

    def host_uniq(self) -> bytes:
        assert self.core.discovery is not None
        return self.core.discovery.host_uniq

    # -- scripted exchanges ---------------------------------------------------------------
    def to_session(self, session_id: int = 0x1234) -> list[Any]:
        """PADI, PADO, PADR, PADS: returns the outputs after the PADS."""
        self.start()
        uniq = self.host_uniq()
        self.discovery_in(self.ac.pado(uniq))
        return self.discovery_in(self.ac.pads(uniq, session_id))

    def lcp_open(self, auth: bytes | None = PAP) -> list[Any]:
        """From a fresh session: both LCP requests acknowledged."""
        out = self.to_session()
        ours = self.ppp_of(out, Protocol.LCP)[-1][1]
        out += self.ppp_in(
            Protocol.LCP,
            encode_control(PppCode.CONFIGURE_ACK, ours.identifier, ours.data),
        )
        out += self.ppp_in(Protocol.LCP, self.ac.lcp_request(auth=auth))
        return out

    def to_running(
        self,
        auth: bytes | None = PAP,
        local: str = "198.51.100.7",
        peer: str = "198.51.100.1",
        dns: tuple[str, ...] = ("192.0.2.53", "192.0.2.54"),
    ) -> list[Any]:
        out = self.lcp_open(auth)
        if auth == PAP:
            req = self.ppp_of(out, Protocol.PAP)[-1][1]
            out += self.ppp_in(Protocol.PAP, encode_control(2, req.identifier, b"\x02ok"))
        ipcp = self.ppp_of(out, Protocol.IPCP)[-1][1]
        naks: list[Option] = [(IpcpOption.IP_ADDRESS, _ip(local))]
        for option, value in zip(
            (IpcpOption.PRIMARY_DNS, IpcpOption.SECONDARY_DNS), dns, strict=False
        ):
            naks.append((option, _ip(value)))
        out += self.ppp_in(
            Protocol.IPCP, self.ac.control(PppCode.CONFIGURE_NAK, ipcp.identifier, naks)
        )
        ipcp = self.ppp_of(out, Protocol.IPCP)[-1][1]
        out += self.ppp_in(
            Protocol.IPCP, encode_control(PppCode.CONFIGURE_ACK, ipcp.identifier, ipcp.data)
        )
        out += self.ppp_in(
            Protocol.IPCP,
            self.ac.control(PppCode.CONFIGURE_REQUEST, 1, [(IpcpOption.IP_ADDRESS, _ip(peer))]),
        )
        return out


def _ip(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


@pytest.fixture
def harness() -> Callable[..., Harness]:
    return Harness


@pytest.fixture
def ac_frames() -> AcBuilder:
    return AcBuilder()


# -- the scapy access concentrator in a namespace pair (test_lab, test_conformance) -------

AC_SCRIPT = Path(__file__).with_name("scapy_ac.py")
LAB_PASSWORD = "Pw-7f3a-correct-horse"
LAB_USERNAME = "user@isp.example"


class AcControl:
    """The test's side of the scapy AC's control socket."""

    def __init__(self, path: Path, proc: ManagedProcess) -> None:
        self.path = path
        self.proc = proc

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.path))
            s.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply: dict[str, Any] = json.loads(buf)
        assert reply.get("ok"), reply
        return reply

    def configure(self, **fields: Any) -> None:
        self.call("configure", **fields)

    def log(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")["log"]
        return result

    def wait(self, what: str, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            log = self.log()
            if predicate(log):
                found.append(log)
                return True
            return False

        poll(check, timeout, f"the AC to see {what}")
        return found[0]


class Pair:
    def __init__(self, lab: Lab, client: Netns, acns: Netns, ac: AcControl, base: Path) -> None:
        self.lab = lab
        self.client = client
        self.acns = acns
        self.ac = ac
        self.base = base


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    require_netns_prereqs(["ip"])
    base = tmp_path_factory.mktemp("pppoe-lab")
    with Lab() as lab:
        client, acns = lab.netns(), lab.netns()
        lab.veth(client, "wan0", acns, "ac0", mac_a="02:00:00:00:00:01", mac_b="02:00:00:00:ac:01")
        control = base / "ac.sock"
        proc = lab.spawn(
            acns, [sys.executable, str(AC_SCRIPT), "ac0", str(control)], base / "ac.log"
        )
        proc.wait_for_log("ready", timeout=30)
        yield Pair(lab, client, acns, AcControl(control, proc), base)


@pytest.fixture
def ac(pair: Pair) -> Iterator[AcControl]:
    pair.ac.call("reset")
    pair.ac.configure(password=LAB_PASSWORD, username=LAB_USERNAME)
    yield pair.ac
    assert pair.ac.proc.alive(), pair.ac.proc.log_text()[-2000:]


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "isp.password"
    path.write_text(LAB_PASSWORD + "\n")
    path.chmod(0o600)
    return path
