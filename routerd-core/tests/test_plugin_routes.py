"""Plugins' main API routes (``routerd_register_api_routes``) and the observer fallbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest
from routerd import hookimpl
from routerd.plugins import load_plugins
from routerd.serve.api import PREFIX
from routerd.serve.api import create_control_app
from routerd.serve.routes import OBSERVER_ENDPOINTS
from routerd.serve.routes import ServeView
from routerd.serve.routes import add_plugin_routes


class Supervisor:
    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "resource": {"kind": "Widget", "name": "w1"},
                "daemonKind": "widget",
                "state": "Running",
                "socket": "/run/x/widget/w1.sock",
            }
        ]


class Backend:
    """Enough of RouterdServe for the routes."""

    def __init__(self, extra: dict[str, object]) -> None:
        self.plugins = load_plugins(allow=set(), extra=extra)
        self.state_dir = Path("/var/lib/test")
        self.supervisor = Supervisor()
        self.store: Any = None


class Widgets:
    def __init__(self, serve: ServeView) -> None:
        self.serve = serve

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [d.name for d in self.serve.daemons("widget")]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"posted": True}


class WidgetPlugin:
    @hookimpl
    def routerd_register_api_routes(self, add_route: Any, serve: ServeView) -> None:
        add_route("widgets", Widgets(serve))


class ClashPlugin:
    @hookimpl
    def routerd_register_api_routes(self, add_route: Any) -> None:
        add_route("events", Widgets(None))  # type: ignore[arg-type]


class BrokenPlugin:
    @hookimpl
    def routerd_register_api_routes(self, add_route: Any) -> None:
        raise RuntimeError("boom")


def _client(extra: dict[str, object], read_only: bool = False) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_control_app(Backend(extra), read_only=read_only))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", sorted(OBSERVER_ENDPOINTS))
def test_observer_endpoints_answer_empty_without_a_plugin(path: str) -> None:
    resp = _client({}).simulate_get(f"{PREFIX}/{path}")
    assert resp.status_code == 200
    body = resp.json
    assert body["items"] == []
    assert body["kind"] == OBSERVER_ENDPOINTS[path]
    (cond,) = body["conditions"]
    assert cond["type"] == "ObserverAvailable" and cond["status"] == "False"
    assert cond["reason"] == "NoObserverPlugin"


def test_a_plugin_adds_a_route_that_sees_the_daemons() -> None:
    client = _client({"widgets": WidgetPlugin()})
    assert client.simulate_get(f"{PREFIX}/widgets").json == {"items": ["w1"]}
    assert client.simulate_post(f"{PREFIX}/widgets").json == {"posted": True}


def test_the_status_socket_refuses_a_plugin_routes_post() -> None:
    client = _client({"widgets": WidgetPlugin()}, read_only=True)
    assert client.simulate_get(f"{PREFIX}/widgets").status_code == 200
    assert client.simulate_post(f"{PREFIX}/widgets").status_code == 405


def test_a_plugin_cannot_take_a_core_path_and_a_broken_one_is_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = Backend({"clash": ClashPlugin(), "broken": BrokenPlugin(), "widgets": WidgetPlugin()})
    app = falcon.App()
    owners = add_plugin_routes(app, backend, PREFIX, "v", {"events"})
    assert owners == {"widgets": "widgets"}
    assert "'events' is served by routerd itself" in caplog.text
    assert "RuntimeError: boom" in caplog.text
    client = falcon.testing.TestClient(app)
    assert client.simulate_get(f"{PREFIX}/events").status_code == 404
    assert client.simulate_get(f"{PREFIX}/traffic-flows").json["items"] == []


def test_two_plugins_cannot_add_the_same_path(caplog: pytest.LogCaptureFixture) -> None:
    backend = Backend({"a": WidgetPlugin(), "b": WidgetPlugin()})
    owners = add_plugin_routes(falcon.App(), backend, PREFIX, "v", set())
    assert list(owners.values()) in (["a"], ["b"])
    assert "is added by both plugin" in caplog.text


class Recorder:
    seen: list[bool] = []

    @hookimpl
    def routerd_register_api_routes(self, add_route: Any, serve: ServeView) -> None:
        self.seen.append(serve.status_socket)


def test_a_plugin_knows_which_socket_its_routes_are_for() -> None:
    backend = Backend({"rec": Recorder()})
    create_control_app(backend)  # type: ignore[arg-type]
    create_control_app(backend, read_only=True)  # type: ignore[arg-type]
    assert Recorder.seen == [False, True]
