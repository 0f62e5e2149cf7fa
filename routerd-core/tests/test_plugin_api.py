"""The public plugin API: one module, documented, versioned; topic namespaces; key facts."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import routerd
from routerd.config import SpecModel
from routerd.daemon.engine import DaemonEngine
from routerd.kinds import DaemonKind
import routerd.plugin

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugin-hooks.md"
_ROW = re.compile(
    r"^\| `([A-Za-z0-9_]+)` \| `from (routerd[a-z._]*) import ([A-Za-z0-9_]+)` \| `([a-z._]+)` \|"
)
_TESTING_ROW = re.compile(
    r"^\| `([A-Za-z_]+)` \| `from (routerd\.testing[a-z._]*) import ([A-Za-z_]+)` \|"
)


def documented() -> dict[str, tuple[str, str]]:
    """Name -> (import module, defining module) from the Public API table."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        m = _ROW.match(line)
        if m:
            name, module, imported, defined = m.groups()
            assert name == imported, line
            rows[name] = (module, defined)
    return rows


def test_every_public_name_is_documented_and_every_documented_name_importable() -> None:
    """Before: no single module; the docs gave no import paths."""
    rows = documented()
    assert set(rows) == set(routerd.plugin.__all__)
    assert routerd.plugin.__all__ == sorted(routerd.plugin._WHERE)
    for name, (module, defined) in rows.items():
        assert module == "routerd.plugin", name
        value = getattr(importlib.import_module(module), name)
        assert value is getattr(importlib.import_module(defined), name), name


def test_testing_api_rows_import() -> None:
    names = []
    for line in DOCS.read_text().splitlines():
        m = _TESTING_ROW.match(line)
        if m:
            name, module, imported = m.groups()
            assert getattr(importlib.import_module(module), imported) is not None
            names.append(name)
    assert {"DaemonConformance", "ConformanceTarget", "router_config", "resource"} <= set(names)


def test_plugin_api_version_and_changelog() -> None:
    assert re.fullmatch(r"\d+\.\d+", routerd.PLUGIN_API)
    assert routerd.plugin.PLUGIN_API == routerd.PLUGIN_API
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"plugin API {routerd.PLUGIN_API}" in changelog
    assert routerd.__version__ in changelog
    assert "### Compatibility" in DOCS.read_text()


def test_importing_the_api_is_lazy() -> None:
    """A plugin's entry module imports hookimpl without pulling pyroute2, falcon or pydantic."""
    probe = (
        "import sys, json\n"
        "from routerd.plugin import hookimpl, PLUGIN_API\n"
        "print(json.dumps(sorted(m for m in ('pyroute2', 'falcon', 'pydantic', 'waitress')"
        " if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# -- topic namespaces -------------------------------------------------------------------
SPOOFER = """
    from routerd.plugin import CommandOutcome, DaemonEngine, DaemonKind, SpecModel, hookimpl

    class Spec(SpecModel):
        pass

    class Engine(DaemonEngine):
        def start(self, ctx):
            self.ctx = ctx
            ctx.status.set_phase("Up", "Started", "")

        def command(self, name, args):
            self.ctx.emit(args["topic"], reason="Spoof", message="spoofed")
            return CommandOutcome("emitted")

    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="spoof-client", kind="Spoof", spec_model=Spec,
                            factory=lambda ctx: Engine(), commands={"emit": "emit a topic"}))
"""


@pytest.fixture
def spoofer_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "spoofer.py").write_text(textwrap.dedent(SPOOFER))
    info = site / "spoofer-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spoofer\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[routerd]\nspoofer = spoofer\n")
    return site


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("routerd.daemon.lifecycle.stopped", False),
        ("routerd.daemon.command.executed", False),
        ("routerd.resource.phase.changed", False),
        ("routerd.healthcheck.state.healthy", False),  # another plugin's
        ("routerd.spoofer.x", False),  # not its prefix either
        ("routerd.spoof.session.up", True),
        ("example.spoof.thing", True),
    ],
)
def test_engines_emit_only_in_their_namespace(
    routerd_daemon: Any, spoofer_site: Path, topic: str, allowed: bool
) -> None:
    """Before: an engine could emit routerd.daemon.lifecycle.stopped and fool every reader."""
    from routerd.testing.daemon import resource
    from routerd.testing.daemon import router_config

    daemon = routerd_daemon(
        "spoof-client",
        router_config(resource("Spoof", "s", {})),
        "s",
        env={"ROUTERD_PLUGINS": "spoofer", "PYTHONPATH": str(spoofer_site)},
    )
    head = daemon.head()
    resp = daemon.command("emit", {"topic": topic})
    emitted = [e["topic"] for e in daemon.events(since=head)["events"]]
    if allowed:
        assert resp.status == 200, resp.error_text()
        assert topic in emitted
    else:
        assert resp.status == 409
        assert "an engine emits under routerd.spoof.* or outside routerd.*" in resp.error_text()
        assert topic not in emitted
        assert "routerd.daemon.command.rejected" in emitted  # the runtime's own still pass


def test_topic_prefix_of_a_kind() -> None:
    def kind(name: str, prefix: str = "") -> DaemonKind:
        return DaemonKind(
            name=name, kind="K", spec_model=SpecModel, factory=DaemonEngine, topic_prefix=prefix
        )

    assert kind("dhcpv4-client").topics == "routerd.dhcpv4"
    assert kind("healthcheck").topics == "routerd.healthcheck"
    assert kind("conntrack-observer", "routerd.observe.conntrack").emits(
        "routerd.observe.conntrack.flow.new"
    )
    assert not kind("dhcpv4-client").emits("routerd.dhcpv4x.a")
    for bad in ("routerd.daemon", "routerd.resource.x", "routerd", "other.ns", "routerd.Bad"):
        with pytest.raises(ValueError):
            kind("ww", bad)
    with pytest.raises(ValueError):
        kind("daemon-thing")  # the default prefix would be routerd.daemon


# -- key facts --------------------------------------------------------------------------
def test_key_facts_come_from_the_kind_and_never_raise() -> None:
    def boom(observed: Any) -> str:
        raise KeyError("x")

    plain = DaemonKind(name="ww", kind="W", spec_model=SpecModel, factory=DaemonEngine)
    assert plain.key_facts({"state": "BOUND", "address": "192.0.2.1/24"}) == "BOUND"
    assert plain.key_facts({"address": "192.0.2.1/24"}) == ""
    broken = DaemonKind(name="ww", kind="W", spec_model=SpecModel, factory=DaemonEngine, facts=boom)
    assert broken.key_facts({}) == ""
    long = DaemonKind(
        name="ww", kind="W", spec_model=SpecModel, factory=DaemonEngine, facts=lambda o: "x\n" * 200
    )
    assert len(long.key_facts({})) == 120 and "\n" not in long.key_facts({})


def test_first_party_facts() -> None:
    from routerd.plugins import load_plugins

    kinds = load_plugins(allow={"healthcheck", "dhcpv4", "dhcpv6"}).kinds
    assert (
        kinds["dhcpv4-client"].key_facts(
            {"state": "BOUND", "address": "192.0.2.100/24", "routers": ["192.0.2.1"]}
        )
        == "192.0.2.100/24 via 192.0.2.1"
    )
    assert kinds["dhcpv4-client"].key_facts({"state": "SELECTING", "address": None}) == "SELECTING"
    assert (
        kinds["dhcpv6-client"].key_facts(
            {"state": "BOUND", "prefixes": [{"prefix": "2001:db8::/60"}]}
        )
        == "2001:db8::/60"
    )
    hc = {"protocol": "tcp", "target": "198.51.100.1", "port": 443, "lastLatencyMs": 12.5}
    assert kinds["healthcheck"].key_facts(hc) == "tcp 198.51.100.1:443 12.5 ms"
    # A stale resource is shown with empty observed: no "None None".
    for kind in ("healthcheck", "dhcpv4-client", "dhcpv6-client"):
        assert kinds[kind].key_facts({}) == "", kind
