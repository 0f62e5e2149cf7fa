"""Fixtures for routerctl tests: a loopback TCP target and a real healthcheck daemon."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import importlib
import socket
import sys

from click.testing import CliRunner
from click.testing import Result
import pytest
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config


def _restore_routerctl_package() -> None:
    """Undo pytest's shadowing of the real ``routerctl`` package.

    The workspace runs pytest with ``--import-mode=importlib``, which names this
    file ``routerctl.tests.conftest`` and imports its parent, the distribution
    directory ``routerctl/``, as a namespace package ``routerctl`` - hiding
    ``routerctl/src/routerctl``. Put the real package back (keeping
    ``routerctl.tests`` reachable) before anything imports ``routerctl.cli``.
    """
    stub = sys.modules.get("routerctl")
    if stub is None or getattr(stub, "__file__", None) is not None:
        return
    del sys.modules["routerctl"]
    real = importlib.import_module("routerctl")
    tests = sys.modules.get("routerctl.tests")
    if tests is not None:
        real.tests = tests  # type: ignore[attr-defined]


_restore_routerctl_package()

HC_ENV = {"ROUTERD_PLUGINS": "healthcheck"}


def healthcheck_config(name: str, port: int) -> dict[str, object]:
    spec = {
        "protocol": "tcp",
        "target": "127.0.0.1",
        "port": port,
        "interval": "500ms",
        "timeout": "250ms",
    }
    return router_config(resource("HealthCheck", name, spec))


@pytest.fixture
def hc(routerd_daemon: DaemonFactory, tcp_listener: int) -> DaemonProcess:
    """A healthcheck daemon ``healthcheck/lo`` probing the loopback listener, Healthy."""
    daemon = routerd_daemon("healthcheck", healthcheck_config("lo", tcp_listener), "lo", env=HC_ENV)
    daemon.wait_for_phase("Healthy")
    return daemon


Invoke = Callable[..., Result]


@pytest.fixture
def ctl(routerd_daemon: DaemonFactory) -> Invoke:
    """Run routerctl in-process with ``--runtime-dir`` of the test's daemons."""
    from routerctl.cli import main

    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--runtime-dir", str(routerd_daemon.runtime_dir), *args])

    return invoke


@pytest.fixture
def runtime_dir(routerd_daemon: DaemonFactory) -> str:
    routerd_daemon.runtime_dir.mkdir(parents=True, exist_ok=True)
    return str(routerd_daemon.runtime_dir)


class Helpers:
    """Helpers for the test modules (conftest is not importable under importlib mode)."""

    @staticmethod
    def stale_socket(path: str) -> None:
        """A Unix socket file nobody listens on (a daemon that was killed)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.close()

    @staticmethod
    def listen_silently(path: str, held: list[socket.socket]) -> None:
        """Listen on ``path`` and never answer (connect succeeds, the request hangs)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(16)
        held.append(sock)

    @staticmethod
    def assert_one_error_line(result: Result, *fragments: str) -> str:
        """Exit 1, no traceback, exactly one ``routerctl: ...`` line on stderr."""
        assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), result.exception
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("routerctl: "), lines
        assert "Traceback" not in result.output
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])
        return lines[0]


@pytest.fixture
def helpers() -> type[Helpers]:
    return Helpers


@pytest.fixture
def silent_sockets() -> Iterator[list[socket.socket]]:
    """Holds the sockets made by ``Helpers.listen_silently``; closes them afterwards."""
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()
