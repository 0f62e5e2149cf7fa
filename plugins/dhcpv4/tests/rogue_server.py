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
"""

from __future__ import annotations

import json
import socket
import sys
import time

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


def reply(xid: int, chaddr: bytes, mtype: int) -> bytes:
    msg = DhcpMessage(
        op=BOOTREPLY,
        xid=xid,
        yiaddr=ROGUE_OFFER,
        siaddr=ROGUE_IP,
        chaddr=chaddr,
        message_type=mtype,
        server_id=ROGUE_IP,
        lease_time=3600,
        subnet_mask="255.255.255.0",
        routers=(ROGUE_IP,),
    )
    return encode(msg)


def main() -> int:
    ifname, client_mac_text, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
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
