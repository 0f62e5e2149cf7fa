"""`make demo`'s router config and conventions, checked fast (the demo itself takes ~30 s
and root: run `make demo`).

The config scripts/demo.py hands to `routerd serve` validates, the whole of it
(DHCP, health checks, virtual events, observers, the PPPoE uplink), and the
demo's firewall log prefix names the action it is documented to.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import subprocess
import sys
from types import ModuleType

from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd_observe.nflog import action_of

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("routerd_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_config_validates(tmp_path: Path) -> None:
    demo = _demo()
    password = tmp_path / "isp2.password"
    password.write_text("secret\n")
    password.chmod(0o600)
    resources = [
        *demo.resources(tmp_path / "resolv.conf"),
        *demo.observe_resources(),
        *demo.pppoe_resources(password),
    ]
    kinds = {r["kind"] for r in resources}
    assert {"FlowLog", "FirewallLog", "DNSQueryLog", "PPPoESession"} <= kinds
    config = write_config(tmp_path / "router.yaml", router_config(*resources, name="demo"))
    out = subprocess.run(
        [sys.executable, "-m", "routerd", "validate", "-f", str(config)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_demo_logs_its_probe_as_a_drop() -> None:
    demo = _demo()
    assert action_of(demo.OBSERVE_PROBE_PREFIX) == "drop"
    fw = next(r for r in demo.observe_resources() if r["kind"] == "FirewallLog")
    assert f"group {fw['spec']['group']} drop" in demo.OBSERVE_NFT
    assert f'log prefix "{demo.OBSERVE_PROBE_PREFIX} "' in demo.OBSERVE_NFT
