"""Secret spec fields: marking, redaction, and the daemon runtime keeping them in.

The end-to-end check (a real ``routerd serve``, every file and socket a user
could read) is ``tests/test_permissions.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import io
import json
import logging
from pathlib import Path
import sys
import threading
from typing import Annotated
from typing import Any

import pydantic
from pydantic import Field
import pytest
from routerd import hookimpl
from routerd.config import SpecModel
from routerd.config import load_config
from routerd.daemon.engine import CommandOutcome
from routerd.daemon.engine import DaemonContext
from routerd.daemon.engine import DaemonEngine
from routerd.daemon.resource import ResourceState
from routerd.daemon.runtime import DaemonPaths
from routerd.daemon.runtime import DaemonRuntime
from routerd.errors import CommandRejected
from routerd.kinds import DaemonKind
from routerd.model import Condition
from routerd.model import ResourceRef
from routerd.plugins import load_plugins
from routerd.secrets import REDACTED
from routerd.secrets import Scrubber
from routerd.secrets import Secret
from routerd.secrets import SecretURL
from routerd.secrets import install_log_redaction
from routerd.secrets import redact_url
from routerd.secrets import secret_values
from routerd.secrets import shown
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config

PASSWORD = "hunter2-correct-horse"
TOKEN = "tok-9f8e7d6c5b4a"


class Peer(pydantic.BaseModel):
    name: str
    key: Annotated[str, Secret()]


class WidgetSpec(SpecModel):
    interface: str = "wan0"
    password: Annotated[str, Secret()] = ""
    url: Annotated[str, SecretURL()] = "http://example.net/"
    old_style: str | None = Field(default=None, json_schema_extra={"secret": True})
    api_key: pydantic.SecretStr | None = None
    keys: Annotated[list[str], Secret()] = []
    peers: list[Peer] = []


def test_to_wire_redacts_every_kind_of_marked_field() -> None:
    spec = WidgetSpec.model_validate(
        {
            "password": PASSWORD,
            "url": f"https://admin:{PASSWORD}@example.net:8443/health?token={TOKEN}&v=1",
            "oldStyle": "legacy-secret",
            "apiKey": "sk-live-1234",
            "keys": ["k-one-111", "k-two-222"],
            "peers": [{"name": "a", "key": "peer-key-333"}],
        }
    )
    wire = spec.to_wire()
    assert wire == {
        "interface": "wan0",
        "password": REDACTED,
        "url": "https://admin:***@example.net:8443/health?token=***&v=***",
        "oldStyle": REDACTED,
        "apiKey": REDACTED,
        "keys": [REDACTED, REDACTED],
        "peers": [{"name": "a", "key": REDACTED}],
    }
    text = json.dumps(wire)
    for secret in (PASSWORD, TOKEN, "legacy-secret", "sk-live-1234", "k-one-111", "peer-key-333"):
        assert secret not in text
        assert secret in secret_values(spec), f"{secret} is not known to the scrubber"
    # Unset and default values stay as they are: "not set" is not a secret.
    assert WidgetSpec().to_wire()["password"] == REDACTED
    assert WidgetSpec().to_wire()["oldStyle"] is None


@pytest.mark.parametrize(
    ("url", "shown_as", "secrets"),
    [
        ("/health?token=abc123", "/health?token=***", ["abc123"]),
        ("/", "/", []),
        ("/p?", "/p?", []),
        ("/p?bare-token", "/p?***", ["bare-token"]),
        ("/p?a=&b=2", "/p?a=&b=***", ["2"]),
        ("https://u:pw@h:1/x?q=1#frag", "https://u:***@h:1/x?q=***#***", ["pw", "1", "frag"]),
        ("https://tok@h/", "https://***@h/", ["tok"]),
        ("http://h/a@b", "http://h/a@b", []),  # an @ in the path is not userinfo
    ],
)
def test_redact_url(url: str, shown_as: str, secrets: list[str]) -> None:
    assert redact_url(url) == shown_as
    assert SecretURL().parts(url) == secrets


def test_shown_uses_the_marker() -> None:
    spec = WidgetSpec(url="http://h/x?token=abcdef", password="p4ssw0rd")
    assert shown(spec, "url") == "http://h/x?token=***"
    assert shown(spec, "password") == REDACTED
    assert shown(spec, "interface") == "wan0"


def test_json_schema_marks_secret_fields() -> None:
    props = WidgetSpec.model_json_schema(by_alias=True)["properties"]
    assert props["password"]["secret"] is True and props["password"]["writeOnly"] is True
    assert props["url"]["secret"] is True and props["url"]["type"] == "string"
    assert "secret" not in props["interface"]


def test_scrubber_replaces_values_in_text_and_json() -> None:
    scrub = Scrubber(["abcdef", "abcdefgh", "1"])
    assert not Scrubber()
    assert scrub.text("x abcdefgh y abcdef z 1") == "x *** y *** z 1", (
        "longest first; values shorter than MIN_SCRUB_LENGTH are left in free text"
    )
    value = {"abcdef": ["a abcdef", ("abcdef", 3)], "n": None, "t": True}
    assert scrub.value(value) == {"***": ["a ***", ("***", 3)], "n": None, "t": True}
    scrub.add(["zzzzzz"])
    assert scrub.text("abcdef zzzzzz") == "*** ***", "added values join, old ones stay"


def test_resource_state_scrubs_before_storing() -> None:
    seen: list[tuple[str, list[Condition]]] = []
    state = ResourceState(
        ResourceRef("v", "Widget", "w"),
        lambda: 1.0,
        on_phase=lambda old, new, reason, message, conds: seen.append((message, conds)),
        scrub=Scrubber([TOKEN]),
    )
    state.set_condition("Reachable", False, "Failed", f"GET /x?token={TOKEN} refused")
    state.set_phase("Error", "Failed", f"GET /x?token={TOKEN} refused")
    state.set_observed({"url": f"/x?token={TOKEN}", "nested": [{TOKEN: TOKEN}]})
    state.update_observed(last=f"token={TOKEN}")
    dumped = json.dumps(state.snapshot().to_dict())
    assert TOKEN not in dumped and "token=***" in dumped
    assert TOKEN not in repr(seen), "the phase listener (and the phase hook) see it scrubbed"


def test_log_redaction_covers_messages_tracebacks_and_uncaught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    logger = logging.getLogger("routerd.test-secrets")
    logger.propagate = False
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    crash = logging.getLogger("routerd.crash")
    crash.addHandler(handler)
    try:
        install_log_redaction(Scrubber([PASSWORD]), logger)
        logger.warning("login with %s failed", PASSWORD)
        try:
            raise ValueError(f"bad password {PASSWORD}")
        except ValueError:
            logger.exception("boom")

        def crash_thread() -> None:
            raise RuntimeError(f"thread saw {PASSWORD}")

        thread = threading.Thread(target=crash_thread, name="crasher")
        thread.start()
        thread.join(5)
    finally:
        logger.removeHandler(handler)
        crash.removeHandler(handler)
        logger.propagate = True
    text = out.getvalue()
    assert "WARNING login with *** failed" in text, "the handler's own format is kept"
    assert "ValueError: bad password ***" in text
    assert "uncaught exception in thread crasher" in text and "thread saw ***" in text
    assert PASSWORD not in text


# -- the runtime: every way out of a daemon ----------------------------------


class LeakyEngine(DaemonEngine):
    """Puts the spec's secrets everywhere an engine can (what a careless plugin does)."""

    def __init__(self, ctx: DaemonContext) -> None:
        assert isinstance(ctx.spec, WidgetSpec)
        self.ctx = ctx
        self.log = ctx.log

    def start(self, ctx: DaemonContext) -> None:
        self._leak("start")

    def _leak(self, why: str) -> None:
        spec = self.ctx.spec
        assert isinstance(spec, WidgetSpec)
        url, password = spec.url, spec.password
        self.ctx.status.set_condition("Auth", False, "Refused", f"{url} refused {password}")
        self.ctx.status.set_phase("Error", "Refused", f"{why}: {url} with {password}")
        self.ctx.status.set_observed({"url": url, "password": password})
        self.ctx.emit(
            "routerd.widget.auth.failed",
            reason="Refused",
            message=f"{url} refused {password}",
            url=url,
        )
        self.log.warning("login to %s with %s refused", url, password)

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome:
        spec = self.ctx.spec
        assert isinstance(spec, WidgetSpec)
        if args.get("fail"):
            raise CommandRejected(f"cannot log in with {spec.password}")
        return CommandOutcome(f"renewed {spec.url}", {"url": spec.url})

    def reload(self, spec: SpecModel) -> str:
        assert isinstance(spec, WidgetSpec)
        self.ctx.spec = spec
        self._leak("reload")
        return f"now {spec.password}"


class _WidgetPlugin:
    @hookimpl
    def routerd_register_daemon_kinds(self, register: Callable[[DaemonKind], None]) -> None:
        register(
            DaemonKind(name="widget", kind="Widget", spec_model=WidgetSpec, factory=LeakyEngine)
        )


def _widget_config(path: Path, password: str, token: str) -> Path:
    spec = {"password": password, "url": f"https://admin:{password}@h.example/x?token={token}"}
    return write_config(path, router_config(resource("Widget", "w", spec)))


@pytest.fixture
def leaky_runtime(tmp_path: Path) -> Iterator[tuple[DaemonRuntime, io.StringIO]]:
    plugins = load_plugins(allow=set(), extra={"widget": _WidgetPlugin()})
    config_path = _widget_config(tmp_path / "router.yaml", PASSWORD, TOKEN)
    res = load_config(config_path, plugins).find("w", "widget")
    assert res is not None
    paths = DaemonPaths.default("widget", "w", tmp_path / "run", tmp_path / "state")
    runtime = DaemonRuntime(plugins, plugins.kinds["widget"], config_path, res, paths)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger("routerd")
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        install_log_redaction(runtime.scrubber, root)
        runtime.start()
        yield runtime, out
    finally:
        runtime.stop()
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_runtime_keeps_spec_secrets_out_of_everything(
    leaky_runtime: tuple[DaemonRuntime, io.StringIO],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    runtime, log_out = leaky_runtime
    seen: list[str] = []
    renewed = runtime.run_command("renew", {})
    seen.append(json.dumps(renewed.to_dict()))
    assert renewed.message == "renewed https://admin:***@h.example/x?token=***"
    with pytest.raises(CommandRejected) as rejected:
        runtime.run_command("renew", {"fail": True})
    seen += [rejected.value.message, str(rejected.value)]
    assert rejected.value.message == "cannot log in with ***"

    new_password, new_token = "swordfish-rotated-77", "tok-rotated-0011"
    _widget_config(runtime.config_path, new_password, new_token)
    reloaded = runtime.run_command("reload", {})
    assert reloaded.message == f"now {REDACTED}", "the new secret is known before the engine runs"
    seen.append(json.dumps(reloaded.to_dict()))

    seen.append(json.dumps(runtime.status().to_dict()))
    assert runtime.eventlog.wait_shown(10), "the events are readable (background marks)"
    seen.append(json.dumps(runtime.eventlog.query(None, (), 1000).to_dict()))
    seen.append((runtime.paths.state_dir / "events.jsonl").read_text())
    seen.append(log_out.getvalue())
    everything = "\n".join(seen)
    assert "routerd.widget.auth.failed" in everything and "token=***" in everything
    for secret in (PASSWORD, TOKEN, new_password, new_token):
        assert secret not in everything, f"{secret!r} leaked"
