"""Safe plugin loading against a second (hostile or broken) plugin: docs/plugin-hooks.md.

Each case installs real distributions (a ``.dist-info`` with METADATA and
``entry_points.txt`` next to the module, which is what pip leaves behind) in
a directory on ``sys.path``, and runs the real commands on them in a
subprocess where a process-level failure (``SystemExit``) would show.
The wheel-installed variant (a fresh venv) is in tests/test_packaging.py.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import importlib
import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from routerd.config import load_config
from routerd.errors import ConfigError
from routerd.plugins import load_plugins

Dist = Callable[..., None]

IMPOSTOR = """
    from routerd import hookimpl, DaemonKind
    from routerd.config import SpecModel
    from routerd.daemon.engine import DaemonEngine

    class Spec(SpecModel):
        protocol: str = "tcp"
        target: str = ""
        port: int = 0

    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="{daemon_kind}", kind="HealthCheck", spec_model=Spec,
                            factory=lambda ctx: DaemonEngine()))
"""
CONFIG = """\
apiVersion: routerd.net/v1alpha1
kind: Router
metadata: {name: t}
spec:
  resources:
    - apiVersion: net.routerd.net/v1alpha1
      kind: HealthCheck
      metadata: {name: a}
      spec: {protocol: tcp, target: 127.0.0.1, port: 80}
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Dist]]:
    """A site directory on sys.path and ``install(dist, entry_points, modules)``."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    added: list[str] = []

    def install(
        dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0"
    ) -> None:
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            added.append(module)
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[routerd]\n{lines}")
        importlib.invalidate_caches()

    yield root, install
    for module in added:
        sys.modules.pop(module, None)


def run(
    site_dir: Path, *argv: str, plugins: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site_dir), os.environ.get("PYTHONPATH")])),
        "ROUTERD_PLUGINS": plugins,
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=env, timeout=60
    )


def routerctl_list(site_dir: Path, plugins: str) -> tuple[int, list[dict[str, object]], str]:
    proc = run(site_dir, "-m", "routerctl", "plugins", "list", "-o", "json", plugins=plugins)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


# -- a kind claimed twice -----------------------------------------------------------
@pytest.mark.parametrize("impostor_name", ["aaa-hc", "zzz-hc"])
def test_a_kind_claimed_twice_is_nobodys_whatever_the_order(
    site: tuple[Path, Dist], tmp_path: Path, impostor_name: str
) -> None:
    """Before: the first entry point in alphabetical order won HealthCheck."""
    _, install = site
    module = impostor_name.replace("-", "_")
    install(
        "evil-healthcheck",
        {impostor_name: module},
        {module: IMPOSTOR.format(daemon_kind="healthcheck")},
    )
    plugins = load_plugins(allow={"healthcheck", impostor_name})
    records = {r.name: r for r in plugins.records}
    for name in ("healthcheck", impostor_name):
        error = records[name].error
        assert error is not None
        assert "evil-healthcheck 1.0" in error and "routerd-plugin-healthcheck" in error
    assert "healthcheck" not in plugins.kinds
    assert plugins.kind_for_resource_kind("HealthCheck") is None
    assert records["healthcheck"].daemon_kinds == []
    config = tmp_path / "r.yaml"
    config.write_text(CONFIG)
    with pytest.raises(ConfigError) as info:
        load_config(config, plugins)
    (problem,) = info.value.problems
    assert problem.resource == "HealthCheck/a" and problem.field == "kind"
    assert "evil-healthcheck" in problem.problem and "routerd-plugin-healthcheck" in problem.problem


def test_a_resource_kind_under_another_daemon_kind_name_conflicts_too(
    site: tuple[Path, Dist],
) -> None:
    _, install = site
    install("evil-hc", {"evil": "evil_hc"}, {"evil_hc": IMPOSTOR.format(daemon_kind="evil-hc")})
    plugins = load_plugins(allow={"healthcheck", "evil"})
    assert plugins.kinds == {}
    assert "resource kind 'HealthCheck'" in (plugins.conflict("HealthCheck") or "")
    assert plugins.conflict("healthcheck") == plugins.conflict("evil-hc")


def test_validate_serve_and_daemon_refuse_a_conflicted_kind(
    site: tuple[Path, Dist], tmp_path: Path
) -> None:
    root, install = site
    install("evil-hc", {"evil": "evil_hc"}, {"evil_hc": IMPOSTOR.format(daemon_kind="healthcheck")})
    config = tmp_path / "r.yaml"
    config.write_text(CONFIG)
    proc = run(root, "-m", "routerd", "validate", "-f", str(config), plugins="healthcheck,evil")
    assert proc.returncode == 1, proc.stdout
    assert "error: HealthCheck/a: kind: resource kind 'HealthCheck' is registered by" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run(
        root,
        "-m",
        "routerd",
        "daemon",
        "healthcheck",
        "--config",
        str(config),
        "--resource",
        "a",
        "--runtime-dir",
        str(tmp_path / "run"),
        "--state-dir",
        str(tmp_path / "state"),
        plugins="healthcheck,evil",
    )
    assert proc.returncode == 1
    assert "registered by evil-hc 1.0 (healthcheck) and routerd-plugin-healthcheck" in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before any socket
    proc = run(
        root,
        "-m",
        "routerd",
        "serve",
        "--config",
        str(config),
        "--runtime-dir",
        str(tmp_path / "run"),
        "--state-dir",
        str(tmp_path / "state"),
        plugins="healthcheck,evil",
    )
    assert proc.returncode == 1
    assert "HealthCheck/a: kind: resource kind 'HealthCheck' is registered by" in proc.stderr


# -- a shadowed entry-point name -------------------------------------------------------
def test_a_shadowed_entry_point_name_shows_both_rows(site: tuple[Path, Dist]) -> None:
    """Before: one row, pointing at whichever loaded; the other had no record at all."""
    root, install = site
    install(
        "evil-shadow",
        {"healthcheck": "evil_shadow"},
        {"evil_shadow": IMPOSTOR.format(daemon_kind="healthcheck")},
    )
    code, rows, _ = routerctl_list(root, "healthcheck")
    assert code == 1
    assert sorted((r["name"], r["distribution"]) for r in rows) == [
        ("healthcheck", "evil-shadow"),
        ("healthcheck", "routerd-plugin-healthcheck"),
    ]
    for row in rows:
        assert "entry point name 'healthcheck' is also provided by" in str(row["error"])
        assert row["daemonKinds"] == []
    evil = next(r for r in rows if r["distribution"] == "evil-shadow")
    assert "routerd-plugin-healthcheck 0.1.0" in str(evil["error"])
    assert "evil_shadow" not in sys.modules  # neither was imported


# -- BaseException at import -----------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("raise SystemExit(1)\n", "SystemExit: exit status 1"),
        ("import sys\nsys.exit('bye')\n", "SystemExit: exit status 'bye'"),
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
        ("import os\nraise GeneratorExit\n", "GeneratorExit"),
    ],
)
def test_base_exceptions_at_import_are_contained(
    site: tuple[Path, Dist], tmp_path: Path, source: str, shown: str
) -> None:
    """Before: SystemExit killed plugins list, validate and serve (exit 1)."""
    root, install = site
    install("quitter", {"quitter": "quitter_mod"}, {"quitter_mod": source})
    code, rows, _ = routerctl_list(root, "healthcheck,quitter")
    assert code == 1
    by_name = {r["name"]: r for r in rows}
    assert by_name["quitter"]["error"] == shown
    assert by_name["healthcheck"]["error"] is None
    assert by_name["healthcheck"]["daemonKinds"] == ["healthcheck"]
    config = tmp_path / "r.yaml"
    config.write_text(CONFIG)
    proc = run(root, "-m", "routerd", "validate", "-f", str(config), plugins="healthcheck,quitter")
    assert proc.returncode == 0, proc.stderr
    assert f"warning: plugin quitter: {shown}" in proc.stderr
    assert "ok (1 resources)" in proc.stdout


def test_system_exit_in_a_hook_is_contained(site: tuple[Path, Dist]) -> None:
    _, install = site
    install(
        "exiter",
        {"exiter": "exiter_mod"},
        {
            "exiter_mod": """
                from routerd import hookimpl
                @hookimpl
                def routerd_register_daemon_kinds(register):
                    raise SystemExit(3)
                @hookimpl
                def routerd_event_emitted(event):
                    raise SystemExit(4)
            """
        },
    )
    plugins = load_plugins(allow={"exiter", "healthcheck"})
    records = {r.name: r for r in plugins.records}
    assert records["exiter"].error == "SystemExit: exit status 3"
    assert list(plugins.kinds) == ["healthcheck"]
    from routerd.plugins import call_each

    (outcome,) = call_each(plugins.pm, "routerd_event_emitted", event=None)
    assert outcome == ("exiter", None, "SystemExit: exit status 4")


# -- hooks routerd does not have ---------------------------------------------------------
def test_a_misspelled_hook_is_an_error_of_that_plugin(site: tuple[Path, Dist]) -> None:
    """Before: accepted silently and listed as if it were a hook."""
    _, install = site
    install(
        "typo",
        {"typo": "typo_mod"},
        {
            "typo_mod": """
                from routerd import hookimpl
                @hookimpl
                def routerd_register_daemon_kind(register):
                    pass
            """
        },
    )
    install(
        "future",
        {"future": "future_mod"},
        {
            "future_mod": """
                from routerd import hookimpl
                @hookimpl(optionalhook=True)
                def routerd_hook_of_a_later_core(x):
                    pass
            """
        },
    )
    plugins = load_plugins(allow={"typo", "future", "healthcheck"})
    records = {r.name: r for r in plugins.records}
    assert records["typo"].error == (
        "unknown hook routerd_register_daemon_kind (did you mean routerd_register_daemon_kinds?)"
    )
    assert records["typo"].hooks == []  # not registered, not listed as a hook
    assert plugins.pm.get_plugin("typo") is None
    assert records["future"].error is None  # optionalhook: for hooks a later core may add
    assert records["healthcheck"].error is None


# -- tracing ---------------------------------------------------------------------------------
def test_trace_plugins_prints_every_hook_call(tmp_path: Path) -> None:
    """Before: ROUTERD_TRACE_PLUGINS=1 printed nothing (hooks bypassed pluggy's tracing)."""
    config = tmp_path / "r.yaml"
    config.write_text(CONFIG)
    proc = run(
        tmp_path,
        "-m",
        "routerd",
        "validate",
        "-f",
        str(config),
        plugins="healthcheck",
        extra_env={"ROUTERD_TRACE_PLUGINS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("routerd-trace: ")]
    assert lines[0].startswith(
        "routerd-trace: routerd_register_daemon_kinds [healthcheck] (register=<function"
    )
    assert lines[1] == "routerd-trace: routerd_register_daemon_kinds [healthcheck] -> None"
    quiet = run(tmp_path, "-m", "routerd", "validate", "-f", str(config), plugins="healthcheck")
    assert "routerd-trace" not in quiet.stderr


# -- plugins list exit status ------------------------------------------------------------------
def test_plugins_list_exits_1_when_a_plugin_failed(site: tuple[Path, Dist]) -> None:
    """Before: exit 0 whatever failed."""
    root, install = site
    install("broken", {"broken": "broken_mod"}, {"broken_mod": "import no_such_module_x\n"})
    code, rows, err = routerctl_list(root, "healthcheck,broken")
    assert code == 1
    assert {r["name"] for r in rows} == {"healthcheck", "broken"}
    assert err == "routerctl: 1 plugin failed to load: broken\n"
    table = run(root, "-m", "routerctl", "plugins", "list", plugins="healthcheck,broken")
    assert table.returncode == 1
    assert "ModuleNotFoundError: No module named 'no_such_module_x'" in table.stdout
    ok = run(root, "-m", "routerctl", "plugins", "list", plugins="healthcheck")
    assert ok.returncode == 0, ok.stderr


# -- routerd daemon reads only its own resource --------------------------------------------------
def test_daemon_validates_only_its_own_resource(routerd_daemon: Any, tcp_listener: int) -> None:
    """Before: an unknown kind (or a bad resource) elsewhere in the file stopped the daemon."""
    from routerd.testing.daemon import resource
    from routerd.testing.daemon import router_config

    good = {
        "protocol": "tcp",
        "target": "127.0.0.1",
        "port": tcp_listener,
        "interval": "2s",
        "timeout": "1s",
    }
    config = router_config(
        resource("HealthCheck", "a", good),
        resource("PPPoESession", "isp", {"interface": "wan0"}),  # no plugin loaded for it
        resource("HealthCheck", "b", {"protocol": "gopher"}),  # invalid, but not ours
    )
    daemon = routerd_daemon("healthcheck", config, "a", env={"ROUTERD_PLUGINS": "healthcheck"})
    assert daemon.get("/v1/healthz").status == 200
    # A reload reads only its own resource too.
    resp = daemon.command("reload")
    assert resp.status == 200, resp.error_text()
    daemon.config_path.write_text(
        daemon.config_path.read_text().replace("interval: 2s", "interval: 3s")
    )
    assert daemon.command("reload").status == 200
    assert daemon.resource_status()["resource"]["name"] == "a"


def test_daemon_refuses_its_own_resource_when_invalid_or_absent(tmp_path: Path) -> None:
    config = tmp_path / "r.yaml"
    config.write_text(CONFIG.replace("port: 80", "port: none") + CONFIG.split("resources:\n")[1])
    base = ["-m", "routerd", "daemon", "healthcheck", "--config", str(config)]
    dirs = ["--runtime-dir", str(tmp_path / "run"), "--state-dir", str(tmp_path / "st")]
    proc = run(tmp_path, *base, "--resource", "a", *dirs, plugins="healthcheck")
    assert proc.returncode == 1
    assert "error: HealthCheck/a: spec.port:" in proc.stderr
    assert "duplicate resource name" in proc.stderr
    proc = run(tmp_path, *base, "--resource", "zz", *dirs, plugins="healthcheck")
    assert proc.returncode == 1
    assert f"error: no resource HealthCheck/zz in {config}" in proc.stderr
