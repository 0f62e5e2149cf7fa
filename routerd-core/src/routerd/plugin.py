"""routerd's public plugin API: every name a plugin may use, from one module.

::

    from routerd.plugin import DaemonEngine, DaemonKind, SpecModel, hookimpl

Everything here is covered by the compatibility policy of
docs/plugin-hooks.md ("Public API") and versioned by :data:`PLUGIN_API`;
every other module of ``routerd`` is private and may change in any release.
The testing API (pytest fixtures and the conformance suite) is public too
and lives in :mod:`routerd.testing` (it needs pytest).

Names are resolved on first use, so ``from routerd.plugin import hookimpl``
in a plugin's entry module does not import pyroute2 or pydantic until the
plugin asks for what needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import pluggy

    from routerd import PLUGIN_API
    from routerd.client import UnixClient
    from routerd.config import Duration
    from routerd.config import SpecModel
    from routerd.ctl import CtlContext
    from routerd.daemon.engine import CommandOutcome
    from routerd.daemon.engine import DaemonContext
    from routerd.daemon.engine import DaemonEngine
    from routerd.daemon.engine import Emit
    from routerd.daemon.loop import EngineLoop
    from routerd.daemon.loop import TimerHandle
    from routerd.daemon.resource import ResourceState
    from routerd.daemon.statefile import StateFile
    from routerd.daemon.statefile import atomic_write
    from routerd.durations import format_duration
    from routerd.durations import parse_duration
    from routerd.errors import CommandRejected
    from routerd.errors import ConfigError
    from routerd.errors import ConfigProblem
    from routerd.errors import PluginError
    from routerd.errors import RouterdError
    from routerd.errors import UnknownCommand
    from routerd.kinds import COMMON_COMMANDS
    from routerd.kinds import DaemonKind
    from routerd.model import PHASES
    from routerd.model import SEVERITIES
    from routerd.model import Condition
    from routerd.model import Event
    from routerd.model import ResourceRef
    from routerd.model import Scalar
    from routerd.model import Severity
    from routerd.netapply import ApplyError
    from routerd.netapply import LinkChange
    from routerd.netapply import LinkLocal
    from routerd.netapply import LinkState
    from routerd.netapply import LinkWatcher
    from routerd.netapply import NetApplier
    from routerd.packetstats import DropCounter
    from routerd.secrets import Secret
    from routerd.secrets import SecretURL
    from routerd.secrets import shown
    from routerd.timefmt import rfc3339
    from routerd.topics import topic_matches

    hookimpl: pluggy.HookimplMarker

#: Public name -> the module that defines it (the one place it is implemented).
_WHERE: dict[str, str] = {
    "PLUGIN_API": "routerd",
    "hookimpl": "routerd",
    # what a plugin registers
    "DaemonKind": "routerd.kinds",
    "COMMON_COMMANDS": "routerd.kinds",
    "SpecModel": "routerd.config",
    "Duration": "routerd.config",
    "Secret": "routerd.secrets",
    "SecretURL": "routerd.secrets",
    "shown": "routerd.secrets",
    # the engine and what the runtime hands it
    "DaemonEngine": "routerd.daemon.engine",
    "DaemonContext": "routerd.daemon.engine",
    "CommandOutcome": "routerd.daemon.engine",
    "Emit": "routerd.daemon.engine",
    "EngineLoop": "routerd.daemon.loop",
    "TimerHandle": "routerd.daemon.loop",
    "ResourceState": "routerd.daemon.resource",
    "StateFile": "routerd.daemon.statefile",
    "atomic_write": "routerd.daemon.statefile",
    # errors
    "RouterdError": "routerd.errors",
    "PluginError": "routerd.errors",
    "CommandRejected": "routerd.errors",
    "UnknownCommand": "routerd.errors",
    "ConfigError": "routerd.errors",
    "ConfigProblem": "routerd.errors",
    # wire types and vocabularies
    "ResourceRef": "routerd.model",
    "Event": "routerd.model",
    "Condition": "routerd.model",
    "Scalar": "routerd.model",
    "Severity": "routerd.model",
    "PHASES": "routerd.model",
    "SEVERITIES": "routerd.model",
    # helpers shared by protocol plugins
    "NetApplier": "routerd.netapply",
    "ApplyError": "routerd.netapply",
    "LinkState": "routerd.netapply",
    "LinkLocal": "routerd.netapply",
    "LinkChange": "routerd.netapply",
    "LinkWatcher": "routerd.netapply",
    "DropCounter": "routerd.packetstats",
    "parse_duration": "routerd.durations",
    "format_duration": "routerd.durations",
    "rfc3339": "routerd.timefmt",
    "topic_matches": "routerd.topics",
    # routerctl commands (routerd_register_commands)
    "CtlContext": "routerd.ctl",
    "UnixClient": "routerd.client",
}

__all__ = [
    "ApplyError",
    "COMMON_COMMANDS",
    "CommandOutcome",
    "CommandRejected",
    "Condition",
    "ConfigError",
    "ConfigProblem",
    "CtlContext",
    "DaemonContext",
    "DaemonEngine",
    "DaemonKind",
    "DropCounter",
    "Duration",
    "Emit",
    "EngineLoop",
    "Event",
    "LinkChange",
    "LinkLocal",
    "LinkState",
    "LinkWatcher",
    "NetApplier",
    "PHASES",
    "PLUGIN_API",
    "PluginError",
    "ResourceRef",
    "ResourceState",
    "RouterdError",
    "SEVERITIES",
    "Scalar",
    "Secret",
    "SecretURL",
    "Severity",
    "SpecModel",
    "StateFile",
    "TimerHandle",
    "UnixClient",
    "UnknownCommand",
    "atomic_write",
    "format_duration",
    "hookimpl",
    "parse_duration",
    "rfc3339",
    "shown",
    "topic_matches",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'routerd.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
