"""The ``routerd serve`` process: supervisor, followers, store and control API."""

from __future__ import annotations

import logging
import os
from pathlib import Path
import signal
import threading
import time
from typing import Any

from routerd import __version__
from routerd.client import UnixClient
from routerd.config import RouterConfig
from routerd.config import load_config
from routerd.daemon.api import WaiterSlots
from routerd.daemon.server import UnixServer
from routerd.errors import ClientError
from routerd.errors import CommandRejected
from routerd.errors import ConfigError
from routerd.kinds import serve_kinds
from routerd.permissions import RUNTIME_ROOT_MODE
from routerd.permissions import STATE_DIR_MODE
from routerd.permissions import ensure_dir
from routerd.permissions import no_world_access
from routerd.permissions import private_file
from routerd.plugins import PluginSet
from routerd.serve.api import API_VERSION
from routerd.serve.api import create_control_app
from routerd.serve.forkserver import ForkServerClient
from routerd.serve.ingest import Follower
from routerd.serve.rules import SOURCE_PREFIX as RULES_SOURCE
from routerd.serve.rules import RulesRunner
from routerd.serve.store import EventStore
from routerd.serve.supervisor import Child
from routerd.serve.supervisor import Supervisor
from routerd.serve.supervisor import sd_notify
from routerd.timefmt import rfc3339

log = logging.getLogger("routerd.serve")
STOP_DAEMONS_WITHIN = 5.0
#: Threads per control socket. Each keeps its own SQLite connection (with its
#: page cache), and the clients of a router are a handful of local tools.
API_THREADS = 16
RECENT_EVENTS = 20
#: How long a reload waits for a removed daemon's follower to store its last events.
FOLLOWER_FINISH = 3.0
UNKNOWN = "Unknown"


class RouterdServe:
    """Everything ``routerd serve`` runs."""

    def __init__(
        self,
        plugins: PluginSet,
        config_path: Path,
        runtime_dir: Path,
        state_dir: Path,
        *,
        log_dir: Path | None = None,
        backoff_base: float = 1.0,
        stable_after: float = 30.0,
        fork_server: bool = True,
        log_level: str = "info",
    ) -> None:
        self.plugins = plugins
        self.config_path = config_path
        self.runtime_dir = runtime_dir
        self.state_dir = state_dir
        self.started_at = time.time()
        self.generation = 0
        self.config: RouterConfig | None = None
        # The database holds every event: private before SQLite creates it
        # (its -wal and -shm files take the database file's mode).
        ensure_dir(state_dir, STATE_DIR_MODE)
        db_path = state_dir / "routerd.db"
        private_file(db_path)
        for companion in ("-wal", "-shm"):
            no_world_access(db_path.with_name(db_path.name + companion))
        self.store = EventStore(db_path)
        self.waiters = WaiterSlots(API_THREADS - 4)
        self.followers: dict[str, Follower] = {}
        # EventRules and DerivedEvents: run here, not by a daemon (docs/decisions.md).
        self.rules = RulesRunner(self.store, stale=self._stale_of)
        # Daemons are forked from a pre-loaded process (serve/forkserver.py).
        self.forks = ForkServerClient(log_level) if fork_server else None
        self.supervisor = Supervisor(
            config_path,
            runtime_dir,
            state_dir,
            log_dir=log_dir,
            backoff_base=backoff_base,
            stable_after=stable_after,
            on_started=self._follow,
            forks=self.forks,
            exec_plugins=self._exec_plugins,
        )
        self._reload_lock = threading.Lock()
        self._stopping = threading.Event()
        self.servers: list[UnixServer] = []

    # -- lifecycle -------------------------------------------------------------
    def start(self, config: RouterConfig | None = None) -> None:
        """Start the store and the daemons (validates the file unless given ``config``)."""
        if config is None:
            config = load_config(self.config_path, self.plugins)  # raises ConfigError
        ensure_dir(self.runtime_dir, RUNTIME_ROOT_MODE)
        self.store.start()
        self._apply(config)
        self.rules.start()
        self.supervisor.start()

    def _exec_plugins(self, daemon_kind: str) -> set[str] | None:
        """The plugins a daemon of ``daemon_kind`` started by exec needs: its own and observers.

        serve loaded every plugin (and refused kinds claimed twice), so the
        daemon need not import the others.
        """
        return self.plugins.daemon_plugins(daemon_kind)

    def _follow(self, child: Child) -> None:
        follower = self.followers.get(child.source)
        if follower is not None and follower.is_alive():
            if not follower.finish_when_gone:
                return  # the same follower carries on after a daemon restart
            # Removed and added back before the old follower finished.
            follower.stop()
            follower.join(FOLLOWER_FINISH)
        follower = Follower(child.source, str(child.socket_path), child.res.daemon_kind, self.store)
        self.followers[child.source] = follower
        follower.start()

    def _apply(self, config: RouterConfig) -> dict[str, list[str]]:
        self.rules.configure(config)  # serve's own kinds; the daemons' below
        own = serve_kinds()
        before = {r.ref: r.spec for r in self.config.resources} if self.config else {}
        old = {r.ref: r for r in self.config.resources if r.kind not in own} if self.config else {}
        new = {r.ref: r for r in config.resources if r.kind not in own}
        result: dict[str, list[str]] = {
            "started": [],
            "stopped": [],
            "reloaded": [],
            "restarted": [],
            "unchanged": [],
        }
        for ref in sorted(set(old) - set(new)):
            res = old[ref]
            follower = self.followers.get(f"{res.daemon_kind}/{res.name}")
            if follower is not None:
                follower.finish_when_gone = True  # ingest its last events, store no status
            self.supervisor.remove(ref)
            if follower is not None:
                follower.join(FOLLOWER_FINISH)  # it ends once the daemon's socket is gone
                follower.stop()
            self.store.delete_resource(res.kind, res.name)
            result["stopped"].append(ref)
        self.config = config
        self.generation += 1
        for ref in sorted(new):
            res = new[ref]
            if ref not in old:
                self.supervisor.add(res)
                result["started"].append(ref)
            elif old[ref].spec == res.spec:
                result["unchanged"].append(ref)
            else:
                result[self._reload_child(res)].append(ref)
        after = {r.ref: r.spec for r in config.resources if r.kind in own}
        for ref in sorted(before.keys() | after.keys()):
            if ref.partition("/")[0] in own:
                was, now = before.get(ref), after.get(ref)
                what = "stopped" if now is None else "started" if was is None else "reloaded"
                result["unchanged" if was == now else what].append(ref)
        return result

    def _reload_child(self, res: Any) -> str:
        child = self.supervisor.children.get(res.ref)
        if child is None or child.state != "Running":
            self.supervisor.replace(res)
            return "restarted"
        failure = ""
        try:
            resp = UnixClient(str(child.socket_path), timeout=35).post("/v1/commands/reload")
        except ClientError as exc:
            resp, failure = None, str(exc)
        if resp is not None and resp.status == 200:
            child.res = res
            return "reloaded"
        why = resp.error_text() if resp is not None else failure
        log.info("%s could not reload live (%s); restarting it", res.ref, why)
        self.supervisor.replace(res)  # the kind cannot apply this change live
        return "restarted"

    def reload(self) -> dict[str, Any]:
        with self._reload_lock:
            try:
                config = load_config(self.config_path, self.plugins)
            except ConfigError as exc:
                raise CommandRejected(
                    "the config does not validate; nothing was changed: "
                    + "; ".join(str(p) for p in exc.problems)
                ) from None
            result = self._apply(config)
        log.info("reloaded config generation %d: %s", self.generation, result)
        return {
            "apiVersion": API_VERSION,
            "kind": "ReloadResult",
            "generation": self.generation,
            **result,
        }

    def serve(self, install_signals: bool = True) -> int:
        # Refuse a bad config before any socket exists: nothing is left behind.
        config = load_config(self.config_path, self.plugins)
        main = UnixServer(
            create_control_app(self),
            self.runtime_dir / "routerd.sock",
            perms="660",
            threads=API_THREADS,
            root=self.runtime_dir,
        )
        status = UnixServer(
            create_control_app(self, read_only=True),
            self.runtime_dir / "routerd-status.sock",
            perms="666",
            threads=API_THREADS,
            group=None,
            root=self.runtime_dir,
        )
        self.servers = [main, status]
        if self.forks is not None:
            self.forks.start()  # it imports everything while serve opens its store
        try:
            self.start(config)
        except BaseException:
            if self.forks is not None:
                self.forks.close()
            raise
        if install_signals:
            signal.signal(
                signal.SIGTERM, lambda *_: threading.Thread(target=self.stop, daemon=True).start()
            )
            signal.signal(
                signal.SIGINT, lambda *_: threading.Thread(target=self.stop, daemon=True).start()
            )
            signal.signal(
                signal.SIGHUP,
                lambda *_: threading.Thread(target=self._reload_signal, daemon=True).start(),
            )
        thread = threading.Thread(target=status.run, name="status-socket", daemon=True)
        thread.start()
        sd_notify(
            f"READY=1\nSTATUS=serving {len(self.supervisor.children)} daemons\nMAINPID={os.getpid()}"
        )
        log.info("routerd %s serving %s", __version__, main.path)
        main.run()
        thread.join(5)
        return 0

    def _reload_signal(self) -> None:
        try:
            self.reload()
        except CommandRejected as exc:
            log.error("reload refused: %s", exc.message)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        sd_notify("STOPPING=1")
        for follower in self.followers.values():
            follower.finish_when_gone = True  # store the daemons' last events, quietly
        self.supervisor.stop_all(STOP_DAEMONS_WITHIN)
        deadline = time.monotonic() + 1.0  # they end once the daemons' sockets are gone
        for follower in self.followers.values():
            follower.join(max(0.0, deadline - time.monotonic()))
            follower.stop()
        self.rules.stop()
        self.rules.join(STOP_DAEMONS_WITHIN)
        for server in self.servers:
            server.graceful_stop()
        self.store.close()

    # -- API backend -----------------------------------------------------------
    def _stale(self, source: str, child: dict[str, Any] | None) -> dict[str, Any] | None:
        """Why a resource's stored status is not current (``None`` when it is).

        A status is current while its daemon runs, its follower reaches it and
        the store commits what the follower reads; otherwise the last one
        stored is shown as ``lastKnown``, never as the current phase.
        """
        health = self.store.health()
        if health["state"] != "Ok":
            return {
                "reason": "PersistenceDegraded",
                "message": f"the store cannot commit: {health['lastError']}",
                "since": health["degradedSince"],
            }
        if source.startswith(RULES_SOURCE):  # serve's own: current while its engine runs
            if self.rules.is_alive():
                return None
            return {"reason": "EngineStopped", "message": "the rules engine stopped", "since": None}
        if child is None or child["state"] != "Running":
            state = child["state"] if child else "Removed"
            return {
                "reason": "DaemonNotRunning",
                "message": f"the daemon is {state}",
                "since": None,
            }
        follower = self.followers.get(source)
        why = follower.stale() if follower is not None else ("NotFollowed", "not followed", None)
        if why is None:
            return None
        reason, message, since = why
        return {
            "reason": reason,
            "message": message,
            "since": rfc3339(since) if since is not None else None,
        }

    def _configured(self, key: str) -> bool:
        config = self.config
        return config is not None and any(r.ref == key for r in config.resources)

    def _stale_of(self, key: str) -> dict[str, Any] | None:
        """The staleness the rules engine gives DerivedEvents reading ``<Kind>/<name>``.

        A store that cannot commit is left out: the engine's own writes wait for it.
        """
        config = self.config
        res = next((r for r in config.resources if r.ref == key), None) if config else None
        if res is None:
            return None
        child = self.supervisor.children.get(key)
        why = self._stale(f"{res.daemon_kind}/{res.name}", child.to_dict() if child else None)
        return None if why is None or why["reason"] == "PersistenceDegraded" else why

    def _shown(
        self, source: str, row: dict[str, Any] | None, child: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Phase, since, conditions and observed to serve, current or marked stale."""
        status = row["status"] if row else {}
        stale = self._stale(source, child)
        if stale is None and row is not None:
            return {
                "phase": row["phase"],
                "since": row["since"],
                "conditions": status.get("conditions", []),
                "observed": status.get("observed", {}),
                "stale": None,
            }
        if stale is None:
            stale = {"reason": "NotRefreshed", "message": "no status stored yet", "since": None}
        if stale["since"] is None and row is not None:
            stale["since"] = row["updated"]
        condition = {
            "type": "StatusCurrent",
            "status": "False",
            "reason": stale["reason"],
            "message": stale["message"],
            "lastTransitionTime": stale["since"],
        }
        last_known = None
        if row is not None:
            last_known = {
                "phase": row["phase"],
                "since": row["since"],
                "conditions": status.get("conditions", []),
                "observed": status.get("observed", {}),
                "refreshedAt": row["updated"],
            }
        return {
            "phase": UNKNOWN,
            "since": stale["since"],
            "conditions": [condition],
            "observed": {},
            "stale": stale,
            "lastKnown": last_known,
        }

    def _store_status(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        health = self.store.health()
        degraded = health["state"] != "Ok"
        store = {
            "path": str(self.store.path),
            "headId": str(self.store.head_id),
            "inserted": self.store.inserted,
            "duplicatesDropped": self.store.duplicates,
            "writeErrors": self.store.write_errors,
            **health,
        }
        # The daemon registry (children.json, for adoption after a crash) is
        # the other file serve writes; it is retried with backoff too.
        sup = self.supervisor
        failing = [f"the store cannot commit: {health['lastError']}"] if degraded else []
        if sup.registry_error is not None:
            failing.append(f"cannot write {sup.registry}: {sup.registry_error}")
        since = health["stateSince"]
        if sup.registry_changed_at:
            since = max(since, rfc3339(sup.registry_changed_at))  # RFC 3339 UTC sorts as text
        condition = {
            "type": "PersistenceDegraded",
            "status": "True" if failing else "False",
            "reason": ("CommitFailing" if degraded else "RegistryWriteFailing")
            if failing
            else "Committing",
            "message": "; ".join(failing),
            "lastTransitionTime": since,
        }
        return store, [condition]

    def router_status(self) -> dict[str, Any]:
        phases = {r["kind"] + "/" + r["name"]: r for r in self.store.resources()}
        daemons = []
        for d in self.supervisor.snapshot():
            key = f"{d['resource']['kind']}/{d['resource']['name']}"
            shown = self._shown(f"{d['daemonKind']}/{d['resource']['name']}", phases.get(key), d)
            d["phase"] = shown["phase"]
            d["since"] = shown["since"]
            d["stale"] = shown["stale"]
            daemons.append(d)
        store, conditions = self._store_status()
        return {
            "apiVersion": API_VERSION,
            "kind": "RouterStatus",
            "version": __version__,
            "pid": os.getpid(),
            "startedAt": rfc3339(self.started_at),
            "uptimeSeconds": round(time.time() - self.started_at, 3),
            "config": {"path": str(self.config_path), "generation": self.generation},
            "conditions": conditions,
            "daemons": daemons,
            "plugins": [r.to_dict() for r in self.plugins.records],
            "store": store,
            "forkServer": self._fork_server_status(),
            "rules": self.rules.snapshot(),
            "ingestion": {
                f.source: {
                    "batches": f.batches,
                    "resets": f.resets,
                    "lastError": f.last_error,
                    "statusRefreshedAt": rfc3339(f.status_at) if f.status_at else None,
                    "heldStatuses": f.held_statuses,
                    "malformedEvents": f.malformed_events,
                }
                for f in self.followers.values()
            },
        }

    def _fork_server_status(self) -> dict[str, Any] | None:
        forks = self.forks
        if forks is None:
            return None
        return {
            "pid": forks.pid,
            "ready": forks.ready,
            "kinds": sorted(forks.kinds),
            "refused": forks.refused,
            "starts": forks.starts,
            "restartsForChangedCode": forks.restarts_for_stale,
            "lastError": forks.last_error,
        }

    def _item(
        self, res: Any, row: dict[str, Any] | None, child: dict[str, Any] | None
    ) -> dict[str, Any]:
        shown = self._shown(f"{res.daemon_kind}/{res.name}", row, child)
        dk = self.plugins.kinds.get(res.daemon_kind)  # the kind says what its key facts are
        return {
            "resource": {"apiVersion": res.api_version, "kind": res.kind, "name": res.name},
            "daemonKind": res.daemon_kind,
            "spec": res.spec.to_wire(),
            **shown,
            "facts": dk.key_facts(shown.get("observed") or {}) if dk is not None else "",
            "daemon": child,
        }

    def resource_items(self) -> list[dict[str, Any]]:
        assert self.config is not None
        rows = {r["kind"] + "/" + r["name"]: r for r in self.store.resources()}
        children = {
            f"{c['resource']['kind']}/{c['resource']['name']}": c
            for c in self.supervisor.snapshot()
        }
        return [
            self._item(res, rows.get(res.ref), children.get(res.ref))
            for res in self.config.resources
        ]

    def resource_detail(self, kind: str, name: str) -> dict[str, Any] | None:
        assert self.config is not None
        res = next((r for r in self.config.resources if r.kind == kind and r.name == name), None)
        if res is None:
            return None
        child = self.supervisor.children.get(res.ref)
        item = self._item(res, self.store.resource(kind, name), child.to_dict() if child else None)
        item["apiVersion"] = API_VERSION
        item["kind"] = "Resource"
        item["recentEvents"] = self.store.query(resource=(kind, name), limit=RECENT_EVENTS)
        return item

    def forward_command(
        self, kind: str, name: str, command: str, args: dict[str, Any]
    ) -> tuple[int, Any]:
        key = f"{kind}/{name}"
        child = self.supervisor.children.get(key)
        if child is None and kind in serve_kinds() and self._configured(key):
            # serve's own kinds have no daemon to forward to, and no commands of their own.
            return 404, {
                "title": "Unknown command",
                "description": f"{key} takes no commands ({command!r} is not one): {kind} runs "
                "inside routerd serve, with no daemon; a changed spec is applied by reload",
            }
        if child is None:
            return 404, {"title": "Unknown resource", "description": f"no resource {key}"}
        if command == "start":
            child = self.supervisor.start_child(key)
            return 200, {
                "apiVersion": "daemon.routerd.net/v1alpha1",
                "kind": "CommandResult",
                "command": "start",
                "accepted": True,
                "message": f"{key} is {child.state}",
                "result": child.to_dict(),
            }
        if child.state == "Foreign":
            return 409, {
                "title": "Not managed",
                "description": f"{child.socket_path} is served by a process routerd did not start",
            }
        if command == "stop":
            child.expected_exit = True
        try:
            resp = UnixClient(str(child.socket_path), timeout=35).post(
                f"/v1/commands/{command}", args or None
            )
        except ClientError as exc:
            return 503, {
                "title": "Daemon unavailable",
                "description": f"{key} ({child.state}): {exc}",
            }
        try:
            body = resp.json()
        except ValueError:
            body = {
                "title": "Bad daemon answer",
                "description": resp.body[:200].decode("utf-8", "replace"),
            }
        return resp.status, body
