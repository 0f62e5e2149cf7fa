"""routerctl against real healthcheck daemons (in-process through CliRunner)."""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import socket
import time
from typing import Any

from click.testing import Result
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
import yaml

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
AGE = re.compile(r"^\d+(s|m\d*s?|h\d*m?|d\d*h?)$")


def table(result: Result) -> list[list[str]]:
    assert result.exit_code == 0, (result.output, result.exception)
    return [re.split(r"\s{2,}", line.strip()) for line in result.stdout.splitlines() if line]


# -- daemons ---------------------------------------------------------------------
def test_daemons_table_lists_the_daemon_with_its_phase(hc: DaemonProcess, ctl: Any) -> None:
    rows = table(ctl("daemons"))
    assert rows[0] == ["KIND", "RESOURCE", "PHASE", "SINCE", "DAEMON", "PID"]
    assert len(rows) == 2
    kind, name, phase, since, daemon_phase, pid = rows[1]
    assert (kind, name, phase, daemon_phase, pid) == (
        "healthcheck",
        "lo",
        "Healthy",
        "Running",
        str(hc.pid),
    )
    assert AGE.match(since), since


def test_daemons_json_and_unreachable_sockets(
    hc: DaemonProcess, ctl: Any, helpers: Any, routerd_daemon: DaemonFactory
) -> None:
    run = routerd_daemon.runtime_dir
    (run / "dhcpv4-client").mkdir()
    helpers.stale_socket(str(run / "dhcpv4-client" / "wan.sock"))
    helpers.stale_socket(str(run / "routerd.sock"))  # routerd's own: not a daemon
    (run / "dhcpv4-client" / "notes.txt").write_text("not a socket")
    # options after the subcommand work as well as before it
    result = ctl("daemons", "-o", "json", "--runtime-dir", str(run))
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [(r["daemonKind"], r["resource"]) for r in records] == [
        ("dhcpv4-client", "wan"),
        ("healthcheck", "lo"),
    ]
    stale, good = records
    assert stale["phase"] == "Unreachable"
    assert "connection refused" in stale["error"]
    assert stale["pid"] is None
    assert good["phase"] == "Healthy"
    assert good["daemonPhase"] == "Running"
    assert good["pid"] == hc.pid
    assert good["error"] is None
    assert RFC3339.match(good["since"])
    assert good["since"] == hc.resource_status()["since"]

    rows = table(ctl("daemons"))
    assert rows[0][-1] == "ERROR"
    assert rows[1][:3] == ["dhcpv4-client", "wan", "Unreachable"]
    assert "connection refused" in rows[1][-1]
    assert rows[2][:3] == ["healthcheck", "lo", "Healthy"]


def test_daemons_asks_sockets_in_parallel_with_a_timeout(
    ctl: Any, runtime_dir: str, helpers: Any, silent_sockets: list[socket.socket]
) -> None:
    os.mkdir(os.path.join(runtime_dir, "slow"))
    for i in range(4):
        helpers.listen_silently(os.path.join(runtime_dir, "slow", f"r{i}.sock"), silent_sockets)
    started = time.monotonic()
    result = ctl("daemons", "--timeout", "700ms", "-o", "json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == 4
    assert {r["phase"] for r in records} == {"Unreachable"}
    assert all("no answer within 0.7 s" in r["error"] for r in records)
    # one after the other would take 4 x 0.7 s
    assert elapsed < 2.0, elapsed


def test_daemons_with_no_sockets(ctl: Any, tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing-here")
    result = ctl("daemons", "--runtime-dir", missing)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No daemon sockets under" in result.stderr
    result = ctl("daemons", "--runtime-dir", missing, "-o", "json")
    assert json.loads(result.stdout) == []


# -- status ----------------------------------------------------------------------
def test_status_table_shows_phase_conditions_observed_daemon(
    hc: DaemonProcess, ctl: Any, tcp_listener: int
) -> None:
    result = ctl("status", "healthcheck/lo")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert re.search(r"^Resource: +HealthCheck/lo \(net.routerd.net/v1alpha1\)$", text, re.M)
    assert re.search(r"^Phase: +Healthy$", text, re.M)
    assert re.search(r"^Since: +\d{4}-\d\d-\d\dT[\d:.]+Z \(\d+\w* ago\)$", text, re.M)
    assert re.search(r"^  TYPE +STATUS +REASON +LAST TRANSITION +MESSAGE$", text, re.M)
    assert re.search(
        rf"^  TargetReachable +True +SuccessThresholdMet +\S+ \(\S+ ago\) +tcp connect 127.0.0.1:{tcp_listener}",
        text,
        re.M,
    )
    assert re.search(r"^  verdict: +Healthy$", text, re.M)
    assert re.search(rf"^  port: +{tcp_listener}$", text, re.M)
    assert re.search(r"^  sourceInterface: +null$", text, re.M)
    # nested values on one line, as compact JSON
    history = re.search(r"^  history: +(.*)$", text, re.M)
    assert history is not None and history.group(1).startswith('[{"time": ')
    assert re.search(r'^  lastResult: +\{"time": ', text, re.M)
    assert re.search(rf"^PID: +{hc.pid}$", text, re.M)
    assert re.search(r"^State: +Running$", text, re.M)
    assert re.search(r"^Commands: +reload, renew, stop$", text, re.M)
    assert re.search(rf"^Socket: +{re.escape(str(hc.socket_path))}$", text, re.M)


def test_status_json_and_yaml(hc: DaemonProcess, ctl: Any) -> None:
    data = json.loads(ctl("status", "healthcheck/lo", "-o", "json").stdout)
    assert data["kind"] == "DaemonStatus"
    assert data["daemon"]["pid"] == hc.pid
    assert data["resources"][0]["phase"] == "Healthy"
    doc = yaml.safe_load(ctl("status", "healthcheck/lo", "-o", "yaml").stdout)
    assert doc["resources"][0]["resource"]["name"] == "lo"
    assert {c["type"] for c in doc["resources"][0]["conditions"]} >= {"TargetReachable"}
    assert isinstance(doc["resources"][0]["observed"]["history"], list)


def test_status_by_socket_path(hc: DaemonProcess, ctl: Any) -> None:
    result = ctl("status", str(hc.socket_path), "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["daemon"]["name"] == "healthcheck-lo"


# -- events ----------------------------------------------------------------------
def test_events_table_columns(hc: DaemonProcess, ctl: Any) -> None:
    rows = table(ctl("events", "healthcheck/lo"))
    assert rows[0] == ["CURSOR", "TIME", "TOPIC", "SEVERITY", "REASON", "MESSAGE"]
    first = rows[1]
    assert first[0] == "1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first[1])
    assert first[2:5] == ["routerd.daemon.lifecycle.started", "info", "Started"]
    assert f"(pid {hc.pid})" in first[5]
    cursors = [int(r[0]) for r in rows[1:]]
    assert cursors == sorted(cursors)
    assert "routerd.resource.phase.changed" in [r[2] for r in rows[1:]]


def test_events_topic_globs_since_and_json(hc: DaemonProcess, ctl: Any) -> None:
    result = ctl("events", "healthcheck/lo", "--topic", "routerd.daemon.lifecycle.*", "-o", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    topics = [e["topic"] for e in body["events"]]
    assert topics[:2] == ["routerd.daemon.lifecycle.started", "routerd.daemon.lifecycle.ready"]
    assert all(t.startswith("routerd.daemon.lifecycle.") for t in topics)
    assert body["more"] is False

    # repeated --topic is OR; '**' spans segments
    result = ctl(
        "events",
        "healthcheck/lo",
        "--topic",
        "routerd.healthcheck.state.*",
        "--topic",
        "routerd.resource.**",
        "-o",
        "json",
    )
    found = {e["topic"] for e in json.loads(result.stdout)["events"]}
    assert found == {"routerd.healthcheck.state.healthy", "routerd.resource.phase.changed"}

    ready = int(body["events"][1]["cursor"])
    result = ctl("events", "healthcheck/lo", "--since", str(ready), "-o", "json")
    later = json.loads(result.stdout)["events"]
    assert later
    assert all(int(e["cursor"]) > ready for e in later)
    assert "routerd.daemon.lifecycle.ready" not in [e["topic"] for e in later]

    doc = yaml.safe_load(ctl("events", "healthcheck/lo", "--limit", "1", "-o", "yaml").stdout)
    assert [e["cursor"] for e in doc["events"]] == ["1"]
    assert doc["more"] is True


def test_events_limit_notes_more(hc: DaemonProcess, ctl: Any) -> None:
    result = ctl("events", "healthcheck/lo", "--limit", "2")
    rows = table(result)
    assert [r[0] for r in rows[1:]] == ["1", "2"]
    assert "more events follow; continue with --since 2" in result.stderr


def test_events_tail_prints_the_head_cursor(hc: DaemonProcess, ctl: Any) -> None:
    before = hc.head()
    result = ctl("events", "healthcheck/lo", "--tail")
    assert result.exit_code == 0
    assert int(result.stdout.strip()) >= before


def test_events_reset_cursor_warns_and_continues(hc: DaemonProcess, ctl: Any) -> None:
    result = ctl("events", "healthcheck/lo", "--since", "999999", "-o", "json")
    assert result.exit_code == 0, result.output
    assert "warning: cursor 999999 is not in the daemon's event log" in result.stderr
    body = json.loads(result.stdout)
    assert body["reset"] is True
    assert body["events"][0]["topic"] == "routerd.daemon.lifecycle.started"


def test_events_bad_topic_is_the_daemons_400(hc: DaemonProcess, ctl: Any, helpers: Any) -> None:
    result = ctl("events", "healthcheck/lo", "--topic", "Bad..Topic")
    helpers.assert_one_error_line(result, "healthcheck/lo:", "topic", "(HTTP 400)")


def test_events_bad_arguments_are_usage_errors(ctl: Any) -> None:
    result = ctl("events", "healthcheck/lo", "--since", "abc")
    assert result.exit_code == 2
    assert "is not a cursor" in result.stderr
    result = ctl("events", "healthcheck/lo", "--limit", "0")
    assert result.exit_code == 2


# -- commands --------------------------------------------------------------------
def test_renew_prints_the_probe_result(hc: DaemonProcess, ctl: Any, tcp_listener: int) -> None:
    result = ctl("renew", "healthcheck/lo")
    assert result.exit_code == 0, result.output
    assert re.match(
        rf"^probe ok: tcp connect 127.0.0.1:{tcp_listener} in [\d.]+ ms\n$", result.stdout
    )

    result = ctl("renew", "healthcheck/lo", "-o", "json")
    data = json.loads(result.stdout)
    assert data["kind"] == "CommandResult"
    assert data["command"] == "renew"
    assert data["accepted"] is True
    assert data["result"]["probe"]["ok"] is True
    assert data["result"]["phase"] == "Healthy"


def test_reload_with_args(hc: DaemonProcess, ctl: Any) -> None:
    since = hc.head()
    result = ctl("reload", "healthcheck/lo", "--arg", "reason=test", "--arg", "dry:=false")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    event = hc.wait_for_event("routerd.daemon.command.executed", since=since)
    assert event["attributes"]["command"] == "reload"


def test_bad_arg_is_a_usage_error(ctl: Any) -> None:
    for bad in ("novalue", "=x", "n:={bad json"):
        result = ctl("reload", "healthcheck/lo", "--arg", bad)
        assert result.exit_code == 2, bad
        assert "--arg" in result.stderr


def test_unknown_plugin_command_is_one_error_line(
    hc: DaemonProcess, ctl: Any, helpers: Any
) -> None:
    result = ctl("command", "healthcheck/lo", "release")
    helpers.assert_one_error_line(result, "Unknown command", "no command 'release'", "(HTTP 404)")
    assert ctl("command", "healthcheck/lo", "../status").exit_code == 2


def test_stop_makes_the_socket_go_away(hc: DaemonProcess, ctl: Any, helpers: Any) -> None:
    result = ctl("stop", "healthcheck/lo")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    # routerctl stop waits until the daemon has gone
    assert not hc.socket_path.exists()
    assert hc.wait_exit(10) == 0
    helpers.assert_one_error_line(ctl("status", "healthcheck/lo"), "no socket at")


# -- errors ----------------------------------------------------------------------
def test_missing_socket_is_one_line(ctl: Any, runtime_dir: str, helpers: Any) -> None:
    line = helpers.assert_one_error_line(ctl("status", "healthcheck/nope"), "no socket at")
    assert os.path.join(runtime_dir, "healthcheck", "nope.sock") in line
    helpers.assert_one_error_line(ctl("events", "healthcheck/nope"), "no socket at")
    helpers.assert_one_error_line(ctl("renew", "healthcheck/nope"), "no socket at")


def test_regular_file_and_stale_socket(ctl: Any, tmp_path: Path, helpers: Any) -> None:
    regular = tmp_path / "file.sock"
    regular.write_text("")
    helpers.assert_one_error_line(ctl("status", str(regular)), "is not a socket")
    stale = tmp_path / "stale.sock"
    helpers.stale_socket(str(stale))
    helpers.assert_one_error_line(ctl("status", str(stale)), "connection refused")


def test_timeout_is_one_line(
    ctl: Any, tmp_path: Path, helpers: Any, silent_sockets: list[socket.socket]
) -> None:
    path = str(tmp_path / "silent.sock")
    helpers.listen_silently(path, silent_sockets)
    result = ctl("--timeout", "300ms", "status", path)
    helpers.assert_one_error_line(result, "no answer within 0.3 s")


def test_malformed_target_is_a_usage_error(ctl: Any) -> None:
    for bad in ("healthcheck", "a/b/c", "healthcheck/../x", "/lo"):
        for command, shown in (
            ("status", "'[TARGET]'"),
            ("renew", "'TARGET'"),
        ):  # optional / required
            result = ctl(command, bad)
            assert result.exit_code == 2, (command, bad)
            assert f"Invalid value for {shown}" in result.stderr
    assert ctl("--timeout", "soon", "daemons").exit_code == 2
