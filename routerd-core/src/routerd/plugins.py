"""Plugin loading: the ``routerd`` entry-point group, one plugin at a time.

pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails
to import; routerd iterates the group itself so that one broken plugin shows
up with its error in ``routerctl plugins list`` while the others load.

Nothing is decided by install order or by the order entry points are found
(docs/plugin-hooks.md, "How plugins are loaded"):

- an entry-point name provided by two distributions loads neither; both
  rows are listed, each naming the other distribution;
- a daemon kind or resource kind registered by two plugins is a load error
  for both, naming both distributions; that kind is served by nobody, and a
  config that uses it is refused until one of them is uninstalled;
- any exception while importing a plugin or calling its hooks is contained
  and recorded, ``SystemExit`` included. ``KeyboardInterrupt`` is contained
  only when the plugin raised it itself: a real Ctrl-C (SIGINT received
  while loading) still interrupts the command;
- a hookimpl for a hook routerd does not have (a misspelling such as
  ``routerd_register_daemon_kind``) is a load error of that plugin (pluggy's
  ``check_pending`` rule, applied per plugin), unless marked
  ``@hookimpl(optionalhook=True)``.

``ROUTERD_TRACE_PLUGINS=1`` writes every hook call, per plugin, with its
arguments and outcome to stderr (:func:`call_impl`).

A daemon imports only the plugins it needs (:func:`load_daemon_plugins`):
its kind's and the observers', found through an index that every full load
writes (serve, validate, ``routerctl plugins list``, a daemon that had to
load everything). See docs/decisions.md, "Process model".
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import difflib
import hashlib
from importlib import metadata
import json
import logging
import os
from pathlib import Path
import signal
import sys
import threading
from typing import Any

import pluggy

from routerd import hookspecs
from routerd.errors import PluginError
from routerd.kinds import DaemonKind

ENTRY_POINT_GROUP = "routerd"
log = logging.getLogger("routerd.plugins")
#: Hooks a daemon calls: a daemon imports the plugins implementing them besides its own.
DAEMON_HOOKS = frozenset({"routerd_event_emitted", "routerd_phase_changed"})
#: The plugin index in the state root (:func:`write_index`).
INDEX_NAME = "plugins.index.json"
INDEX_VERSION = 1


@dataclass
class PluginRecord:
    """One entry point of the ``routerd`` group, loaded or not.

    :ivar error: why the plugin does not (fully) work, one line; None when it loaded.
    :ivar daemon_kinds: the daemon kinds it registered and that are in service
        (a kind in conflict with another plugin is not).
    """

    name: str
    value: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    daemon_kinds: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        """How messages name the plugin: its distribution, else its entry-point name."""
        if self.distribution:
            return f"{self.distribution} {self.version}".strip()
        return f"plugin {self.name}"

    def add_error(self, message: str) -> None:
        self.error = message if self.error is None else f"{self.error}; {message}"

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
    """The loaded plugins, their daemon kinds and the pluggy manager.

    :ivar kinds: daemon kinds in service, by daemon kind name.
    :ivar kind_owner: daemon kind name to the entry-point name that registered it.
    :ivar conflicts: resource kinds (and daemon kind names) claimed by more
        than one plugin, to the one-line reason; nobody serves them.
    """

    pm: pluggy.PluginManager
    records: list[PluginRecord]
    kinds: dict[str, DaemonKind]
    kind_owner: dict[str, str]
    conflicts: dict[str, str] = field(default_factory=dict)

    def kind_for_resource(self, api_version: str, kind: str) -> DaemonKind | None:
        for dk in self.kinds.values():
            if dk.kind == kind and dk.api_version == api_version:
                return dk
        return None

    def kind_for_resource_kind(self, kind: str) -> DaemonKind | None:
        return next((dk for dk in self.kinds.values() if dk.kind == kind), None)

    def conflict(self, kind: str) -> str | None:
        """Why resource kind (or daemon kind name) ``kind`` is served by nobody, if claimed twice."""
        return self.conflicts.get(kind)

    def observers(self) -> set[str]:
        """Plugins (entry-point names) that implement a hook a daemon calls (:data:`DAEMON_HOOKS`)."""
        return {r.name for r in self.records if not r.error and DAEMON_HOOKS & set(r.hooks)}

    def daemon_plugins(self, daemon_kind: str) -> set[str] | None:
        """What a daemon of ``daemon_kind`` imports: its kind's plugin and the observers.

        None when no plugin serves the kind. Valid for a full load, which
        has seen every kind claimed twice.
        """
        owner = self.kind_owner.get(daemon_kind)
        return None if owner is None else {owner} | self.observers()

    @property
    def failed(self) -> list[PluginRecord]:
        return [r for r in self.records if r.error]


def allowed_plugins() -> set[str] | None:
    """Names from ``ROUTERD_PLUGINS`` (comma separated); None loads all, "" none."""
    raw = os.environ.get("ROUTERD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def tracing() -> bool:
    """``ROUTERD_TRACE_PLUGINS=1``: every hook call is written to stderr."""
    return os.environ.get("ROUTERD_TRACE_PLUGINS") == "1"


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("routerd")
    pm.add_hookspecs(hookspecs)
    if tracing():
        # Covers calls made through pm.hook.<name>(...) (none in routerd
        # itself, which calls each implementation on its own: call_impl).
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


# -- containing what a plugin raises ----------------------------------------------
class _SigintWatch:
    """Tells a real Ctrl-C from a ``KeyboardInterrupt`` a plugin raised itself."""

    def __init__(self) -> None:
        self.received = False

    def handler(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt


@contextlib.contextmanager
def _watch_sigint() -> Iterator[_SigintWatch]:
    watch = _SigintWatch()
    if threading.current_thread() is not threading.main_thread():
        watch.received = True  # cannot tell: treat every KeyboardInterrupt as real
        yield watch
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        watch.received = True  # SIGINT handled (or ignored) by someone else: leave it
        yield watch
        return
    signal.signal(signal.SIGINT, watch.handler)
    try:
        yield watch
    finally:
        signal.signal(signal.SIGINT, previous)


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, SystemExit):
        text = f"exit status {exc.code!r}" if exc.code is not None else "no exit status"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _contained(exc: BaseException, watch: _SigintWatch | None) -> bool:
    """Whether ``exc`` (raised by plugin code) is recorded rather than re-raised."""
    if isinstance(exc, KeyboardInterrupt):
        return watch is not None and not watch.received
    return True


def call_impl(
    impl: pluggy.HookImpl, hook_name: str, kwargs: dict[str, Any], watch: _SigintWatch | None = None
) -> Any:
    """Call one hook implementation with the arguments it asks for, traced when enabled.

    Raises what the implementation raises; callers decide what is contained.
    """
    args = {k: kwargs[k] for k in impl.argnames if k in kwargs}
    if not tracing():
        return impl.function(**args)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in args.items())
    sys.stderr.write(f"routerd-trace: {hook_name} [{impl.plugin_name}] ({shown})\n")
    try:
        result = impl.function(**args)
    except BaseException as exc:
        sys.stderr.write(
            f"routerd-trace: {hook_name} [{impl.plugin_name}] raised {_describe(exc)}\n"
        )
        raise
    sys.stderr.write(f"routerd-trace: {hook_name} [{impl.plugin_name}] -> {_short(result)}\n")
    return result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


# -- loading -------------------------------------------------------------------------
def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "", ""
    return str(dist.metadata["Name"] or ""), str(dist.version or "")


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hookimpls of ``plugin`` for hooks routerd does not specify (and not optional)."""
    unknown = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                unknown.append(caller.name)
    return sorted(set(unknown))


def _hook_problems(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    problems = []
    known = sorted(n for n in dir(hookspecs) if n.startswith("routerd_"))
    for name in _unknown_hooks(pm, plugin):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"unknown hook {name}{hint}")
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                problems.append(f"{caller.name}: hook wrappers are not supported")
    return problems


def load_plugins(
    allow: set[str] | None = None,
    extra: dict[str, object] | None = None,
    *,
    entry_points: list[metadata.EntryPoint] | None = None,
) -> PluginSet:
    """Load every allowed entry point and collect daemon kinds.

    :param allow: entry-point names to load (default: ``ROUTERD_PLUGINS``).
    :param extra: name → plugin object registered as well (tests, built-ins).
    :param entry_points: the group as already read (default: read it).
    """
    if allow is None:
        allow = allowed_plugins()
    if entry_points is None:
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    pm = new_plugin_manager()
    records: list[PluginRecord] = []
    by_name: dict[str, list[metadata.EntryPoint]] = {}
    for ep in entry_points:
        if allow is None or ep.name in allow:
            by_name.setdefault(ep.name, []).append(ep)
    with _watch_sigint() as watch:
        for name in sorted(by_name):
            eps = sorted(by_name[name], key=lambda e: (_dist_of(e), e.value))
            if len(eps) > 1:
                records.extend(_shadowed(name, eps))
                continue
            records.append(_load_one(pm, eps[0], watch))
        for name, plugin in (extra or {}).items():
            record = PluginRecord(name=name, value="", distribution="", version="")
            records.append(record)
            _register(pm, record, plugin, watch)
        for record in records:
            plugin = pm.get_plugin(record.name)
            if plugin is not None:
                callers = pm.get_hookcallers(plugin) or []
                record.hooks = sorted(h.name for h in callers)
        kinds, owner, conflicts = _collect_kinds(pm, records, watch)
    return PluginSet(pm=pm, records=records, kinds=kinds, kind_owner=owner, conflicts=conflicts)


def _shadowed(name: str, eps: list[metadata.EntryPoint]) -> list[PluginRecord]:
    """Rows for an entry-point name several distributions provide: none of them loads."""
    labels = [" ".join(filter(None, _dist_of(ep))) or ep.value for ep in eps]
    rows = []
    for ep, label in zip(eps, labels, strict=True):
        others = ", ".join(other for other in labels if other != label) or "another copy"
        dist, version = _dist_of(ep)
        record = PluginRecord(name=name, value=ep.value, distribution=dist, version=version)
        record.error = (
            f"entry point name {name!r} is also provided by {others}; neither is loaded "
            "until one is uninstalled"
        )
        log.warning("plugin %s (%s): %s", name, label, record.error)
        rows.append(record)
    return rows


def _load_one(
    pm: pluggy.PluginManager, ep: metadata.EntryPoint, watch: _SigintWatch
) -> PluginRecord:
    dist, version = _dist_of(ep)
    record = PluginRecord(name=ep.name, value=ep.value, distribution=dist, version=version)
    try:
        plugin = ep.load()
    except BaseException as exc:  # one broken plugin must not stop the others
        if not _contained(exc, watch):
            raise
        record.add_error(_describe(exc))
        log.warning("plugin %s failed to load: %s", ep.name, record.error)
        return record
    _register(pm, record, plugin, watch)
    return record


def _register(
    pm: pluggy.PluginManager, record: PluginRecord, plugin: object, watch: _SigintWatch
) -> None:
    try:
        pm.register(plugin, name=record.name)
    except BaseException as exc:  # argument mismatches (PluginValidationError) and worse
        if not _contained(exc, watch):
            raise
        record.add_error(_describe(exc))
        log.warning("plugin %s failed to register: %s", record.name, record.error)
        return
    problems = _hook_problems(pm, plugin)
    if problems:
        # Like pluggy's check_pending, but for this plugin only: the others still load.
        pm.unregister(plugin)
        for problem in problems:
            record.add_error(problem)
        log.warning("plugin %s not loaded: %s", record.name, record.error)


@dataclass
class _Claim:
    kind: DaemonKind
    record: PluginRecord


def _collect_kinds(
    pm: pluggy.PluginManager, records: list[PluginRecord], watch: _SigintWatch
) -> tuple[dict[str, DaemonKind], dict[str, str], dict[str, str]]:
    from routerd.kinds import serve_kind_names

    by_name = {r.name: r for r in records if pm.get_plugin(r.name) is not None}
    claims: list[_Claim] = []
    reserved = serve_kind_names()
    for impl in pm.hook.routerd_register_daemon_kinds.get_hookimpls():
        record = by_name.get(impl.plugin_name)
        if record is None:
            continue
        own: list[_Claim] = []

        def register(dk: DaemonKind, _own: list[_Claim] = own, _rec: PluginRecord = record) -> None:
            if not isinstance(dk, DaemonKind):
                raise PluginError(f"register() takes a DaemonKind, got {type(dk).__name__}")
            if dk.kind in reserved:
                raise PluginError(f"resource kind {dk.kind!r} is routerd serve's own")
            if any(c.kind.name == dk.name or c.kind.kind == dk.kind for c in _own):
                raise PluginError(f"daemon kind {dk.name!r} ({dk.kind}) registered twice")
            if not dk.version:
                dk = replace(dk, version=_rec.version)  # the distribution's version
            _own.append(_Claim(dk, _rec))

        try:
            call_impl(impl, "routerd_register_daemon_kinds", {"register": register}, watch)
        except BaseException as exc:
            if not _contained(exc, watch):
                raise
            record.add_error(_describe(exc))
            log.warning("plugin %s failed to register daemon kinds: %s", record.name, record.error)
            continue  # a plugin that failed half-way serves nothing
        claims.extend(own)
    return _settle(claims)


def _settle(
    claims: list[_Claim],
) -> tuple[dict[str, DaemonKind], dict[str, str], dict[str, str]]:
    """Kinds claimed once are served; a kind claimed twice is nobody's, whatever the order."""
    conflicts: dict[str, str] = {}
    contested: set[int] = set()
    for attr, what in (("name", "daemon kind"), ("kind", "resource kind")):
        groups: dict[str, list[int]] = {}
        for i, claim in enumerate(claims):
            groups.setdefault(str(getattr(claim.kind, attr)), []).append(i)
        for key, members in sorted(groups.items()):
            if len(members) < 2:
                continue
            contested.update(members)
            holders = [claims[i] for i in members]
            names = sorted(f"{c.record.label} ({c.kind.name})" for c in holders)
            both = " and ".join(names) if len(names) == 2 else ", ".join(names)
            which = "one of them" if len(names) == 2 else "all but one of them"
            message = f"{what} {key!r} is registered by {both}; uninstall {which}"
            conflicts[key] = message
            for claim in holders:
                claim.record.add_error(message)
                log.warning("plugin %s: %s", claim.record.name, message)
    kinds: dict[str, DaemonKind] = {}
    owner: dict[str, str] = {}
    for i, claim in enumerate(claims):
        if i in contested:
            # Every kind involved is out of service, under both of its names.
            conflicts.setdefault(claim.kind.kind, conflicts.get(claim.kind.name, ""))
            conflicts.setdefault(claim.kind.name, conflicts[claim.kind.kind])
            continue
        kinds[claim.kind.name] = claim.kind
        owner[claim.kind.name] = claim.record.name
        claim.record.daemon_kinds.append(claim.kind.name)
    return kinds, owner, conflicts


# -- the plugin index: which plugins a daemon imports ---------------------------------
def fingerprint(entry_points: list[metadata.EntryPoint]) -> str:
    """What an index was built from: the group's entry points, their distributions and versions."""
    from routerd import PLUGIN_API
    from routerd import __version__

    rows = sorted(f"{ep.name}={ep.value} {' '.join(_dist_of(ep))}" for ep in entry_points)
    text = "\n".join([f"routerd {__version__} api {PLUGIN_API}", *rows])
    return hashlib.sha256(text.encode()).hexdigest()


def index_path(state_root: Path) -> Path:
    return state_root / INDEX_NAME


def write_index(
    plugins: PluginSet,
    state_root: Path,
    *,
    allow: set[str] | None = None,
    entry_points: list[metadata.EntryPoint] | None = None,
) -> bool:
    """Record which plugin serves each daemon kind (after a full load), for :func:`load_daemon_plugins`.

    ``allow``: what the load was limited to (``ROUTERD_PLUGINS``). A cache:
    written only into an existing state root, atomically but without
    ``fsync`` (a lost or torn index only costs one full load), and never an
    error (False when it could not be written).
    """
    if entry_points is None:
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    body = {
        "version": INDEX_VERSION,
        "fingerprint": fingerprint(entry_points),
        "allow": None if allow is None else sorted(allow),
        "kinds": dict(sorted(plugins.kind_owner.items())),
        "observers": sorted(plugins.observers()),
        "conflicts": sorted(plugins.conflicts),
    }
    data = json.dumps(body, indent=1).encode() + b"\n"
    path = index_path(state_root)
    try:
        if path.read_bytes() == data:
            return True
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        log.debug("plugin index %s not written: %s", path, exc)
        return False
    return True


def _indexed(
    daemon_kind: str,
    state_root: Path,
    allow: set[str] | None,
    entry_points: list[metadata.EntryPoint],
) -> tuple[set[str], str] | None:
    """(plugins to import, the kind's owner) from a current index, or None."""
    try:
        body = json.loads(index_path(state_root).read_bytes())
        if body["version"] != INDEX_VERSION or body["fingerprint"] != fingerprint(entry_points):
            return None
        covered = body["allow"]
        if covered is not None and (allow is None or not allow <= set(covered)):
            return None  # built from fewer plugins than this daemon may load
        owner = body["kinds"].get(daemon_kind)
        if not isinstance(owner, str) or daemon_kind in body["conflicts"]:
            return None
        need = {owner, *(str(name) for name in body["observers"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if allow is not None:
        need &= allow
    return (need, owner) if owner in need else None


def load_daemon_plugins(daemon_kind: str, state_root: Path) -> PluginSet:
    """The plugins ``routerd daemon DAEMON_KIND`` needs: its kind's and the observers'.

    Importing every installed plugin costs a cold start more than the rest
    of it (130 ms here with five plugins). The index in the state root,
    written by every full load, names the plugin that serves each kind and
    the plugins implementing a daemon hook (:data:`DAEMON_HOOKS`, called
    for every event and phase change); only those are imported. Whether a
    kind is claimed twice is decided by the full loads (serve, validate,
    ``routerctl plugins list``, a daemon's fallback): a kind in conflict
    is not taken from the index. Everything is loaded instead (and the
    index rewritten) when there is no usable index: none yet, a plugin
    installed, removed or upgraded since (the fingerprint of the entry
    points and their distributions' versions), ``ROUTERD_PLUGINS`` wider
    than what it covers, or the plugin it names no longer serves the kind.
    """
    allow = allowed_plugins()
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    hit = _indexed(daemon_kind, state_root, allow, entry_points)
    if hit is not None:
        need, owner = hit
        plugins = load_plugins(allow=need, entry_points=entry_points)
        if plugins.kind_owner.get(daemon_kind) == owner:
            return plugins
        log.info("plugin index %s is stale; loading every plugin", index_path(state_root))
    plugins = load_plugins(allow=allow, entry_points=entry_points)
    with contextlib.suppress(OSError):
        state_root.mkdir(parents=True, exist_ok=True)  # the daemon's anyway, a moment later
    write_index(plugins, state_root, allow=allow, entry_points=entry_points)
    return plugins


def call_each(
    pm: pluggy.PluginManager, hook_name: str, **kwargs: Any
) -> list[tuple[str, Any, str | None]]:
    """Call every implementation of a hook on its own: ``[(plugin, result, error)]``.

    A failing implementation (``SystemExit`` included) is logged and
    reported in ``error``; it never stops the others or the caller.
    """
    out: list[tuple[str, Any, str | None]] = []
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        try:
            out.append((impl.plugin_name, call_impl(impl, hook_name, kwargs), None))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
            out.append((impl.plugin_name, None, _describe(exc)))
    return out


def safe_call(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call an observer hook; a failing implementation is logged, not raised."""
    call_each(pm, hook_name, **kwargs)
