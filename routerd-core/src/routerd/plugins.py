"""Plugin loading: the ``routerd`` entry-point group, one plugin at a time.

pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails
to import; routerd iterates the group itself so that one broken plugin shows
up with its error in ``routerctl plugins list`` while the others load.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from importlib import metadata
import logging
import os
import sys
from typing import Any

import pluggy

from routerd import hookspecs
from routerd.errors import PluginError
from routerd.kinds import DaemonKind

ENTRY_POINT_GROUP = "routerd"
log = logging.getLogger("routerd.plugins")


@dataclass
class PluginRecord:
    """One entry point of the ``routerd`` group, loaded or not."""

    name: str
    value: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    daemon_kinds: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entryPoint": self.value,
            "distribution": self.distribution,
            "version": self.version,
            "daemonKinds": self.daemon_kinds,
            "hooks": self.hooks,
            "error": self.error,
        }


@dataclass
class PluginSet:
    """The loaded plugins, their daemon kinds and the pluggy manager."""

    pm: pluggy.PluginManager
    records: list[PluginRecord]
    kinds: dict[str, DaemonKind]
    kind_owner: dict[str, str]

    def kind_for_resource(self, api_version: str, kind: str) -> DaemonKind | None:
        for dk in self.kinds.values():
            if dk.kind == kind and dk.api_version == api_version:
                return dk
        return None

    def kind_for_resource_kind(self, kind: str) -> DaemonKind | None:
        return next((dk for dk in self.kinds.values() if dk.kind == kind), None)


def allowed_plugins() -> set[str] | None:
    """Names from ``ROUTERD_PLUGINS`` (comma separated); None loads all, "" none."""
    raw = os.environ.get("ROUTERD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("routerd")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("ROUTERD_TRACE_PLUGINS") == "1":
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def load_plugins(
    allow: set[str] | None = None,
    extra: dict[str, object] | None = None,
) -> PluginSet:
    """Load every allowed entry point and collect daemon kinds.

    :param allow: entry-point names to load (default: ``ROUTERD_PLUGINS``).
    :param extra: name → plugin object registered as well (tests, built-ins).
    """
    if allow is None:
        allow = allowed_plugins()
    pm = new_plugin_manager()
    records: list[PluginRecord] = []
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if allow is not None and ep.name not in allow:
            continue
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist = ep.dist
        record = PluginRecord(
            name=ep.name,
            value=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else "",
            version=dist.version if dist is not None else "",
        )
        records.append(record)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # one broken plugin must not stop the others
            record.error = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s failed to load: %s", ep.name, record.error)
    for name, plugin in (extra or {}).items():
        pm.register(plugin, name=name)
        records.append(PluginRecord(name=name, value="", distribution="", version=""))
    for record in records:
        plugin = pm.get_plugin(record.name)
        if plugin is not None:
            callers = pm.get_hookcallers(plugin) or []
            record.hooks = sorted(h.name for h in callers)
    kinds, owner = _collect_kinds(pm, records)
    return PluginSet(pm=pm, records=records, kinds=kinds, kind_owner=owner)


def _collect_kinds(
    pm: pluggy.PluginManager, records: list[PluginRecord]
) -> tuple[dict[str, DaemonKind], dict[str, str]]:
    kinds: dict[str, DaemonKind] = {}
    owner: dict[str, str] = {}
    by_name = {r.name: r for r in records}
    for impl in pm.hook.routerd_register_daemon_kinds.get_hookimpls():
        plugin_name = impl.plugin_name
        record = by_name.get(plugin_name)

        def register(
            dk: DaemonKind, _plugin: str = plugin_name, record: PluginRecord | None = record
        ) -> None:
            if not isinstance(dk, DaemonKind):
                raise PluginError(f"register() takes a DaemonKind, got {type(dk).__name__}")
            if dk.name in kinds:
                raise PluginError(
                    f"daemon kind {dk.name!r} is registered by both plugin "
                    f"{owner[dk.name]!r} and plugin {_plugin!r}"
                )
            clash = next((k for k in kinds.values() if k.kind == dk.kind), None)
            if clash is not None:
                raise PluginError(
                    f"resource kind {dk.kind!r} is served by both plugin "
                    f"{owner[clash.name]!r} ({clash.name}) and plugin {_plugin!r} ({dk.name})"
                )
            if not dk.version and record is not None:
                dk = replace(dk, version=record.version)  # the distribution's version
            kinds[dk.name] = dk
            owner[dk.name] = _plugin
            if record is not None:
                record.daemon_kinds.append(dk.name)

        try:
            impl.function(register=register)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s failed to register daemon kinds: %s", plugin_name, message)
            if record is not None:
                record.error = message
    return kinds, owner


def safe_call(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call an observer hook; a failing implementation is logged, not raised."""
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        try:
            impl.function(**{k: kwargs[k] for k in impl.argnames})
        except Exception:
            log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
