from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import subprocess
import sys

import pytest
from routerd.config import json_schema
from routerd.config import load_config
from routerd.config import validate_router
from routerd.errors import ConfigError
from routerd.plugins import load_plugins

GOOD = """
    from routerd import hookimpl, DaemonKind
    from routerd.config import SpecModel, Duration
    from routerd.daemon.engine import DaemonEngine

    class WidgetSpec(SpecModel):
        interface: str
        interval: Duration = 10
        route_metric: int = 100

    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="widget", kind="Widget", spec_model=WidgetSpec,
                            factory=lambda ctx: DaemonEngine(), commands={"poke": "poke it"}))

    @hookimpl
    def routerd_event_emitted(event):
        pass
"""
BROKEN = "import no_such_module_anywhere\n"
DUPLICATE = """
    from routerd import hookimpl, DaemonKind
    from routerd.config import SpecModel
    from routerd.daemon.engine import DaemonEngine

    class S(SpecModel):
        pass

    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="widget", kind="Gadget", spec_model=S, factory=lambda ctx: DaemonEngine()))
"""

Install = Callable[[str, str, str], None]


def test_broken_plugin_is_recorded_and_others_load(fake_plugins: Install) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    fake_plugins("routerd-plugin-broken", "rdbroken", BROKEN)
    plugins = load_plugins(allow={"rdwidget", "rdbroken"})
    records = {r.name: r for r in plugins.records}
    assert records["rdbroken"].error is not None
    assert "no_such_module_anywhere" in records["rdbroken"].error
    widget = records["rdwidget"]
    assert widget.error is None
    assert widget.distribution == "routerd-plugin-widget" and widget.version == "9.9.9"
    assert widget.daemon_kinds == ["widget"]
    assert widget.hooks == ["routerd_event_emitted", "routerd_register_daemon_kinds"]
    assert plugins.kinds["widget"].version == "9.9.9"
    assert plugins.kinds["widget"].all_commands() == ("reload", "renew", "stop", "poke")


def test_allow_list_restricts_loading(fake_plugins: Install) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    assert [r.name for r in load_plugins(allow=set()).records] == []
    assert [r.name for r in load_plugins(allow={"rdwidget"}).records] == ["rdwidget"]


def test_env_allow_list(fake_plugins: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    monkeypatch.setenv("ROUTERD_PLUGINS", "rdwidget")
    assert [r.name for r in load_plugins().records] == ["rdwidget"]


def test_duplicate_kind_names_both_plugins(fake_plugins: Install) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    fake_plugins("routerd-plugin-dup", "rdwidget2", DUPLICATE)
    plugins = load_plugins(allow={"rdwidget", "rdwidget2"})
    errors = [r.error for r in plugins.records if r.error]
    assert len(errors) == 2  # both: never decided by which loaded first
    for error in errors:
        assert "routerd-plugin-widget 9.9.9" in error and "routerd-plugin-dup 9.9.9" in error
    assert list(plugins.kinds) == []
    assert plugins.conflict("widget") is not None


def router(*resources: str) -> str:
    body = "".join(resources)
    return f"apiVersion: routerd.net/v1alpha1\nkind: Router\nmetadata: {{name: t}}\nspec:\n  resources:\n{body}"


def widget(name: str, spec: str) -> str:
    return (
        f"    - apiVersion: net.routerd.net/v1alpha1\n      kind: Widget\n"
        f"      metadata: {{name: {name}}}\n      spec: {spec}\n"
    )


def test_config_reports_every_problem(fake_plugins: Install, tmp_path: Path) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    plugins = load_plugins(allow={"rdwidget"})
    text = router(
        widget("a", "{interface: wan0, interval: 5m}"),
        widget("b", "{interval: soon, colour: red}"),
        widget("a", "{interface: wan1}"),
        "    - apiVersion: net.routerd.net/v1alpha1\n      kind: Nope\n      metadata: {name: x}\n",
        widget("Bad_Name", "{interface: x}"),
    )
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, plugins)
    got = {(p.resource, p.field, p.problem.split(" (")[0]) for p in info.value.problems}
    assert ("Widget/b", "spec.interface", "required field is missing") in got
    assert ("Widget/b", "spec.colour", "unknown field") in got
    assert any(r == "Widget/b" and f == "spec.interval" for r, f, _ in got)
    assert ("Widget/a", "metadata.name", "duplicate resource name for this kind") in got
    assert ("Nope/x", "kind", "unknown kind 'Nope'") in got
    assert any(f == "metadata.name" and r == "Widget/Bad_Name" for r, f, _ in got)
    assert len(info.value.problems) == 6


def test_config_good_and_durations(fake_plugins: Install) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    plugins = load_plugins(allow={"rdwidget"})
    import yaml

    cfg = validate_router(
        yaml.safe_load(router(widget("a", "{interface: wan0, interval: 500ms, routeMetric: 5}"))),
        plugins,
    )
    (res,) = cfg.resources
    assert (res.kind, res.name, res.daemon_kind) == ("Widget", "a", "widget")
    assert res.spec.interval == 0.5  # type: ignore[attr-defined]
    assert res.spec.to_wire() == {"interface": "wan0", "interval": 0.5, "routeMetric": 5}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("kind: Router\n  bad: [", "YAML syntax error at line"),
        ("- a list", "Router mapping"),
        ("apiVersion: v0\nkind: Router\nspec: {resources: []}", "apiVersion"),
        ("apiVersion: routerd.net/v1alpha1\nkind: Router\nspec: {resources: {}}", "must be a list"),
    ],
)
def test_config_structural_errors(
    fake_plugins: Install, tmp_path: Path, text: str, needle: str
) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, load_plugins(allow={"rdwidget"}))
    assert needle in str(info.value)


def test_schema_lists_kinds(fake_plugins: Install) -> None:
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    schema = json_schema(load_plugins(allow={"rdwidget"}))
    variant = schema["properties"]["spec"]["properties"]["resources"]["items"]["oneOf"][0]
    assert variant["properties"]["kind"] == {"const": "Widget"}
    assert "routeMetric" in variant["properties"]["spec"]["properties"]


def test_validate_cli_prints_all_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        router(
            "    - apiVersion: net.routerd.net/v1alpha1\n      kind: HealthCheck\n      metadata: {name: a}\n"
            "      spec: {protocol: tcp, target: 127.0.0.1}\n",
            "    - apiVersion: net.routerd.net/v1alpha1\n      kind: HealthCheck\n      metadata: {name: b}\n"
            "      spec: {protocol: gopher, target: x, interval: often}\n",
        )
    )
    env = {"ROUTERD_PLUGINS": "healthcheck", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "routerd", "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 1
    assert "HealthCheck/a" in proc.stderr and "port is required" in proc.stderr
    assert "HealthCheck/b: spec.protocol" in proc.stderr
    assert "HealthCheck/b: spec.interval" in proc.stderr
    assert "Traceback" not in proc.stderr
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        router(
            "    - apiVersion: net.routerd.net/v1alpha1\n      kind: HealthCheck\n      metadata: {name: a}\n"
            "      spec: {protocol: tcp, target: 127.0.0.1, port: 80}\n"
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "routerd", "validate", "-f", str(ok)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok (1 resources)" in proc.stdout


def test_spec_models_are_strict_for_every_plugin(fake_plugins: Install) -> None:
    """Strictness lives in SpecModel: a third-party kind gets it without asking."""
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    plugins = load_plugins(allow={"rdwidget"})
    import yaml

    bad = {
        "routeMetric: true": "a boolean",
        'routeMetric: "5"': "a string",
        "routeMetric: 5.0": "a number",
    }
    for spec, got in bad.items():
        with pytest.raises(ConfigError) as info:
            validate_router(
                yaml.safe_load(router(widget("a", f"{{interface: x, {spec}}}"))), plugins
            )
        (problem,) = info.value.problems
        assert (problem.resource, problem.field) == ("Widget/a", "spec.routeMetric")
        assert problem.problem == f"Input should be a valid integer, got {got}"
    # A float field (a duration) still takes an int.
    cfg = validate_router(
        yaml.safe_load(router(widget("a", "{interface: x, interval: 10}"))), plugins
    )
    assert cfg.resources[0].spec.interval == 10.0  # type: ignore[attr-defined]


def test_durations_are_bounded(fake_plugins: Install) -> None:
    from routerd.durations import MAX_DURATION
    from routerd.durations import parse_duration

    assert parse_duration("365d") == MAX_DURATION
    for bad in ("366d", "100000000d", 10**400, float("inf"), "1" * 40):
        with pytest.raises(ValueError):
            parse_duration(bad)
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    schema = json_schema(load_plugins(allow={"rdwidget"}))
    variant = schema["properties"]["spec"]["properties"]["resources"]["items"]["oneOf"][0]
    number, text = variant["properties"]["spec"]["properties"]["interval"]["anyOf"]
    assert number["maximum"] == MAX_DURATION and text["maxLength"] == 32


def test_validate_router_takes_any_parsed_data(fake_plugins: Install) -> None:
    """validate_router is public: data from another loader (non-str keys) is problems, not TypeError."""
    fake_plugins("routerd-plugin-widget", "rdwidget", GOOD)
    plugins = load_plugins(allow={"rdwidget"})
    with pytest.raises(ConfigError) as info:
        validate_router({1: 2, "x": 3, None: 4, "metadata": []}, plugins)
    fields = [p.field for p in info.value.problems if p.problem == "unknown field"]
    assert fields == ["1", "None", "x"]
    assert any(p.field == "metadata" for p in info.value.problems)
