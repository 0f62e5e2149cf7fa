"""A PPPoE access concentrator built on scapy, for faults pppd cannot make on demand.

Run inside the AC's namespace: ``python scapy_ac.py IFNAME CONTROL_SOCKET``.
It answers discovery (as one or two ACs: the second uses another source
MAC on the same veth), runs the AC side of LCP, PAP or CHAP-MD5, IPCP with
DNS and IPv6CP, answers LCP Echo-Requests and ICMP echo to its address
inside the session, and records what the client did. Framing and parsing
are scapy's (an implementation independent of the plugin's codec); IPv6CP,
which scapy lacks, is parsed by hand.

The test drives it through the Unix socket CONTROL_SOCKET, one JSON object
per line each way:

- ``{"cmd": "configure", ...}``: change the behaviour (keys of ``DEFAULTS``);
- ``{"cmd": "padt"}``: send a PADT for the current session;
- ``{"cmd": "inject"}``: send malformed and truncated frames to the client;
- ``{"cmd": "status"}``: what was seen (``log``) and the sessions;
- ``{"cmd": "reset"}``: forget the log and the sessions.

It prints ``ready`` once it listens.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import struct
import sys
import time
from typing import Any

from scapy.layers.inet import ICMP
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.layers.ppp import PPP
from scapy.layers.ppp import PPP_CHAP
from scapy.layers.ppp import PPP_IPCP
from scapy.layers.ppp import PPP_LCP
from scapy.layers.ppp import PPP_CHAP_ChallengeResponse
from scapy.layers.ppp import PPP_LCP_Configure
from scapy.layers.ppp import PPP_LCP_Echo
from scapy.layers.ppp import PPP_PAP_Request
from scapy.layers.ppp import PPP_PAP_Response
from scapy.layers.ppp import PPPoE
from scapy.layers.ppp import PPPoED
from scapy.layers.ppp import PPPoED_Tags
from scapy.layers.ppp import PPPoETag

ETH_P_ALL = 0x0003
DISC, SESS = 0x8863, 0x8864
LCP, PAP, CHAP, IPCP, IPV6CP, IPV4 = 0xC021, 0xC023, 0xC223, 0x8021, 0x8057, 0x0021

DEFAULTS: dict[str, Any] = {
    # discovery
    "acs": [{"name": "scapy-ac", "mac": None}],  # None: the interface's MAC
    "respond_padi": True,
    "cookie": None,  # hex: PADO carries it; a PADR without it gets no PADS
    "relay_session_id": None,  # hex
    "max_payload": False,  # echo RFC 4638 PPP-Max-Payload
    "pads_error": None,  # text of a Service-Name-Error in the PADS
    # LCP
    "lcp_delay": 0.0,  # seconds after the PADS before the AC's LCP starts (pppd: ~1 s)
    "auth": "pap",  # pap | chap | none
    "username": "user@isp.example",
    "password": "",
    "nak_mru": None,  # Nak the client's MRU with this value
    "reject_magic": False,
    "extra_lcp_options": [],  # [type, hex] the AC requests too (the client should reject)
    # IPCP
    "client_ip": "198.51.100.7",
    "ac_ip": "198.51.100.1",
    "dns": ["192.0.2.53", "192.0.2.54"],
    "reject_dns2": False,
    # after the session is up
    "silent": False,  # stop answering (echo timeout)
    "answer_echo": True,
}


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def opts_raw(options: Any) -> list[tuple[int, bytes]]:
    out = []
    for opt in options or []:
        raw = bytes(opt)
        out.append((raw[0], raw[2:]))
    return out


def encode_opts(options: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((t, len(v) + 2)) + v for t, v in options)


def control(code: int, ident: int, data: bytes) -> bytes:
    return struct.pack("!BBH", code, ident & 0xFF, 4 + len(data)) + data


class Session:
    def __init__(self, sid: int, client: bytes, ac_mac: bytes, now: float) -> None:
        self.sid = sid
        self.client = client
        self.ac_mac = ac_mac
        self.started = now
        self.lcp_start_at = now
        self.lcp_started = False
        self.our_lcp_acked = False
        self.their_lcp_acked = False
        self.lcp_up = False
        self.lcp_id = 0
        self.lcp_sent_at = 0.0
        self.extra_dropped = False
        self.auth_done = False
        self.challenge: bytes | None = None
        self.chap_id = 0
        self.ipcp_started = False
        self.our_ipcp_acked = False
        self.their_ipcp_acked = False
        self.ipcp_id = 0
        self.ipcp_sent_at = 0.0
        self.ipv6cp_started = False
        self.magic = os.urandom(4)
        self.naked_mru = False
        self.max_payload = False  # RFC 4638 in force: MRU 1500, not requested


class AC:
    def __init__(self, ifname: str, control_path: str) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)
        self.mac = self.sock.getsockname()[4]
        self.cfg: dict[str, Any] = json.loads(json.dumps(DEFAULTS))
        self.sessions: dict[int, Session] = {}
        self.next_sid = 0x100
        self.log: dict[str, Any] = {}
        self.reset_log()
        if os.path.exists(control_path):
            os.unlink(control_path)
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.bind(control_path)
        self.ctl.listen(4)
        self.clients: list[socket.socket] = []
        self.buffers: dict[socket.socket, bytes] = {}

    def reset_log(self) -> None:
        self.log = {
            "padi": 0,
            "padr": 0,
            "padr_to": [],
            "padr_cookie": [],
            "padr_relay": [],
            "padr_max_payload": [],
            "padt_received": [],
            "terminate_requests": 0,
            "client_lcp_requests": [],
            "client_lcp_rejects": [],
            "echo_requests": 0,
            "pap_requests": 0,
            "chap_responses": 0,
            "auth_ok": 0,
            "auth_failed": 0,
            "ipcp_up": 0,
            "icmp_echo": 0,
            "protocol_rejects": [],
            "ipv6cp_requests": [],
            "sessions": [],
        }

    # -- frames --------------------------------------------------------------------
    def ac_list(self) -> list[tuple[str, bytes]]:
        out = []
        for ac in self.cfg["acs"]:
            mac = mac_bytes(ac["mac"]) if ac.get("mac") else self.mac
            out.append((ac["name"], mac))
        return out

    def send(self, frame: Any) -> None:
        try:
            self.sock.send(bytes(frame))
        except OSError:
            pass

    def send_ppp(self, s: Session, proto: int, payload: bytes) -> None:
        self.send(
            Ether(dst=mac_text(s.client), src=mac_text(s.ac_mac), type=SESS)
            / PPPoE(sessionid=s.sid)
            / PPP(proto=proto)
            / payload
        )

    def on_frame(self, data: bytes, now: float) -> None:
        if len(data) < 14:
            return
        ethertype = struct.unpack_from("!H", data, 12)[0]
        if ethertype == DISC:
            self.on_discovery(Ether(data), now)
        elif ethertype == SESS:
            self.on_session(Ether(data), now)

    def on_discovery(self, pkt: Any, now: float) -> None:
        if PPPoED not in pkt:
            return
        disc = pkt[PPPoED]
        tags = {}
        if PPPoED_Tags in pkt:
            for t in pkt[PPPoED_Tags].tag_list:
                tags.setdefault(t.tag_type, bytes(t.tag_value))
        client = mac_bytes(pkt.src)
        code = disc.code
        if code == 0x09 and self.cfg["respond_padi"]:
            self.log["padi"] += 1
            for name, mac in self.ac_list():
                out = [PPPoETag(tag_type=0x0102, tag_value=name.encode())]
                out.append(PPPoETag(tag_type=0x0101, tag_value=tags.get(0x0101, b"")))
                if 0x0103 in tags:
                    out.append(PPPoETag(tag_type=0x0103, tag_value=tags[0x0103]))
                if self.cfg["cookie"]:
                    out.append(
                        PPPoETag(tag_type=0x0104, tag_value=bytes.fromhex(self.cfg["cookie"]))
                    )
                if self.cfg["relay_session_id"]:
                    out.append(
                        PPPoETag(
                            tag_type=0x0110, tag_value=bytes.fromhex(self.cfg["relay_session_id"])
                        )
                    )
                if self.cfg["max_payload"] and 0x0120 in tags:
                    out.append(PPPoETag(tag_type=0x0120, tag_value=tags[0x0120]))
                self.send(
                    Ether(dst=pkt.src, src=mac_text(mac), type=DISC)
                    / PPPoED(code=0x07, sessionid=0)
                    / PPPoED_Tags(tag_list=out)
                )
        elif code == 0x19:
            self.on_padr(pkt, tags, client, now)
        elif code == 0xA7:
            self.log["padt_received"].append({"sid": disc.sessionid, "src": pkt.src, "at": now})
            self.sessions.pop(disc.sessionid, None)

    def on_padr(self, pkt: Any, tags: dict[int, bytes], client: bytes, now: float) -> None:
        self.log["padr"] += 1
        dst = mac_bytes(pkt.dst)
        names = {mac: name for name, mac in self.ac_list()}
        if dst not in names:
            return
        self.log["padr_to"].append(names[dst])
        self.log["padr_cookie"].append(tags[0x0104].hex() if 0x0104 in tags else None)
        self.log["padr_relay"].append(tags[0x0110].hex() if 0x0110 in tags else None)
        self.log["padr_max_payload"].append(
            int.from_bytes(tags[0x0120], "big") if 0x0120 in tags else None
        )
        if self.cfg["cookie"] and tags.get(0x0104) != bytes.fromhex(self.cfg["cookie"]):
            return  # RFC 2516 §5.3: a PADR without our cookie is not answered
        out = [PPPoETag(tag_type=0x0101, tag_value=tags.get(0x0101, b""))]
        if 0x0103 in tags:
            out.append(PPPoETag(tag_type=0x0103, tag_value=tags[0x0103]))
        if self.cfg["pads_error"]:
            out.append(PPPoETag(tag_type=0x0201, tag_value=self.cfg["pads_error"].encode()))
            self.send(
                Ether(dst=pkt.src, src=pkt.dst, type=DISC)
                / PPPoED(code=0x65, sessionid=0)
                / PPPoED_Tags(tag_list=out)
            )
            return
        if self.cfg["max_payload"] and 0x0120 in tags:
            out.append(PPPoETag(tag_type=0x0120, tag_value=tags[0x0120]))
        sid = self.next_sid
        self.next_sid += 1
        s = Session(sid, client, dst, now)
        s.max_payload = bool(self.cfg["max_payload"] and 0x0120 in tags)
        s.lcp_start_at = now + float(self.cfg["lcp_delay"])
        self.sessions[sid] = s
        self.log["sessions"].append({"sid": sid, "ac": names[dst], "at": now})
        self.send(
            Ether(dst=pkt.src, src=pkt.dst, type=DISC)
            / PPPoED(code=0x65, sessionid=sid)
            / PPPoED_Tags(tag_list=out)
        )
        if self.cfg["lcp_delay"] <= 0:
            self.start_lcp(s, now)

    def padt(self) -> list[int]:
        sent = []
        for s in list(self.sessions.values()):
            self.send(
                Ether(dst=mac_text(s.client), src=mac_text(s.ac_mac), type=DISC)
                / PPPoED(code=0xA7, sessionid=s.sid)
                / PPPoED_Tags(
                    tag_list=[PPPoETag(tag_type=0x0203, tag_value=b"session killed by test")]
                )
            )
            sent.append(s.sid)
            del self.sessions[s.sid]
        return sent

    def inject(self) -> int:
        """Malformed and truncated frames at the client of the latest session (or broadcast)."""
        sessions = list(self.sessions.values())
        client = sessions[-1].client if sessions else b"\xff" * 6
        sid = sessions[-1].sid if sessions else 1
        head = client + self.mac
        frames = [
            head + struct.pack("!H", DISC) + bytes.fromhex("1107"),  # truncated header
            head
            + struct.pack("!H", DISC)
            + bytes.fromhex("110700000010")
            + b"\x01\x02",  # LENGTH too big
            head + struct.pack("!H", DISC) + bytes.fromhex("2107000000000000"),  # VER/TYPE 2/1
            head + struct.pack("!H", DISC) + bytes.fromhex("110700000006") + b"\x01\x02\x00\x09ab",
            head + struct.pack("!H", SESS) + struct.pack("!BBHH", 0x11, 0, sid, 40) + b"\xc0\x21",
            head
            + struct.pack("!H", SESS)
            + struct.pack("!BBHH", 0x11, 0, sid, 4)
            + b"\xc0\x21\x01\x01",
            head
            + struct.pack("!H", SESS)
            + struct.pack("!BBHH", 0x11, 0, sid, 6)
            + b"\xc0\x21\x09\x01\x00\x40",
        ]
        for frame in frames:
            # Unpadded: a veth carries runts, and padding would complete a
            # truncated header with zeros.
            self.sock.send(frame)
        return len(frames)

    # -- PPP -----------------------------------------------------------------------------
    def lcp_options(self, s: Session) -> list[tuple[int, bytes]]:
        opts = [] if s.max_payload else [(1, (1492).to_bytes(2, "big"))]
        if self.cfg["auth"] == "pap":
            opts.append((3, (PAP).to_bytes(2, "big")))
        elif self.cfg["auth"] == "chap":
            opts.append((3, (CHAP).to_bytes(2, "big") + b"\x05"))
        opts.append((5, s.magic))
        if not s.extra_dropped:
            opts += [(t, bytes.fromhex(v)) for t, v in self.cfg["extra_lcp_options"]]
        return opts

    def start_lcp(self, s: Session, now: float) -> None:
        s.lcp_started = True
        self.send_lcp_request(s, now)

    def send_lcp_request(self, s: Session, now: float) -> None:
        s.lcp_id += 1
        s.lcp_sent_at = now
        self.send_ppp(s, LCP, control(1, s.lcp_id, encode_opts(self.lcp_options(s))))

    def on_session(self, pkt: Any, now: float) -> None:
        if PPPoE not in pkt or PPP not in pkt:
            return
        s = self.sessions.get(pkt[PPPoE].sessionid)
        if s is None or mac_bytes(pkt.src) != s.client:
            return
        if self.cfg["silent"] and s.lcp_up and s.their_ipcp_acked:
            return
        proto = pkt[PPP].proto
        raw = bytes(pkt[PPP].payload)
        if proto == LCP:
            self.on_lcp(s, PPP_LCP(raw), raw, now)
        elif proto == PAP and s.lcp_up:
            self.on_pap(s, raw, now)
        elif proto == CHAP and s.lcp_up:
            self.on_chap(s, raw, now)
        elif proto == IPCP and s.auth_done:
            self.on_ipcp(s, PPP_IPCP(raw), now)
        elif proto == IPV6CP and s.auth_done:
            self.on_ipv6cp(s, raw)
        elif proto == IPV4 and s.their_ipcp_acked:
            self.on_ip(s, raw)

    def on_lcp(self, s: Session, lcp: Any, raw: bytes, now: float) -> None:
        code = raw[0]
        if code == 1:
            if not s.lcp_started:
                return  # like pppd before its LCP starts: the request is lost
            opts = opts_raw(lcp.options)
            self.log["client_lcp_requests"].append([[t, v.hex()] for t, v in opts])
            rej = [(t, v) for t, v in opts if t == 5 and self.cfg["reject_magic"]]
            nak = []
            for t, v in opts:
                if (
                    t == 1
                    and self.cfg["nak_mru"]
                    and int.from_bytes(v, "big") != self.cfg["nak_mru"]
                ):
                    nak.append((1, int(self.cfg["nak_mru"]).to_bytes(2, "big")))
            if rej:
                self.send_ppp(s, LCP, control(4, raw[1], encode_opts(rej)))
            elif nak:
                self.send_ppp(s, LCP, control(3, raw[1], encode_opts(nak)))
            else:
                self.send_ppp(
                    s, LCP, control(2, raw[1], raw[4 : struct.unpack_from("!H", raw, 2)[0]])
                )
                s.their_lcp_acked = True
                self.maybe_lcp_up(s, now)
        elif code == 2 and raw[1] == s.lcp_id:
            s.our_lcp_acked = True
            self.maybe_lcp_up(s, now)
        elif code in (3, 4):
            if code == 4:
                self.log["client_lcp_rejects"].append(
                    [[t, v.hex()] for t, v in opts_raw(PPP_LCP_Configure(raw).options)]
                )
                s.extra_dropped = True
            self.send_lcp_request(s, now)
        elif code == 5:
            self.log["terminate_requests"] += 1
            self.send_ppp(s, LCP, control(6, raw[1], b""))
        elif code == 8:
            self.log["protocol_rejects"].append(raw[4:6].hex())
        elif code == 9:
            self.log["echo_requests"] += 1
            if self.cfg["answer_echo"]:
                echo = PPP_LCP_Echo(raw)
                self.send_ppp(s, LCP, control(10, raw[1], s.magic + bytes(echo.data or b"")))

    def maybe_lcp_up(self, s: Session, now: float) -> None:
        if s.lcp_up or not (s.our_lcp_acked and s.their_lcp_acked):
            return
        s.lcp_up = True
        if self.cfg["auth"] == "chap":
            s.challenge = os.urandom(16)
            s.chap_id = (s.chap_id + 1) & 0xFF
            self.send_ppp(
                s,
                CHAP,
                bytes(
                    PPP_CHAP_ChallengeResponse(
                        code=1, id=s.chap_id, value=s.challenge, optional_name=b"scapy-ac"
                    )
                ),
            )
        elif self.cfg["auth"] == "none":
            self.auth_ok(s, now)

    def auth_ok(self, s: Session, now: float) -> None:
        s.auth_done = True
        self.log["auth_ok"] += 1
        self.start_ipcp(s, now)

    def auth_fail(self, s: Session) -> None:
        self.log["auth_failed"] += 1
        s.lcp_id += 1
        self.send_ppp(s, LCP, control(5, s.lcp_id, b"Authentication failed"))

    def on_pap(self, s: Session, raw: bytes, now: float) -> None:
        if raw[0] != 1:
            return
        req = PPP_PAP_Request(raw)
        self.log["pap_requests"] += 1
        ok = (
            req.username == self.cfg["username"].encode()
            and req.password == self.cfg["password"].encode()
        )
        message = b"Login ok" if ok else b"Authentication failure"
        self.send_ppp(
            s, PAP, bytes(PPP_PAP_Response(code=2 if ok else 3, id=raw[1], message=message))
        )
        if ok:
            if not s.auth_done:
                self.auth_ok(s, now)
        else:
            self.auth_fail(s)

    def on_chap(self, s: Session, raw: bytes, now: float) -> None:
        if raw[0] != 2 or s.challenge is None:
            return
        resp = PPP_CHAP_ChallengeResponse(raw)
        self.log["chap_responses"] += 1
        want = hashlib.md5(bytes((raw[1],)) + self.cfg["password"].encode() + s.challenge).digest()
        ok = resp.value == want and resp.optional_name == self.cfg["username"].encode()
        self.send_ppp(
            s,
            CHAP,
            bytes(PPP_CHAP(code=3 if ok else 4, id=raw[1], data=b"Welcome" if ok else b"Denied")),
        )
        if ok:
            if not s.auth_done:
                self.auth_ok(s, now)
        else:
            self.auth_fail(s)

    def start_ipcp(self, s: Session, now: float) -> None:
        s.ipcp_started = True
        self.send_ipcp_request(s, now)

    def send_ipcp_request(self, s: Session, now: float) -> None:
        s.ipcp_id += 1
        s.ipcp_sent_at = now
        opts = [(3, socket.inet_aton(self.cfg["ac_ip"]))]
        self.send_ppp(s, IPCP, control(1, s.ipcp_id, encode_opts(opts)))

    def on_ipcp(self, s: Session, ipcp: Any, now: float) -> None:
        raw = bytes(ipcp)
        code = raw[0]
        if code == 1:
            opts = opts_raw(ipcp.options)
            want = {3: socket.inet_aton(self.cfg["client_ip"])}
            dns = self.cfg["dns"]
            if dns:
                want[129] = socket.inet_aton(dns[0])
            if len(dns) > 1:
                want[131] = socket.inet_aton(dns[1])
            rej = [(t, v) for t, v in opts if t == 131 and self.cfg["reject_dns2"]]
            rej += [(t, v) for t, v in opts if t not in (3, 129, 131)]
            nak = [(t, want[t]) for t, v in opts if t in want and v != want[t]]
            if rej:
                self.send_ppp(s, IPCP, control(4, raw[1], encode_opts(rej)))
            elif nak:
                self.send_ppp(s, IPCP, control(3, raw[1], encode_opts(nak)))
            else:
                self.send_ppp(s, IPCP, control(2, raw[1], encode_opts(opts)))
                s.their_ipcp_acked = True
                if s.our_ipcp_acked:
                    self.log["ipcp_up"] += 1
        elif code == 2 and raw[1] == s.ipcp_id:
            s.our_ipcp_acked = True
            if s.their_ipcp_acked:
                self.log["ipcp_up"] += 1

    def on_ipv6cp(self, s: Session, raw: bytes) -> None:
        code, ident = raw[0], raw[1]
        if code == 1:
            length = struct.unpack_from("!H", raw, 2)[0]
            self.log["ipv6cp_requests"].append(raw[4:length].hex())
            self.send_ppp(s, IPV6CP, control(2, ident, raw[4:length]))
            if not s.ipv6cp_started:
                s.ipv6cp_started = True
                self.send_ppp(
                    s, IPV6CP, control(1, 1, encode_opts([(1, bytes.fromhex("0200000000000001"))]))
                )

    def on_ip(self, s: Session, raw: bytes) -> None:
        pkt = IP(raw)
        if ICMP in pkt and pkt[ICMP].type == 8 and pkt.dst == self.cfg["ac_ip"]:
            self.log["icmp_echo"] += 1
            reply = (
                IP(src=pkt.dst, dst=pkt.src, ttl=64)
                / ICMP(type=0, id=pkt[ICMP].id, seq=pkt[ICMP].seq)
                / bytes(pkt[ICMP].payload)
            )
            self.send_ppp(s, IPV4, bytes(reply))

    def timers(self, now: float) -> None:
        for s in list(self.sessions.values()):
            if not s.lcp_started and now >= s.lcp_start_at:
                self.start_lcp(s, now)
            elif s.lcp_started and not s.our_lcp_acked and now - s.lcp_sent_at >= 1.0:
                self.send_lcp_request(s, now)
            if s.ipcp_started and not s.our_ipcp_acked and now - s.ipcp_sent_at >= 1.0:
                self.send_ipcp_request(s, now)

    # -- control ----------------------------------------------------------------------
    def on_control(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd = msg.get("cmd")
        if cmd == "configure":
            for key, value in msg.items():
                if key != "cmd":
                    if key not in DEFAULTS:
                        return {"ok": False, "error": f"unknown key {key}"}
                    self.cfg[key] = value
            return {"ok": True}
        if cmd == "padt":
            return {"ok": True, "sids": self.padt()}
        if cmd == "inject":
            return {"ok": True, "frames": self.inject()}
        if cmd == "status":
            return {
                "ok": True,
                "log": self.log,
                "sessions": sorted(self.sessions),
                "mac": mac_text(self.mac),
            }
        if cmd == "reset":
            self.reset_log()
            self.sessions.clear()
            self.cfg = json.loads(json.dumps(DEFAULTS))
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd}"}

    def serve(self) -> None:
        print("ready", flush=True)
        while True:
            readers = [self.sock, self.ctl, *self.clients]
            ready, _, _ = select.select(readers, [], [], 0.05)
            now = time.monotonic()
            for r in ready:
                if r is self.sock:
                    for _ in range(64):
                        try:
                            data, addr = self.sock.recvfrom(65536)
                        except BlockingIOError:
                            break
                        except OSError:
                            break  # ENETDOWN while a test holds the link down
                        if addr[2] == 4:  # PACKET_OUTGOING: our own
                            continue
                        try:
                            self.on_frame(data, now)
                        except Exception as exc:  # a test AC must survive what it is sent
                            print(f"error handling a frame: {exc!r}", flush=True)
                elif r is self.ctl:
                    conn, _ = self.ctl.accept()
                    self.clients.append(conn)
                    self.buffers[conn] = b""
                else:
                    chunk = r.recv(65536)
                    if not chunk:
                        self.clients.remove(r)
                        r.close()
                        continue
                    self.buffers[r] += chunk
                    while b"\n" in self.buffers[r]:
                        line, self.buffers[r] = self.buffers[r].split(b"\n", 1)
                        reply = self.on_control(json.loads(line))
                        r.sendall(json.dumps(reply).encode() + b"\n")
            self.timers(now)


if __name__ == "__main__":
    AC(sys.argv[1], sys.argv[2]).serve()
