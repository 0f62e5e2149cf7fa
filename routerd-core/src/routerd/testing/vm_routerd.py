"""A routerd daemon run inside the test VM (for example ``pppoe-client`` with
the ``kernel`` backend against real ``pppoe-server`` + ``pppd``), driven
through its API socket with the VM agent's ``unix_http``. Used by the PPPoE
VM tests and ``bench/bench_pppoe.py``.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import time
from typing import Any
from urllib.parse import urlencode

import yaml

from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.vm import VMProcess
from routerd.testing.vm_pppoe import VMPppoeLab

__all__ = ["VMRouterd", "wait_until"]

ENV = {"ROUTERD_PLUGINS": "pppoe"}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Return the first truthy ``predicate()`` within *timeout* s; else fail naming *what*."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class VMRouterd:
    """One ``routerd daemon <kind>`` in the lab's client namespace.

    :param lab: the VM lab.
    :param name: the resource name.
    :param spec: the resource's spec.
    :param kind: the resource kind (``PPPoESession``).
    :param daemon_kind: the daemon kind (``pppoe-client``).
    """

    def __init__(
        self,
        lab: VMPppoeLab,
        name: str,
        spec: dict[str, Any],
        *,
        kind: str = "PPPoESession",
        daemon_kind: str = "pppoe-client",
        extra_resources: tuple[dict[str, Any], ...] = (),
    ) -> None:
        self.lab = lab
        self.vm = lab.vm
        self.name = name
        self.daemon_kind = daemon_kind
        self.config_path = lab.path(f"{name}.yaml")
        self.runtime_dir = lab.path("run")
        self.state_dir = lab.path("state")
        self.log = lab.path(f"{daemon_kind}-{name}.log")
        self.socket = f"{self.runtime_dir}/{daemon_kind}/{name}.sock"
        self.state_file = f"{self.state_dir}/{daemon_kind}/{name}/state.json"
        config = router_config(resource(kind, name, spec), *extra_resources)
        self.vm.write_file(self.config_path, yaml.safe_dump(config, sort_keys=False), 0o644)
        self.process: VMProcess | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        return [
            self.vm.venv_program("routerd"),
            "daemon",
            self.daemon_kind,
            "--config",
            self.config_path,
            "--resource",
            self.name,
            "--runtime-dir",
            self.runtime_dir,
            "--state-dir",
            self.state_dir,
        ]

    def start(self, timeout: float = 60.0) -> VMRouterd:
        """Start the daemon (appending to its log) and wait until its API answers."""
        self.starts += 1
        self.process = self.vm.spawn(
            self.argv(),
            self.log,
            netns=self.lab.client_ns,
            env=ENV,
            append=self.starts > 1,
        )
        self.lab.processes.append(self.process)
        wait_until(self._healthy, timeout, f"{self.daemon_kind} {self.name}'s API")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise AssertionError(
                f"daemon exited with {self.process.returncode}: {self.log_text()[-3000:]}"
            )
        try:
            code, _ = self.vm.unix_http(self.socket, "/v1/healthz", timeout=5)
        except Exception:
            return False
        return code == 200

    def log_text(self) -> str:
        return self.vm.read_file(self.log).decode("utf-8", "replace")

    def get(self, path: str, **query: Any) -> Any:
        url = path + ("?" + urlencode(query) if query else "")
        code, body = self.vm.unix_http(self.socket, url, timeout=20)
        assert code == 200, (code, body)
        return body

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/v1/status")["resources"][0]
        return body

    def events(self, topic: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/v1/events", topic=topic, limit=1000)["events"]
        return found

    def command(self, name: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        return self.vm.unix_http(
            self.socket, f"/v1/commands/{name}", method="POST", body=body or {}, timeout=30
        )

    def wait_phase(self, phase: str, timeout: float = 60.0) -> dict[str, Any]:
        seen: list[str] = []

        def reached() -> dict[str, Any] | None:
            res = self.status()
            seen.append(str(res.get("phase")))
            return res if res.get("phase") == phase else None

        try:
            found: dict[str, Any] = wait_until(reached, timeout, f"phase {phase}")
        except AssertionError:
            raise AssertionError(
                f"no phase {phase} in {timeout} s (last {seen[-3:]}): "
                f"{json.dumps(self.status().get('observed'))[:2000]}\n{self.log_text()[-3000:]}"
            ) from None
        return found

    def wait_event(self, topic: str, timeout: float = 60.0, after: int = 0) -> dict[str, Any]:
        found: dict[str, Any] = wait_until(
            lambda: self.events(topic)[after:], timeout, f"event {topic}"
        )[0]
        return found

    def kill(self) -> None:
        """SIGKILL by PID, as a crash would."""
        assert self.process is not None
        self.process.kill()

    def stop(self) -> int | None:
        return None if self.process is None else self.process.stop(10)
