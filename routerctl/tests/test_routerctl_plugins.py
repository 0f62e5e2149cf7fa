"""``routerctl plugins list`` and plugin commands loaded lazily."""

from __future__ import annotations

from collections.abc import Iterator
import json
from typing import Any

import click
from click.testing import CliRunner
import pytest
from routerctl.cli import main
from routerd import hookimpl
import routerd.plugins


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ROUTERD_PLUGINS", "healthcheck")
    return CliRunner()


def test_plugins_list_json_includes_healthcheck(runner: CliRunner) -> None:
    result = runner.invoke(main, ["plugins", "list", "-o", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    (record,) = [r for r in records if r["distribution"] == "routerd-plugin-healthcheck"]
    assert record["name"] == "healthcheck"
    assert record["version"] == "0.1.0"
    assert record["daemonKinds"] == ["healthcheck"]
    assert "routerd_register_daemon_kinds" in record["hooks"]
    assert record["error"] is None


def test_plugins_list_table_and_hook_filter(runner: CliRunner) -> None:
    result = runner.invoke(main, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "DISTRIBUTION",
        "VERSION",
        "KINDS",
        "COMMANDS",
        "HOOKS",
        "ERROR",
    ]
    assert lines[1].split() == [
        "healthcheck",
        "routerd-plugin-healthcheck",
        "0.1.0",
        "healthcheck",
        "-",
        "routerd_register_daemon_kinds",
        "-",
    ]
    result = runner.invoke(main, ["plugins", "list", "--hook", "routerd_register_commands"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No plugin implements routerd_register_commands" in result.stderr
    result = runner.invoke(
        main, ["plugins", "list", "--hook", "routerd_register_daemon_kinds", "-o", "yaml"]
    )
    assert "name: healthcheck" in result.stdout


class HelloPlugin:
    @hookimpl
    def routerd_register_commands(self, cli: click.Group) -> None:
        @cli.command()
        @click.option("--name", default="world")
        def hello(name: str) -> None:
            """Say hello (a plugin command)."""
            click.echo(f"hello, {name}")

        @cli.command("status")
        def hijack() -> None:
            click.echo("hijacked")


class BrokenPlugin:
    @hookimpl
    def routerd_register_commands(self, cli: click.Group) -> None:
        raise RuntimeError("boom")


@pytest.fixture
def plugin_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """load_plugins with the test plugins as extras; counts calls; restores routerctl's group."""
    calls: list[int] = []
    real = routerd.plugins.load_plugins

    def fake(allow: set[str] | None = None, extra: dict[str, object] | None = None) -> Any:
        calls.append(1)
        return real(allow=set(), extra={"broken": BrokenPlugin(), "hello": HelloPlugin()})

    monkeypatch.setattr(routerd.plugins, "load_plugins", fake)
    monkeypatch.setattr(main, "commands", dict(main.commands))
    monkeypatch.setattr(main, "_plugin_commands_loaded", False)
    monkeypatch.setattr(main, "_broken_plugins", ())
    yield calls


def test_plugin_command_is_loaded_only_for_unknown_names(
    plugin_loads: list[int], tmp_path: Any
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["renew", "--help"])
    assert result.exit_code == 0
    result = runner.invoke(main, ["daemons", "--runtime-dir", str(tmp_path)])
    assert result.exit_code == 0
    assert plugin_loads == []  # routerctl's own commands never load plugins

    result = runner.invoke(main, ["hello", "--name", "router"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout == "hello, router\n"
    assert plugin_loads == [1]
    # the broken plugin is one warning line and does not stop the others
    assert "plugin broken failed to add commands: RuntimeError: boom" in result.stderr
    # a plugin cannot replace routerctl's own commands
    assert "tried to replace the command 'status'" in result.stderr
    assert main.commands["status"].callback is not None
    assert main.commands["status"].callback.__name__ == "status"

    result = runner.invoke(main, ["nosuch"])
    assert result.exit_code == 2
    assert "No such command 'nosuch'" in result.stderr
    assert plugin_loads == [1]  # loaded once per process


def test_help_lists_plugin_commands_in_their_own_section(plugin_loads: list[int]) -> None:
    """Before: plugin commands were missing from ``routerctl --help``."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    own, _, plugin_part = result.stdout.partition("Plugin commands:")
    assert "  hello  Say hello (a plugin command)." in plugin_part
    assert "hello" not in own
    assert "  status " in own and "status" not in plugin_part.split("\n\n")[0]
    assert plugin_loads == [1]


class CtxPlugin:
    """A plugin command using routerctl's context (``ctl``)."""

    @hookimpl
    def routerd_register_commands(self, cli: click.Group, ctl: Any) -> None:
        @cli.command("poke")
        @click.argument("target")
        @ctl.options
        def poke(target: str) -> None:
            """Renew TARGET through routerctl's context."""
            result = ctl.command(target, "renew")
            ctl.echo(
                {
                    "runtimeDir": ctl.runtime_dir(),
                    "timeout": ctl.timeout(7.0),
                    "message": result["message"],
                }
            )

        @cli.command("grumble")
        def grumble() -> None:
            ctl.fail("nothing to poke\nsecond line")


@pytest.fixture
def ctx_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    real = routerd.plugins.load_plugins

    def fake(allow: set[str] | None = None, extra: dict[str, object] | None = None) -> Any:
        return real(allow=set(), extra={"ctx": CtxPlugin()})

    monkeypatch.setattr(routerd.plugins, "load_plugins", fake)
    monkeypatch.setattr(main, "commands", dict(main.commands))
    monkeypatch.setattr(main, "_plugin_commands_loaded", False)


def test_plugin_commands_get_routerctls_context(
    ctx_plugin: None, hc: Any, routerd_daemon: Any
) -> None:
    """Before: a plugin command got only the click group: no runtime dir, timeout, output, client."""
    runtime = str(routerd_daemon.runtime_dir)
    target = "healthcheck/lo"
    runner = CliRunner()
    result = runner.invoke(main, ["poke", target, "--runtime-dir", runtime, "-o", "json"])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.stdout)
    assert doc["runtimeDir"] == runtime and doc["timeout"] == 7.0
    assert doc["message"]
    result = runner.invoke(main, ["--timeout", "3s", "--runtime-dir", runtime, "poke", target])
    assert result.exit_code == 0, result.output
    assert "timeout:    3.0" in result.stdout
    result = runner.invoke(main, ["poke", "healthcheck/absent", "--runtime-dir", runtime])
    assert result.exit_code == 1
    assert result.stderr.startswith("routerctl: no socket at ")
    result = runner.invoke(main, ["grumble"])
    assert (result.exit_code, result.stderr) == (1, "routerctl: nothing to poke second line\n")


def test_plugins_list_shows_each_plugins_commands(plugin_loads: list[int]) -> None:
    result = CliRunner().invoke(main, ["plugins", "list", "-o", "json"])
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["hello"]["commands"] == ["hello", "status"]
    assert rows["broken"]["commands"] == []
    assert rows["broken"]["error"] == "routerd_register_commands: RuntimeError: boom"
    assert result.exit_code == 1  # a plugin failed


def test_plugins_new_writes_a_starter_and_checks_the_name(tmp_path: Any) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["plugins", "new", "wan-monitor", "--dir", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    root = tmp_path / "p"
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "routerd-plugin-wan-monitor"' in pyproject
    assert 'wan-monitor = "routerd_wan_monitor.plugin"' in pyproject
    assert '"routerd-core>=0.1,<0.2"' in pyproject
    plugin = (root / "src" / "routerd_wan_monitor" / "plugin.py").read_text()
    assert 'kind="WanMonitor"' in plugin and 'topic_prefix="routerd.wan.monitor"' in plugin
    assert (root / "tests" / "test_routerd_wan_monitor.py").exists()
    again = runner.invoke(main, ["plugins", "new", "wan-monitor", "--dir", str(root)])
    assert again.exit_code == 1 and "exists and is not empty" in again.stderr
    for bad in ("Widget", "a", "9lives", "x_y", "daemon-thing", "w--x"):
        result = runner.invoke(main, ["plugins", "new", bad, "--dir", str(tmp_path / "bad")])
        assert result.exit_code == 2, (bad, result.output)
    assert not (tmp_path / "bad").exists()
