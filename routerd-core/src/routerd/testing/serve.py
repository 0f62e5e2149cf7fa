"""Run ``routerd serve`` as a real process for a test; ended by PID."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
import os
from pathlib import Path
import subprocess
import sys
from typing import Any

from routerd.client import Response
from routerd.client import UnixClient
from routerd.errors import ClientError
from routerd.testing.daemon import poll
from routerd.testing.daemon import stop_process

PREFIX = "/api/control.routerd.net/v1alpha1"


@dataclass
class ServeProcess:
    config_path: Path
    runtime_dir: Path
    state_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    netns: str | None = None
    #: False: ``--no-fork-server`` (every daemon exec'd as ``routerd daemon``).
    fork_server: bool = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "routerd.sock"

    @property
    def status_socket_path(self) -> Path:
        return self.runtime_dir / "routerd-status.sock"

    def argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "routerd",
            "serve",
            "--config",
            str(self.config_path),
            "--runtime-dir",
            str(self.runtime_dir),
            "--state-dir",
            str(self.state_dir),
            "--log-dir",
            str(self.log_path.parent / "daemons"),
        ]
        if not self.fork_server:
            argv.append("--no-fork-server")
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def start(self, wait: bool = True, timeout: float = 20.0) -> ServeProcess:
        env = {**os.environ, **self.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_up(self, timeout: float = 20.0) -> None:
        """Wait until the control API answers (daemons may still be starting)."""

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"routerd serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                return self.get("status").status == 200
            except ClientError:
                return False

        poll(up, timeout, "the routerd control socket")

    def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"routerd serve exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                resp = self.get("status")
            except ClientError:
                return None
            if resp.status != 200:
                return None
            body: dict[str, Any] = resp.json()
            return body if all(d["state"] == "Running" for d in body["daemons"]) else None

        result: dict[str, Any] = poll(ready, timeout, "routerd serve and its daemons")
        return result

    def client(self, timeout: float = 40.0, status_socket: bool = False) -> UnixClient:
        path = self.status_socket_path if status_socket else self.socket_path
        return UnixClient(str(path), timeout=timeout)

    def get(self, path: str, **query: Any) -> Response:
        return self.client().get(f"{PREFIX}/{path}", **query)

    def post(self, path: str, body: Any = None) -> Response:
        return self.client().post(f"{PREFIX}/{path}", body)

    def status(self) -> dict[str, Any]:
        resp = self.get("status")
        assert resp.status == 200, resp.error_text()
        data: dict[str, Any] = resp.json()
        return data

    def daemon(self, kind: str, name: str) -> dict[str, Any]:
        for d in self.status()["daemons"]:
            if d["resource"] == {"kind": kind, "name": name}:
                found: dict[str, Any] = d
                return found
        raise AssertionError(f"no daemon for {kind}/{name}")

    def events(self, **query: Any) -> dict[str, Any]:
        resp = self.get("events", **query)
        assert resp.status == 200, resp.error_text()
        data: dict[str, Any] = resp.json()
        return data

    def wait_for_phase(
        self, kind: str, name: str, phase: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            resp = self.get(f"resources/{kind}/{name}")
            body: dict[str, Any] = resp.json()
            return body if resp.status == 200 and body["phase"] == phase else None

        result: dict[str, Any] = poll(
            reached, timeout, f"{kind}/{name} in phase {phase}", interval=0.1
        )
        return result

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; SIGKILL and fail if it does not stop in time."""
        return stop_process(self.proc, timeout, "routerd serve", self.log_tail)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
