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
    assert lines[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "KINDS", "HOOKS", "ERROR"]
    assert lines[1].split() == [
        "healthcheck",
        "routerd-plugin-healthcheck",
        "0.1.0",
        "healthcheck",
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
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "hello" not in result.stdout
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
