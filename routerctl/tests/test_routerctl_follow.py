"""``routerctl events --follow`` as a real process: it long-polls, prints, ends cleanly."""

from __future__ import annotations

from collections.abc import Iterator
import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from routerd.testing.daemon import DaemonProcess


class Follower:
    """A ``routerctl events --follow`` subprocess whose stdout lines are read with deadlines."""

    def __init__(self, hc: DaemonProcess, *args: str) -> None:
        argv = [sys.executable, "-m", "routerctl.cli", "--runtime-dir", str(hc.runtime_dir)]
        self.proc = subprocess.Popen(
            [*argv, "events", "healthcheck/lo", "--follow", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def read_until(self, predicate: object, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"no matching line within {timeout:g} s: {self.seen}"
                ) from None
            if line is None:
                raise AssertionError(f"follower ended: {self.seen} {self.finish()}")
            self.seen.append(line)
            if callable(predicate) and predicate(line):
                return line

    def finish(self, sig: int | None = None) -> tuple[int, str]:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        if follower.proc.poll() is None:
            follower.proc.kill()
            follower.proc.wait(5)


def test_follow_json_lines_gets_an_event_emitted_after_it_started(
    hc: DaemonProcess, followers: list[Follower]
) -> None:
    head = hc.head()
    follower = Follower(
        hc, "--since", str(head), "--topic", "routerd.daemon.command.*", "-o", "json"
    )
    followers.append(follower)
    result = hc.command("renew")
    assert result.status == 200

    def executed(line: str) -> bool:
        return bool(json.loads(line)["topic"] == "routerd.daemon.command.executed")

    follower.read_until(executed)
    events = [json.loads(line) for line in follower.seen]  # every line one JSON object
    assert [e["topic"] for e in events] == [
        "routerd.daemon.command.received",
        "routerd.daemon.command.executed",
    ]
    assert all(int(e["cursor"]) > head for e in events)
    assert events[1]["message"].startswith("probe ok")

    code, stderr = follower.finish(signal.SIGINT)
    assert code == 0
    assert "Traceback" not in stderr
    assert stderr == ""


def test_follow_table_from_now_waits_for_new_events(
    hc: DaemonProcess, followers: list[Follower]
) -> None:
    follower = Follower(hc, "--tail", "--topic", "routerd.daemon.command.**")
    followers.append(follower)
    # --tail asks for the head first; once the command is received the
    # follower is long-polling from a cursor before it, so it must print it.
    # Keep issuing commands until one shows up (the first may precede the tail).
    deadline = time.monotonic() + 15
    line = ""
    while not line:
        assert time.monotonic() < deadline, follower.seen
        hc.command("renew")
        try:
            line = follower.read_until(lambda s: "routerd.daemon.command.executed" in s, 0.5)
        except AssertionError:
            line = ""
    assert follower.seen[0].split() == ["CURSOR", "TIME", "TOPIC", "SEVERITY", "REASON", "MESSAGE"]
    assert "CommandExecuted" in line
    assert "probe ok" in line

    code, stderr = follower.finish(signal.SIGTERM)
    assert code == 0
    assert "Traceback" not in stderr


def test_follow_reset_cursor_warns_once_and_keeps_going(
    hc: DaemonProcess, followers: list[Follower]
) -> None:
    follower = Follower(hc, "--since", "999999", "-o", "json")
    followers.append(follower)
    follower.read_until(lambda s: json.loads(s)["topic"] == "routerd.daemon.lifecycle.started")
    since = hc.head()
    hc.command("renew")
    follower.read_until(lambda s: json.loads(s)["topic"] == "routerd.daemon.command.executed")
    assert int(json.loads(follower.seen[-1])["cursor"]) > since
    code, stderr = follower.finish(signal.SIGINT)
    assert code == 0
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, stderr
    assert "cursor 999999 is not in the daemon's event log" in warnings[0]
    assert "Traceback" not in stderr


def test_follow_ends_with_one_line_when_the_daemon_goes(
    hc: DaemonProcess, followers: list[Follower]
) -> None:
    # start one event back so that a printed line proves the follower is connected
    follower = Follower(hc, "--since", str(hc.head() - 1), "-o", "json")
    followers.append(follower)
    follower.read_until(lambda s: True)
    hc.command("stop")
    follower.read_until(lambda s: json.loads(s)["topic"] == "routerd.daemon.lifecycle.stopping")
    code, stderr = follower.finish()
    assert code == 1
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("routerctl: "), stderr
