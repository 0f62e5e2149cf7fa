"""A rogue DHCP responder for the lab tests (run inside the server namespace).

``python rogue_server.py IFNAME CLIENT_MAC SECONDS``: for SECONDS, answer
every DHCP request seen from CLIENT_MAC with replies the client must drop,
and send malformed frames to it, then print what it sent as JSON:

- an OFFER and an ACK with the request's xid but another chaddr;
- an OFFER and an ACK for the client's chaddr with a wrong xid;
- a frame whose UDP checksum is wrong;
- a frame whose IPv4 total length runs past the frame;
- a well-framed UDP datagram whose DHCP payload is garbage.

It never sends a reply that matches the client's exchange: it must not be
a competing server, only noise.

``python rogue_server.py --serve IFNAME CLIENT_MAC SECONDS``: a hostile
server instead. It answers the client's DISCOVER with an OFFER and its
REQUEST with an ACK for ``ROGUE_OFFER``, both carrying a subnet mask of
0.0.0.0 and the routers in ``HOSTILE_ROUTERS`` (unspecified, loopback,
multicast, then one usable), and prints ``served`` per ACK.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

from routerd_dhcpv4.codec import BOOTREPLY
from routerd_dhcpv4.codec import DecodeError
from routerd_dhcpv4.codec import DhcpMessage
from routerd_dhcpv4.codec import MessageType
from routerd_dhcpv4.codec import build_frame
from routerd_dhcpv4.codec import decode
from routerd_dhcpv4.codec import encode
from routerd_dhcpv4.codec import parse_frame

ROGUE_IP = "192.0.2.99"
ROGUE_OFFER = "192.0.2.66"


HOSTILE_ROUTERS = ("0.0.0.0", "127.0.0.1", "224.0.0.1", "192.0.2.1")


def reply(xid: int, chaddr: bytes, mtype: int, *, hostile: bool = False) -> bytes:
    msg = DhcpMessage(
        op=BOOTREPLY,
        xid=xid,
        yiaddr=ROGUE_OFFER,
        siaddr=ROGUE_IP,
        chaddr=chaddr,
        message_type=mtype,
        server_id=ROGUE_IP,
        lease_time=3600,
        subnet_mask="0.0.0.0" if hostile else "255.255.255.0",
        routers=HOSTILE_ROUTERS if hostile else (ROGUE_IP,),
    )
    return encode(msg)


def serve(sock: socket.socket, frame: Any, client_mac: bytes, deadline: float) -> None:
    """Answer the client's exchange with hostile values."""
    answers: dict[int, int] = {
        MessageType.DISCOVER: MessageType.OFFER,
        MessageType.REQUEST: MessageType.ACK,
    }
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        try:
            f = parse_frame(data, verify_checksums=False)
            if f.udp_dport != 67 or data[6:12] != client_mac:
                continue
            msg = decode(f.payload)
        except (DecodeError, ValueError):
            continue
        answer = answers.get(msg.message_type or 0)
        if answer is None:
            continue
        sock.send(frame(reply(msg.xid, client_mac, answer, hostile=True)))
        if answer == MessageType.ACK:
            print("served", flush=True)


def main() -> int:
    args = sys.argv[1:]
    hostile = args[:1] == ["--serve"]
    if hostile:
        args = args[1:]
    ifname, client_mac_text, seconds = args[0], args[1], float(args[2])
    client_mac = bytes.fromhex(client_mac_text.replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind((ifname, 0x0800))
    sock.settimeout(0.05)
    my_mac = sock.getsockname()[4]
    sent: dict[str, int] = {}

    def send(kind: str, frame: bytes) -> None:
        sock.send(frame)
        sent[kind] = sent.get(kind, 0) + 1

    def frame(payload: bytes) -> bytes:
        return build_frame(
            payload,
            src_mac=my_mac,
            dst_mac=client_mac,
            src_ip=ROGUE_IP,
            dst_ip="255.255.255.255",
            sport=67,
            dport=68,
        )

    other_mac = b"\x02\x00\x00\x00\x00\x01"
    deadline = time.monotonic() + seconds
    print("ready", flush=True)
    if hostile:
        serve(sock, frame, client_mac, deadline)
        return 0
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            data = b""
        xid = None
        if data:
            try:
                f = parse_frame(data, verify_checksums=False)
                if f.udp_dport == 67 and data[6:12] == client_mac:
                    xid = decode(f.payload).xid
            except (DecodeError, ValueError):
                pass
        if xid is not None:
            for mtype in (MessageType.OFFER, MessageType.ACK):
                send("wrong_chaddr", frame(reply(xid, other_mac, mtype)))
                send("wrong_xid", frame(reply(xid ^ 0x5A5A5A5A, client_mac, mtype)))
        good = bytearray(frame(reply(0x12345678, client_mac, MessageType.ACK)))
        bad_sum = bytearray(good)
        bad_sum[14 + 20 + 6] ^= 0xFF  # the UDP checksum
        send("bad_checksum", bytes(bad_sum))
        too_long = bytearray(good)
        too_long[16:18] = (len(good) - 14 + 200).to_bytes(2, "big")
        too_long[24:26] = b"\0\0"  # keep the header checksum out of the way
        send("bad_length", bytes(too_long))
        send("garbage", frame(b"\x02\x01\x06\x00" + b"\xee" * 50))
    print(json.dumps(sent), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
