"""Unit tests of the daemon glue that need no namespace: spec, host config, ARP frames."""

from __future__ import annotations

import pydantic
import pytest
from routerd_dhcpv4.apply import HostConfig
from routerd_dhcpv4.apply import desired_config
from routerd_dhcpv4.apply import dns_file_text
from routerd_dhcpv4.arp import build_arp
from routerd_dhcpv4.arp import parse_arp
from routerd_dhcpv4.lease import Lease
from routerd_dhcpv4.plugin import routerd_register_daemon_kinds
from routerd_dhcpv4.spec import DHCPv4ClientSpec
from routerd_dhcpv4.transport import BPF_DHCP_CLIENT

MAC = bytes.fromhex("02aabbccddee")


def spec(**fields: object) -> DHCPv4ClientSpec:
    return DHCPv4ClientSpec.model_validate({"interface": "wan0", **fields})


def lease(**fields: object) -> Lease:
    base: dict[str, object] = {
        "address": "192.0.2.100",
        "prefixlen": 24,
        "server_id": "192.0.2.1",
        "routers": ("192.0.2.1", "192.0.2.2"),
        "dns": ("192.0.2.53",),
        "lease_time": 120,
    }
    base.update(fields)
    return Lease(**base)  # type: ignore[arg-type]


def test_spec_defaults() -> None:
    s = spec()
    assert (s.client_id, s.route_metric, s.apply_address, s.apply_routes, s.apply_mtu) == (
        "mac",
        100,
        True,
        True,
        True,
    )
    assert (s.rapid_commit, s.release_on_stop, s.decline_on_conflict, s.keep_on_stop) == (
        False,
        False,
        False,
        False,
    )
    assert s.initial_delay == 0 and s.dns_file is None
    assert 121 in s.parameter_request_list


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mac", b"\x01" + MAC),
        ("rfc4361", b"\xff" + MAC[-4:] + b"\x00\x03\x00\x01" + MAC),
        ("00:11:22", b"\x00\x11\x22"),
        ("0x0a0b", b"\x0a\x0b"),
    ],
)
def test_client_id_forms(value: str, expected: bytes) -> None:
    assert spec(clientId=value).client_id_bytes(MAC) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"clientId": "zz"},
        {"clientId": "01"},
        {"interface": "a/b"},
        {"interface": "x" * 16},
        {"hostname": "bad_name"},
        {"parameterRequestList": [0]},
        {"parameterRequestList": [255]},
        {"requestedAddress": "2001:db8::1"},
        {"dnsFile": "relative/resolv.conf"},
        {"routeMetric": -1},
        {"initialDelay": "2m"},
        {"bogus": 1},
    ],
)
def test_spec_rejects(fields: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        spec(**fields)


def test_desired_default_route_uses_first_router_and_metric() -> None:
    want = desired_config(lease(), spec(routeMetric=7, dnsFile="/tmp/x.conf"))
    assert want.address == "192.0.2.100/24" and want.broadcast == "192.0.2.255"
    assert want.routes == (("0.0.0.0/0", "192.0.2.1", 7),)
    assert want.dns_file == "/tmp/x.conf"
    assert want.dns_text is not None and "nameserver 192.0.2.53" in want.dns_text


def test_desired_classless_routes_replace_option_3() -> None:
    l4 = lease(
        classless_routes=(("10.0.0.0/8", "192.0.2.254"), ("198.51.100.0/24", "0.0.0.0")),
    )
    want = desired_config(l4, spec())
    assert want.routes == (
        ("10.0.0.0/8", "192.0.2.254", 100),
        ("198.51.100.0/24", None, 100),
    ), "RFC 3442: option 121 present, option 3 ignored"


def test_gateway_outside_the_subnet_gets_an_on_link_route() -> None:
    want = desired_config(lease(prefixlen=32, routers=("10.1.1.1",)), spec())
    assert want.routes == (("10.1.1.1/32", None, 100), ("0.0.0.0/0", "10.1.1.1", 100))
    assert want.broadcast is None


def test_switches_turn_parts_off() -> None:
    want = desired_config(
        lease(mtu=1400),
        spec(applyAddress=False, applyRoutes=False, applyMtu=False),
    )
    assert want.empty
    assert desired_config(lease(mtu=1400), spec()).mtu == 1400
    assert desired_config(None, spec()).empty


def test_dns_text_prefers_search_list_over_domain() -> None:
    text = dns_file_text(lease(search=("a.test", "b.test"), domain="c.test"), "wan0")
    assert text.splitlines()[1:] == ["search a.test b.test", "nameserver 192.0.2.53"]
    text = dns_file_text(lease(domain="c.test"), "wan0")
    assert "search c.test" in text


def test_host_config_json_round_trip_and_garbage() -> None:
    cfg = desired_config(lease(mtu=1400), spec(dnsFile="/tmp/r.conf"), original_mtu=1500)
    assert HostConfig.from_json(cfg.to_json()) == cfg
    for junk in (None, 3, {"address": "nope"}, {"routes": [["x"]]}):
        assert HostConfig.from_json(junk) == HostConfig()


def test_arp_frames_round_trip() -> None:
    frame = build_arp(1, MAC, "0.0.0.0", b"\0" * 6, "192.0.2.100")
    assert parse_arp(frame) == (1, MAC, "0.0.0.0", "192.0.2.100")
    assert parse_arp(frame[:30]) is None
    assert parse_arp(b"\0" * 12 + b"\x08\x00" + frame[14:]) is None


def test_bpf_program_accepts_only_udp_port_68() -> None:
    # The classic BPF program is tcpdump's; pin its length and its port.
    assert len(BPF_DHCP_CLIENT) == 11
    assert BPF_DHCP_CLIENT[8] == (0x15, 0, 1, 68)


def test_plugin_registers_the_kind() -> None:
    kinds = []
    routerd_register_daemon_kinds(kinds.append)
    (kind,) = kinds
    assert (kind.name, kind.kind) == ("dhcpv4-client", "DHCPv4Client")
    assert kind.all_commands() == ("reload", "renew", "stop", "rebind", "release")
