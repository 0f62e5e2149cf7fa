"""Run a routerd daemon as a real process for a test, and end it by PID.

Waiting is done on states (healthz answering, a phase reached, an event
emitted) through the daemon's own API, with deadlines, never bare sleeps.

A daemon is started either as ``routerd daemon`` (``launch="exec"``, the
standalone path) or forked from a fork server (``launch="fork"``, what
``routerd serve`` does). ``ROUTERD_TEST_DAEMONS=fork`` makes fork the
default of every test that does not choose; fork servers are shared by the
tests of a session (one per network namespace and environment).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
from dataclasses import field
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING
from typing import Any

import yaml

from routerd.client import Response
from routerd.client import UnixClient
from routerd.errors import ClientError

if TYPE_CHECKING:
    from routerd.serve.forkserver import ForkedProcess
    from routerd.serve.forkserver import ForkServerClient

ConfigLike = str | dict[str, Any] | Path
LAUNCHES = ("exec", "fork")


def default_launch() -> str:
    """``ROUTERD_TEST_DAEMONS`` (``exec`` or ``fork``), else ``exec``."""
    value = os.environ.get("ROUTERD_TEST_DAEMONS", "exec")
    if value not in LAUNCHES:
        raise ValueError(f"ROUTERD_TEST_DAEMONS must be one of {LAUNCHES}, not {value!r}")
    return value


class ForkServers:
    """Fork servers for tests, one per (network namespace, environment), closed at the end."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str | None, tuple[tuple[str, str], ...]], ForkServerClient] = {}

    def get(self, netns: str | None, env: dict[str, str]) -> ForkServerClient:
        from routerd.serve.forkserver import ForkServerClient

        key = (netns, tuple(sorted(env.items())))
        client = self._servers.get(key)
        if client is None:
            argv = [sys.executable, "-m", "routerd"]
            if netns:
                argv = ["ip", "netns", "exec", netns, *argv]
            client = ForkServerClient("info", argv=argv, env={**os.environ, **env})
            client.start()
            self._servers[key] = client
        return client

    def close(self, netns: str | None = None) -> None:
        """Stop the fork servers (of ``netns`` only, when given: its namespace is going away)."""
        for key in [k for k in self._servers if netns is None or k[0] == netns]:
            self._servers.pop(key).close()


def router_config(*resources: dict[str, Any], name: str = "test") -> dict[str, Any]:
    """A Router document holding ``resources``."""
    return {
        "apiVersion": "routerd.net/v1alpha1",
        "kind": "Router",
        "metadata": {"name": name},
        "spec": {"resources": list(resources)},
    }


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "net.routerd.net/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def write_config(path: Path, config: ConfigLike) -> Path:
    if isinstance(config, Path):
        return config
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    path.write_text(text)
    return path


def poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Return the first truthy ``condition()`` before ``timeout``; else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def pids_holding(directory: Path) -> list[int]:
    """PIDs with a file open below ``directory``.

    A daemon keeps its event log open in its state directory, however it was
    started: this finds forked daemons (named ``routerd: <kind> <name>``,
    with no paths in their command line) as well as exec'd ones.
    """
    prefix = str(directory) + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            targets = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue  # gone, or not ours to read
        if any(t.startswith(prefix) for t in targets):
            found.append(int(entry.name))
    return found


def stop_process(
    proc: subprocess.Popen[bytes] | ForkedProcess | None,
    timeout: float,
    what: str,
    log_tail: Callable[[], str],
) -> int:
    """SIGTERM ``proc`` and wait; SIGKILL it and fail naming ``what`` if it does not stop."""
    if proc is None:
        return 0
    code = proc.poll()
    if code is not None:
        return code
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"{what} did not stop within {timeout:g} s:\n{log_tail()}") from None


@dataclass
class DaemonProcess:
    """One ``routerd daemon`` process under test."""

    daemon_kind: str
    resource: str
    config_path: Path
    runtime_dir: Path
    state_dir: Path
    log_path: Path
    netns: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    launch: str = "exec"
    forks: ForkServers | None = None
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    starts: int = 0

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / self.daemon_kind / f"{self.resource}.sock"

    @property
    def resource_state_dir(self) -> Path:
        return self.state_dir / self.daemon_kind / self.resource

    @property
    def pid(self) -> int:
        assert self.proc is not None, "daemon not started"
        return self.proc.pid

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "routerd",
            "daemon",
            self.daemon_kind,
            "--config",
            str(self.config_path),
            "--resource",
            self.resource,
            "--runtime-dir",
            str(self.runtime_dir),
            "--state-dir",
            str(self.state_dir),
            *self.extra_args,
        ]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return argv

    def start(self, wait: bool = True, timeout: float = 15.0) -> DaemonProcess:
        env = dict(os.environ)
        env.update(self.env)
        self.starts += 1
        log = self.log_path.open("ab")
        how = "forked" if self.launch == "fork" else ""
        log.write(f"--- start #{self.starts}: {how} {' '.join(self.argv())}\n".encode())
        log.flush()
        try:
            if self.launch == "fork":
                self.proc = self._fork(log)
            else:
                self.proc = subprocess.Popen(
                    self.argv(), stdout=log, stderr=subprocess.STDOUT, env=env
                )
        finally:
            log.close()
        if wait:
            self.wait_healthy(timeout)
        return self

    def _fork(self, log: Any) -> ForkedProcess:
        """Ask the fork server (of this namespace and environment) for the daemon."""
        if self.extra_args:
            raise ValueError("a forked daemon takes no extra arguments; use launch='exec'")
        if self.forks is None:
            raise ValueError("launch='fork' needs the factory's fork servers")
        client = self.forks.get(self.netns, self.env)
        return client.spawn(
            self.daemon_kind,
            self.resource,
            self.config_path,
            self.runtime_dir,
            self.state_dir,
            log_file=log,
        )

    def client(self, timeout: float = 10.0) -> UnixClient:
        return UnixClient(str(self.socket_path), timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout: float = 15.0) -> None:
        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.proc.returncode} before answering:\n{self.log_tail()}"
                )
            try:
                return self.client(1.0).get("/v1/healthz").status == 200
            except ClientError:
                return False

        poll(healthy, timeout, f"{self.daemon_kind}/{self.resource} healthz")

    def get(self, path: str, **query: Any) -> Response:
        return self.client().get(path, **query)

    def status(self) -> dict[str, Any]:
        resp = self.get("/v1/status")
        assert resp.status == 200, resp.error_text()
        data: dict[str, Any] = resp.json()
        return data

    def resource_status(self) -> dict[str, Any]:
        res: dict[str, Any] = self.status()["resources"][0]
        return res

    def wait_for_long_polls(self, count: int, timeout: float = 10.0) -> None:
        """Wait until exactly ``count`` long-polls are parked in the daemon."""
        poll(
            lambda: self.status()["runtime"]["longPolls"]["active"] == count,
            timeout,
            f"{count} parked long-polls",
        )

    def command(
        self, name: str, body: dict[str, Any] | None = None, timeout: float = 35.0
    ) -> Response:
        return self.client(timeout).post(f"/v1/commands/{name}", body)

    def events(self, **query: Any) -> dict[str, Any]:
        resp = self.get("/v1/events", **query)
        assert resp.status == 200, resp.error_text()
        data: dict[str, Any] = resp.json()
        return data

    def head(self) -> int:
        return int(self.events(tail="true")["cursor"])

    def wait_for_event(
        self, topic: str, since: int | None = None, timeout: float = 15.0
    ) -> dict[str, Any]:
        """Long-poll until an event matching ``topic`` appears after ``since``."""
        deadline = time.monotonic() + timeout
        cursor = since
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {topic} event within {timeout:g} s:\n{self.log_tail()}")
            query: dict[str, Any] = {"topic": topic, "wait": f"{min(remaining, 5.0):.3f}"}
            if cursor is not None:
                query["since"] = cursor
            resp = self.client(timeout=remaining + 5).get("/v1/events", **query)
            assert resp.status == 200, resp.error_text()
            body = resp.json()
            if body["events"]:
                event: dict[str, Any] = body["events"][0]
                return event
            cursor = int(body["cursor"])

    def wait_for_phase(self, phase: str | tuple[str, ...], timeout: float = 15.0) -> dict[str, Any]:
        """Wait (on phase-change events) until the resource's phase is ``phase``."""
        wanted = (phase,) if isinstance(phase, str) else phase
        deadline = time.monotonic() + timeout
        cursor = self.head()
        while True:
            res = self.resource_status()
            if res["phase"] in wanted:
                return res
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"phase {res['phase']} is not {'/'.join(wanted)} after {timeout:g} s: "
                    f"{res['conditions']}\n{self.log_tail()}"
                )
            body = (
                self.client(timeout=remaining + 5)
                .get(
                    "/v1/events",
                    since=cursor,
                    topic="routerd.resource.phase.changed",
                    wait=f"{min(remaining, 5.0):.3f}",
                )
                .json()
            )
            cursor = int(body["cursor"])

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait; SIGKILL and fail if it does not stop in time."""
        return stop_process(
            self.proc, timeout, f"{self.daemon_kind}/{self.resource}", self.log_tail
        )

    def kill(self) -> None:
        """SIGKILL by PID (a crash, as far as the daemon can tell)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class DaemonFactory:
    """Creates daemons in a test's temporary dirs and ends them all afterwards."""

    def __init__(
        self, base: Path, env: dict[str, str] | None = None, forks: ForkServers | None = None
    ) -> None:
        self.base = base
        self.env = env or {}
        self.forks = forks
        self.daemons: list[DaemonProcess] = []
        self.runtime_dir = base / "run"
        self.state_dir = base / "state"

    def __call__(
        self,
        daemon_kind: str,
        config: ConfigLike,
        resource: str,
        *,
        netns: str | None = None,
        env: dict[str, str] | None = None,
        start: bool = True,
        extra_args: tuple[str, ...] = (),
        launch: str | None = None,
    ) -> DaemonProcess:
        """``launch``: ``exec`` or ``fork`` (default: :func:`default_launch`)."""
        index = len(self.daemons)
        config_path = write_config(self.base / f"router-{index}.yaml", config)
        daemon = DaemonProcess(
            daemon_kind=daemon_kind,
            resource=resource,
            config_path=config_path,
            runtime_dir=self.runtime_dir,
            state_dir=self.state_dir,
            log_path=self.base / f"daemon-{index}-{daemon_kind}-{resource}.log",
            netns=netns,
            env={**self.env, **(env or {})},
            extra_args=extra_args,
            launch=launch or default_launch(),
            forks=self.forks,
        )
        self.daemons.append(daemon)
        if start:
            daemon.start()
        return daemon

    def close(self) -> list[str]:
        """Stop every daemon; returns the failures (a daemon that did not stop)."""
        failures = []
        for daemon in self.daemons:
            try:
                daemon.stop()
            except AssertionError as exc:
                failures.append(str(exc))
        if self.forks is not None:
            # A test's namespace goes away with the test: so does its fork server.
            for netns in {d.netns for d in self.daemons if d.launch == "fork" and d.netns}:
                self.forks.close(netns)
        return failures


@contextlib.contextmanager
def daemon_factory(
    base: Path, env: dict[str, str] | None = None, forks: ForkServers | None = None
) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(base, env, forks)
    try:
        yield factory
    finally:
        failures = factory.close()
        if failures:
            raise AssertionError("\n".join(failures))
