"""OpenAPI 3.1 documents, served and honoured: schemathesis against a live daemon and routerd serve.

Both documents come from :mod:`routerd.openapi`; each live process serves
its own (``/v1/openapi.json``, ``.../v1alpha1/openapi.json``) and must equal
it. schemathesis then generates requests for every operation from that
document and sends them to the live process (over a loopback TCP relay to
its Unix socket): no answer may be a server error, and every answer must be
documented (status code, content type, headers) and valid against its
schema. Long-polls are shortened and ``stop`` is not sent, so the processes
stay up for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from pathlib import Path
import socket
import socketserver
import tempfile
import threading
from typing import Any

from hypothesis import HealthCheck
from hypothesis import settings
import pytest
from routerd.openapi import CONTROL_PREFIX
from routerd.openapi import control_document
from routerd.openapi import daemon_document
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import ServeProcess
import schemathesis
from schemathesis.checks import content_type_conformance
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_headers_conformance
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
HC_COMMANDS = ("reload", "renew", "stop")
DAEMON_SCHEMA = schemathesis.openapi.from_dict(daemon_document(HC_COMMANDS))
CONTROL_SCHEMA = schemathesis.openapi.from_dict(control_document())
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


class _Relay(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    target = ""


class _Pipe(socketserver.BaseRequestHandler):
    """One TCP connection relayed byte for byte to a new connection to the Unix socket."""

    def handle(self) -> None:
        assert isinstance(self.server, _Relay)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.server.target)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join(35)
        upstream.close()


@contextlib.contextmanager
def relay(unix_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` in front of a Unix socket (schemathesis speaks TCP)."""
    server = _Relay(("127.0.0.1", 0), _Pipe)
    server.target = str(unix_path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def tame(case: Any) -> None:
    """Keep the live process up and the run short: no ``stop``, long-polls of 0.05 s."""
    if case.query and "wait" in case.query:
        case.query["wait"] = "0.05"
    for key in ("name", "command"):
        if (case.path_parameters or {}).get(key) in ("stop", "start"):
            case.path_parameters[key] = "renew"


# -- the live daemon ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def daemon_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import socket as s

    listener = s.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    spec = {"protocol": "tcp", "target": "127.0.0.1", "port": listener.getsockname()[1]}
    spec |= {"interval": "2s", "timeout": "1s"}
    from routerd.testing.daemon import daemon_factory

    with tempfile.TemporaryDirectory(prefix="rdo-") as short, daemon_factory(Path(short)) as make:
        daemon = make(
            "healthcheck",
            router_config(resource("HealthCheck", "api", spec)),
            "api",
            env={"ROUTERD_PLUGINS": "healthcheck"},
        )
        with relay(daemon.socket_path) as url:
            yield url
    listener.close()


def test_the_daemon_serves_its_document(routerd_daemon: DaemonFactory, tcp_listener: int) -> None:
    """Before: no /v1/openapi.json (404)."""
    spec = {"protocol": "tcp", "target": "127.0.0.1", "port": tcp_listener}
    spec |= {"interval": "2s", "timeout": "1s"}
    daemon = routerd_daemon(
        "healthcheck",
        router_config(resource("HealthCheck", "doc", spec)),
        "doc",
        env={"ROUTERD_PLUGINS": "healthcheck"},
    )
    resp = daemon.get("/v1/openapi.json")
    assert resp.status == 200
    doc = resp.json()
    assert doc == daemon_document(HC_COMMANDS)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/v1/healthz",
        "/v1/status",
        "/v1/events",
        "/v1/commands/{name}",
        "/v1/openapi.json",
    }


@DAEMON_SCHEMA.parametrize()
@EXAMPLES
def test_daemon_api_against_its_schema(case: Any, daemon_url: str) -> None:
    tame(case)
    response = case.call(base_url=daemon_url, timeout=40)
    case.validate_response(response, checks=CHECKS)


# -- the live routerd serve -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def serve_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base_tmp = tmp_path_factory.mktemp("serve-openapi")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    spec = {"protocol": "tcp", "target": "127.0.0.1", "port": listener.getsockname()[1]}
    spec |= {"interval": "2s", "timeout": "1s"}
    config = write_config(
        base_tmp / "router.yaml", router_config(resource("HealthCheck", "api", spec))
    )
    with tempfile.TemporaryDirectory(prefix="rdso-") as short:
        sp = ServeProcess(
            config,
            Path(short) / "run",
            Path(short) / "state",
            base_tmp / "serve.log",
            env={"ROUTERD_PLUGINS": "healthcheck"},
        )
        sp.start()
        try:
            sp.wait_for_phase("HealthCheck", "api", "Healthy")
            with relay(sp.socket_path) as url:
                yield url
        finally:
            sp.stop()
    listener.close()


def test_routerd_serve_serves_its_document(serve_url: str) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{serve_url}{CONTROL_PREFIX}/openapi.json", timeout=10) as resp:
        assert resp.status == 200
        assert json.load(resp) == control_document()


@CONTROL_SCHEMA.parametrize()
@EXAMPLES
def test_control_api_against_its_schema(case: Any, serve_url: str) -> None:
    tame(case)
    response = case.call(base_url=serve_url, timeout=40)
    case.validate_response(response, checks=CHECKS)
