"""Spec validation and the address/route plan, without namespaces."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError
import pytest
from routerd_dhcpv6.apply import Item
from routerd_dhcpv6.apply import desired_items
from routerd_dhcpv6.core import Binding
from routerd_dhcpv6.core import DelegatedPrefix
from routerd_dhcpv6.spec import DHCPv6PrefixDelegationSpec


def spec(**fields: Any) -> DHCPv6PrefixDelegationSpec:
    base: dict[str, Any] = {"interface": "wan0", "downstream": [{"interface": "lan0"}]}
    base.update(fields)
    return DHCPv6PrefixDelegationSpec.model_validate(base)


def _secs(value: float) -> int:
    return 0xFFFFFFFF if math.isinf(value) else int(value)


def binding(*prefixes: tuple[str, float, float]) -> Binding:
    return Binding(
        server_duid=bytes.fromhex("000300010200005e0001"),
        iaid=1,
        t1=50.0,
        t2=80.0,
        acquired=0.0,
        prefixes=tuple(
            DelegatedPrefix(p, _secs(pref), _secs(valid), 0.0, pref, valid)
            for p, pref, valid in prefixes
        ),
    )


def test_defaults() -> None:
    s = spec()
    assert s.prefix_length == 0 and s.release_on_stop and not s.keep_on_stop
    assert s.apply_prefixes and s.unreachable_route and not s.rapid_commit
    d = s.downstream[0]
    assert (d.subnet_id, d.prefix_length, d.address_suffix, d.assign_address) == (
        0,
        64,
        "::1",
        True,
    )
    assert s.client_duid_type() == "ll"


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"prefixLength": 65}, "prefixLength"),
        ({"prefixLength": 60, "downstream": [{"interface": "lan0", "subnetId": 16}]}, "subnetId"),
        (
            {"prefixLength": 60, "downstream": [{"interface": "lan0", "prefixLength": 56}]},
            "prefixLength",
        ),
        ({"downstream": [{"interface": "lan0", "subnetId": -1}]}, "subnetId"),
        ({"downstream": [{"interface": "lan0", "addressSuffix": "nope"}]}, "addressSuffix"),
        ({"downstream": [{"interface": "lan0", "addressSuffix": "::"}]}, "addressSuffix"),
        (
            {"downstream": [{"interface": "lan0", "prefixLength": 120, "addressSuffix": "::1:0"}]},
            "addressSuffix",
        ),
        ({"downstream": [{"interface": "wan0"}]}, "interface"),
        ({"downstream": [{"interface": "lan0"}, {"interface": "lan0"}]}, "downstream[1]"),
        ({"interface": "a/b"}, "interface"),
        ({"duid": {"type": "raw"}}, "value"),
        ({"duid": {"type": "raw", "value": "zz"}}, "value"),
        ({"duid": {"type": "raw", "value": "0003"}}, "value"),
        ({"duid": {"type": "ll", "value": "00030001020000000001"}}, "value"),
        ({"duid": {"type": "en"}}, "type"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_specs_name_the_field(fields: dict[str, Any], mentions: str) -> None:
    with pytest.raises(ValidationError) as info:
        spec(**fields)
    assert mentions in str(info.value)


def test_raw_duid_accepts_separators() -> None:
    s = spec(duid={"type": "raw", "value": "00:03:00:01:02:00:5e:00:00:01"})
    assert s.duid is not None and s.duid.raw_bytes() == bytes.fromhex("00030001 02005e000001")


def test_plan_for_two_downstreams_and_two_prefixes() -> None:
    s = spec(
        downstream=[
            {"interface": "lan0", "subnetId": 1},
            {"interface": "lan1", "subnetId": 15, "addressSuffix": "::53"},
            {"interface": "lan2", "subnetId": 2, "assignAddress": False},
        ]
    )
    b = binding(("2001:db8:100::/60", 80.0, 120.0), ("2001:db8:200::/60", 0.0, 30.0))
    items, assignments = desired_items(b, s, now=10.0)
    plan = {
        (i.kind, i.interface, i.cidr): (life.valid, life.preferred) for i, life in items.values()
    }
    assert plan == {
        ("unreachable", None, "2001:db8:100::/60"): (110.0, 70.0),
        ("address", "lan0", "2001:db8:100:1::1/64"): (110.0, 70.0),
        ("address", "lan1", "2001:db8:100:f::53/64"): (110.0, 70.0),
        ("route", "lan2", "2001:db8:100:2::/64"): (110.0, 70.0),
        ("unreachable", None, "2001:db8:200::/60"): (20.0, 0.0),
        ("address", "lan0", "2001:db8:200:1::1/64"): (20.0, 0.0),
        ("address", "lan1", "2001:db8:200:f::53/64"): (20.0, 0.0),
        ("route", "lan2", "2001:db8:200:2::/64"): (20.0, 0.0),
    }
    assert [a.address for a in assignments[:3]] == [
        "2001:db8:100:1::1",
        "2001:db8:100:f::53",
        None,
    ]


def test_plan_skips_what_does_not_fit_and_what_expired() -> None:
    s = spec(downstream=[{"interface": "lan0", "subnetId": 300}], unreachableRoute=False)
    b = binding(("2001:db8:100::/56", 80.0, 120.0), ("2001:db8:200::/60", 10.0, 10.5))
    items, assignments = desired_items(b, s, now=10.0)
    assert items == {}, "subnet 300 is outside a /56; the /60 is (nearly) expired"
    assert assignments[0].problem is not None and "256 subnets" in assignments[0].problem


def test_plan_infinite_lifetimes_and_disabled() -> None:
    b = binding(("2001:db8:100::/60", math.inf, math.inf))
    items, _ = desired_items(b, spec(), now=5.0)
    assert {life.valid for _, life in items.values()} == {None}
    assert desired_items(b, spec(applyPrefixes=False), now=5.0) == ({}, [])
    assert desired_items(None, spec(), now=5.0) == ({}, [])


def test_item_json_round_trip_and_garbage() -> None:
    item = Item("address", "lan0", "2001:db8:100:1::1/64", "2001:db8:100::/60")
    assert Item.from_json(item.to_json()) == item
    for junk in (
        None,
        [],
        {"kind": "x"},
        {"kind": "address", "cidr": "zz"},
        {"kind": "route", "cidr": 5},
    ):
        assert Item.from_json(junk) is None
