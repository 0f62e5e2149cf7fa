"""Observer resources are validated like every other: each problem names its field."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import pytest
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config


@pytest.mark.parametrize(
    ("kind", "spec", "problem"),
    [
        ("FlowLog", {"lanNetworks": ["192.168.50.0/33"]}, "spec.lanNetworks"),
        ("FlowLog", {"interim": "0.5s"}, "interim must be from 1s to 1d"),
        ("FlowLog", {"retention": {"maxSize": "12 bananas"}}, "expected a size"),
        ("FlowLog", {"retention": {"maxAge": "10s"}}, "maxAge must be at least 1m"),
        ("FlowLog", {"receiveBuffer": "128GiB"}, "size must be from 1MiB to 64GiB"),
        ("FirewallLog", {"group": 70000}, "spec.group"),
        ("FirewallLog", {}, "spec.group"),
        ("DNSQueryLog", {"interfaces": []}, "spec.interfaces"),
        ("DNSQueryLog", {"interfaces": ["a/b"]}, "is not an interface name"),
        ("DNSQueryLog", {"interfaces": ["lan0"], "matchTimeout": "2m"}, "matchTimeout"),
        ("DNSQueryLog", {"interfaces": ["lan0"], "bogus": 1}, "spec.bogus"),
    ],
)
def test_bad_observer_specs_are_refused(
    tmp_path: Path, kind: str, spec: dict[str, object], problem: str
) -> None:
    config = write_config(tmp_path / "router.yaml", router_config(resource(kind, "x", spec)))
    out = subprocess.run(
        [sys.executable, "-m", "routerd", "validate", "-f", str(config)],
        capture_output=True,
        text=True,
        env={"ROUTERD_PLUGINS": "observe", "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert out.returncode != 0
    assert f"{kind}/x" in out.stderr + out.stdout and problem in out.stderr + out.stdout


def test_a_complete_config_validates(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "router.yaml",
        router_config(
            resource(
                "FlowLog",
                "lan",
                {
                    "lanNetworks": ["192.168.50.0/24", "fd00:50::/64"],
                    "interim": "5m",
                    "retention": {"maxAge": "7d", "maxRecords": 1000000, "maxSize": "512MiB"},
                },
            ),
            resource("FirewallLog", "fw", {"group": 5, "copyRange": 128}),
            resource("DNSQueryLog", "lan-dns", {"interfaces": ["lan0"], "matchTimeout": "5s"}),
        ),
    )
    out = subprocess.run(
        [sys.executable, "-m", "routerd", "validate", "-f", str(config)],
        capture_output=True,
        text=True,
        env={"ROUTERD_PLUGINS": "observe", "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
