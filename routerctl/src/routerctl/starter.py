"""``routerctl plugins new NAME``: a working plugin to start from.

The files below are the whole starter: a distribution ``routerd-plugin-NAME``
with the ``routerd`` entry point and the ``routerd-core`` version range, a
spec model, an engine (a timer, a phase with a condition, ``observed``,
``state.json``, events, a ``renew`` command, live reload, prompt stop), the
conformance suite and a README. docs/writing-a-plugin.md builds the same
plugin by hand (``NAME=ticker``); a test keeps its code blocks equal to
these templates, runs them, and runs a generated plugin's tests.

Placeholders: ``@name@`` (daemon kind, e.g. ``ticker``), ``@Kind@``
(resource kind, ``Ticker``), ``@pkg@`` (import package, ``routerd_ticker``),
``@dist@`` (``routerd-plugin-ticker``), ``@prefix@`` (topic prefix,
``routerd.ticker``).
"""

from __future__ import annotations

from pathlib import Path
import re

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
#: routerd's own topic namespaces (routerd.kinds.RESERVED_TOPIC_SEGMENTS): no kind's.
RESERVED = frozenset({"daemon", "resource", "serve", "derived", "rule", "rules"})

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "@dist@"
version = "0.1.0"
description = "routerd daemon kind @name@ (resource kind @Kind@)"
readme = "README.md"
requires-python = ">=3.11"
# The plugin API changes incompatibly only with a new minor routerd-core
# while it is 0.x (docs/plugin-hooks.md, "Compatibility").
dependencies = ["routerd-core>=0.1,<0.2"]

[project.optional-dependencies]
test = ["routerd-core[testing]>=0.1,<0.2"]

[project.entry-points.routerd]
@name@ = "@pkg@.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
@pkg@ = ["py.typed"]

[tool.pytest.ini_options]
addopts = "-p no:cacheprovider"
"""

INIT = '''\
"""routerd daemon kind @name@."""
'''

SPEC = '''\
"""The spec of a @Kind@ resource: what the config says."""

from __future__ import annotations

from routerd.plugin import Duration
from routerd.plugin import SpecModel


class @Kind@Spec(SpecModel):
    """``spec`` of ``kind: @Kind@`` (camelCase in YAML; unknown fields are errors)."""

    interval: Duration = 10.0
    message: str = "tick"
'''

ENGINE = '''\
"""The @name@ engine: a tick every ``interval``; ``renew`` ticks now.

Every method runs on the daemon's engine thread: no locks needed.
"""

from __future__ import annotations

from typing import Any

from routerd.plugin import CommandOutcome
from routerd.plugin import DaemonContext
from routerd.plugin import DaemonEngine
from routerd.plugin import SpecModel
from routerd.plugin import TimerHandle
from routerd.plugin import UnknownCommand
from routerd.plugin import rfc3339

from @pkg@.spec import @Kind@Spec

TOPIC_TICK = "@prefix@.tick"
#: Every topic this plugin emits (document each in the README).
TOPICS = (TOPIC_TICK,)


class @Kind@Engine(DaemonEngine):
    def __init__(self, ctx: DaemonContext) -> None:
        assert isinstance(ctx.spec, @Kind@Spec)
        self.ctx = ctx
        self.spec: @Kind@Spec = ctx.spec
        self.timer: TimerHandle | None = None
        self.ticks = 0

    def start(self, ctx: DaemonContext) -> None:
        saved = ctx.state.load() or {}
        self.ticks = int(saved.get("ticks", 0))  # survives restarts
        self.tick("start")

    def tick(self, trigger: str) -> None:
        self.ticks += 1
        now = self.ctx.wall()
        self.ctx.state.save({"ticks": self.ticks})
        self.ctx.status.set_condition("Ticking", True, "Ticked", f"tick {self.ticks}")
        self.ctx.status.set_observed(
            {"ticks": self.ticks, "lastTick": rfc3339(now), "interval": self.spec.interval}
        )
        self.ctx.status.set_phase("Up", "Ticking", f"{self.ticks} ticks")
        self.ctx.emit(
            TOPIC_TICK,
            reason="Tick",
            message=f"{self.spec.message} {self.ticks}",
            ticks=self.ticks,
            trigger=trigger,
        )
        self.schedule()

    def schedule(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.ctx.loop.call_later(self.spec.interval, self.tick, "interval")

    def command(self, name: str, args: dict[str, Any]) -> CommandOutcome:
        if name == "renew":
            self.tick("renew")
            return CommandOutcome(f"tick {self.ticks}", {"ticks": self.ticks})
        raise UnknownCommand(f"@name@ has no command {name!r}")

    def reload(self, spec: SpecModel) -> str:
        assert isinstance(spec, @Kind@Spec)
        self.spec = spec
        self.schedule()
        return f"interval {spec.interval:g} s"

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
'''

PLUGIN = '''\
"""Entry point of @dist@: registers daemon kind @name@."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from routerd.plugin import DaemonKind
from routerd.plugin import hookimpl

from @pkg@.engine import @Kind@Engine
from @pkg@.spec import @Kind@Spec


def facts(observed: Mapping[str, Any]) -> str:
    """The FACTS column of ``routerctl status``."""
    return f"{observed.get('ticks', 0)} ticks"


@hookimpl
def routerd_register_daemon_kinds(register: Callable[[DaemonKind], None]) -> None:
    register(
        DaemonKind(
            name="@name@",
            kind="@Kind@",
            spec_model=@Kind@Spec,
            factory=@Kind@Engine,
            topic_prefix="@prefix@",
            facts=facts,
            description="ticks every interval; renew ticks now",
        )
    )
'''

TEST = '''\
"""@name@ against routerd's daemon conformance suite, and its own behaviour."""

from __future__ import annotations

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config

CONFIG = router_config(resource("@Kind@", "demo", {"interval": "1s", "message": "hello"}))
ENV = {"ROUTERD_PLUGINS": "@name@"}


class Test@Kind@Conformance(DaemonConformance):
    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        return ConformanceTarget("@name@", CONFIG, "demo", env=ENV)


def test_renew_ticks_now(routerd_daemon: DaemonFactory) -> None:
    daemon = routerd_daemon("@name@", CONFIG, "demo", env=ENV)
    daemon.wait_for_phase("Up")
    head = daemon.head()
    resp = daemon.command("renew")
    assert resp.status == 200, resp.error_text()
    ticks = resp.json()["result"]["ticks"]
    event = daemon.wait_for_event("@prefix@.tick", since=head)
    assert event["attributes"]["ticks"] == ticks
    assert event["attributes"]["trigger"] == "renew"
    assert event["message"] == f"hello {ticks}"
'''

README = """\
# @dist@

A [routerd](https://github.com/routerd/routerd) plugin: daemon kind
`@name@`, serving resources of kind `@Kind@`. Each resource ticks every
`interval`; `routerctl renew @name@/<resource>` ticks now.

```yaml
- apiVersion: net.routerd.net/v1alpha1
  kind: @Kind@
  metadata: {name: demo}
  spec: {interval: 10s, message: tick}
```

## Status

Phase `Up` with the condition `Ticking` once the first tick is done;
`observed`: `ticks`, `lastTick`, `interval`.

## Events

| topic | when | attributes |
|---|---|---|
| `@prefix@.tick` | every tick | `ticks`, `trigger` (`start`, `interval`, `renew`) |

## Develop

```sh
pip install -e '.[test]'
pytest
```
"""

FILES = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "src/@pkg@/__init__.py": INIT,
    "src/@pkg@/py.typed": "",
    "src/@pkg@/spec.py": SPEC,
    "src/@pkg@/engine.py": ENGINE,
    "src/@pkg@/plugin.py": PLUGIN,
    "tests/test_@pkg@.py": TEST,
}


def names(name: str) -> dict[str, str]:
    """The placeholders for plugin ``name``; ValueError when it cannot be one."""
    if not NAME.match(name) or not 2 <= len(name) <= 30:
        raise ValueError(
            f"{name!r}: a plugin name is 2-30 lower-case letters and digits, "
            "words joined by '-' (e.g. ticker, wan-monitor)"
        )
    if name.split("-")[0] in RESERVED:
        raise ValueError(f"{name!r}: routerd.{name.split('-')[0]}.* is routerd's own namespace")
    return {
        "@name@": name,
        "@Kind@": "".join(part.capitalize() for part in name.split("-")),
        "@pkg@": "routerd_" + name.replace("-", "_"),
        "@dist@": f"routerd-plugin-{name}",
        "@prefix@": "routerd." + name.replace("-", "."),
    }


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def files(name: str) -> dict[str, str]:
    """Relative path -> content of the starter for ``name``."""
    values = names(name)
    return {render(path, values): render(text, values) for path, text in FILES.items()}


def write(name: str, target: Path) -> list[Path]:
    """Write the starter into ``target`` (which must not exist or be empty)."""
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    written = []
    for rel, text in files(name).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
