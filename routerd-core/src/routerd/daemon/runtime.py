"""One daemon process: lifecycle, engine thread, event log, API and signals.

``routerd daemon <kind> --config FILE --resource NAME`` (or a fork of the
fork server under ``routerd serve``) builds a :class:`DaemonRuntime` and
calls :meth:`DaemonRuntime.serve`. The main thread runs waitress; the engine
runs on its own thread; signal handlers hand off to threads so that neither
loop is blocked. The engine starts before falcon and waitress are even
imported: the socket is bound first (so a second instance is refused and
clients queue), the protocol's first packet goes out, then the API serves.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
import contextlib
from dataclasses import dataclass
import gc
import json
import logging
import os
from pathlib import Path
import signal
import threading
import time
from typing import TYPE_CHECKING
from typing import Any

from routerd.config import ResourceConfig
from routerd.config import SpecModel
from routerd.config import load_resource
from routerd.daemon.engine import CommandOutcome
from routerd.daemon.engine import DaemonEngine
from routerd.daemon.eventlog import EventLog
from routerd.daemon.listen import MAX_WAITERS
from routerd.daemon.listen import THREADS
from routerd.daemon.listen import bind_listener
from routerd.daemon.loop import EngineLoop
from routerd.daemon.persistence import CONDITION as PERSISTENCE_CONDITION
from routerd.daemon.persistence import PersistenceHealth
from routerd.daemon.persistence import StorageUnusable
from routerd.daemon.persistence import WriterFault
from routerd.daemon.persistence import describe
from routerd.daemon.resource import ResourceState
from routerd.daemon.statefile import StateFile
from routerd.daemon.waiters import WaiterSlots
from routerd.errors import CommandRejected
from routerd.errors import ConfigError
from routerd.errors import PluginError
from routerd.errors import UnknownCommand
from routerd.kinds import DaemonKind
from routerd.model import CommandResult
from routerd.model import Condition
from routerd.model import DaemonInfo
from routerd.model import DaemonStatus
from routerd.model import ResourceRef
from routerd.model import Scalar
from routerd.model import Severity
from routerd.plugins import PluginSet
from routerd.plugins import safe_call
from routerd.secrets import Scrubber
from routerd.topics import validate_topic

if TYPE_CHECKING:
    from routerd.daemon.server import UnixServer

log = logging.getLogger("routerd.daemon")
COMMAND_TIMEOUT = 30.0
STOP_ENGINE_TIMEOUT = 1.2
STUCK_AFTER = 10.0


@dataclass
class DaemonPaths:
    socket: Path
    state_dir: Path  # <state>/<daemon-kind>/<resource>
    runtime_root: Path | None = None  # routerd's own; its modes are fixed at start

    @classmethod
    def default(cls, dk: str, resource: str, runtime_dir: Path, state_root: Path) -> DaemonPaths:
        return cls(runtime_dir / dk / f"{resource}.sock", state_root / dk / resource, runtime_dir)


class _Context:
    """The :class:`routerd.daemon.engine.DaemonContext` handed to an engine."""

    def __init__(self, runtime: DaemonRuntime) -> None:
        self._runtime = runtime
        self.resource = runtime.ref
        self.spec: SpecModel = runtime.resource.spec
        self.loop = runtime.loop
        self.status = runtime.resource_state
        self.state = runtime.statefile
        self.wall = runtime.wall
        self.log = logging.getLogger(f"routerd.{runtime.kind.name}.{runtime.resource.name}")

    def emit(
        self,
        topic: str,
        *,
        reason: str,
        message: str = "",
        severity: Severity = "info",
        **attributes: Scalar,
    ) -> None:
        kind = self._runtime.kind
        if not kind.emits(topic):
            # routerd.daemon.* / routerd.resource.* are the runtime's word on the
            # daemon; another prefix would be another plugin's (docs/plugin-hooks.md).
            raise PluginError(
                f"{kind.name}: an engine emits under {kind.topics}.* or outside routerd.*, "
                f"not {topic!r}"
            )
        self._runtime.emit(topic, reason=reason, message=message, severity=severity, **attributes)

    def add_secret(self, value: str) -> None:
        self._runtime.scrubber.add([value])


class DaemonRuntime:
    """Everything one daemon process runs."""

    def __init__(
        self,
        plugins: PluginSet,
        kind: DaemonKind,
        config_path: Path,
        resource: ResourceConfig,
        paths: DaemonPaths,
        *,
        wall: Any = time.time,
        threads: int = THREADS,
        max_waiters: int = MAX_WAITERS,
    ) -> None:
        self.plugins = plugins
        self.kind = kind
        self.config_path = config_path
        self.resource = resource
        self.paths = paths
        self.wall = wall
        self.threads = threads
        self.ref = ResourceRef(resource.api_version, resource.kind, resource.name)
        self.started_at = wall()
        self.phase = "Starting"
        self._stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self.waiters = WaiterSlots(max(1, min(max_waiters, threads - 4)))
        # Every writer reports disk trouble here; it becomes a condition.
        self.persistence = PersistenceHealth(wall=wall)
        # The cursor file's fsync off the emitters' path (docs/decisions.md, "Persistence faults").
        self.eventlog = EventLog(
            paths.state_dir / "events.jsonl",
            clock=wall,
            health=self.persistence,
            background_marks=True,
        )
        self.statefile = StateFile(paths.state_dir / "state.json", health=self.persistence)
        self.loop = EngineLoop()
        # Every way out of the daemon (events, status, command answers, logs)
        # passes through this, so no secret of the spec leaves it (§9).
        self.scrubber = Scrubber.for_spec(resource.spec)
        self.resource_state = ResourceState(
            self.ref, wall, on_phase=self._phase_changed, scrub=self.scrubber
        )
        self.engine: DaemonEngine | None = None
        self.command_errors = 0  # exceptions (not CommandRejected) escaping engine commands
        self._ctx: _Context | None = None
        self.server: UnixServer | None = None
        self._stopped = threading.Event()
        # (resource generation, daemon phase, runtime block, JSON body) of the last status built.
        self._status_cache: tuple[int, str, dict[str, Any], bytes] | None = None

    # -- events and phases ---------------------------------------------------
    def emit(
        self,
        topic: str,
        *,
        reason: str,
        message: str = "",
        severity: Severity = "info",
        **attributes: Scalar,
    ) -> None:
        validate_topic(topic)
        attrs: dict[str, Scalar] = {
            "resource.kind": self.ref.kind,
            "resource.name": self.ref.name,
            "daemon.kind": self.kind.name,
        }
        attrs.update(attributes)
        scrub = self.scrubber
        event = self.eventlog.append(
            topic,
            severity=severity,
            reason=scrub.text(reason),
            message=scrub.text(message),
            attributes=scrub.value(attrs),
        )
        safe_call(self.plugins.pm, "routerd_event_emitted", event=event)

    def _phase_changed(
        self, old: str, new: str, reason: str, message: str, conditions: list[Condition]
    ) -> None:
        severity: Severity = "warning" if new in ("Error", "Unhealthy") else "info"
        self.emit(
            "routerd.resource.phase.changed",
            reason=reason,
            message=message or f"{self.ref} {old} -> {new}",
            severity=severity,
            phase=new,
            previousPhase=old,
        )
        safe_call(
            self.plugins.pm,
            "routerd_phase_changed",
            resource=self.ref,
            old=old,
            new=new,
            conditions=conditions,
        )

    # -- lifecycle -----------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _persistence_changed(self, faults: list[WriterFault]) -> None:
        if not faults:
            self.resource_state.set_condition(
                PERSISTENCE_CONDITION, False, "Writable", "every write to disk succeeds"
            )
            return
        self.resource_state.set_condition(
            PERSISTENCE_CONDITION,
            True,
            faults[0].reason,
            "; ".join(f"{f.writer} {f.path}: {f.error}" for f in faults)
            + " (kept in memory, retrying)",
        )

    def open_storage(self) -> None:
        """Prepare the state directory and restore the event log.

        Raises :class:`StorageUnusable` (one line) when a path can never work.
        """
        state_dir = self.paths.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(state_dir, 0o750)
        except OSError as exc:
            raise StorageUnusable(
                f"state directory {state_dir} is not usable: {describe(exc)}"
            ) from None
        self.persistence.add_listener(self._persistence_changed)
        self._persistence_changed(self.persistence.faults())
        self.eventlog.restore()
        self.persistence.start()

    def start(self) -> None:
        """Restore the log, start the engine thread and the engine."""
        self.open_storage()
        self.emit(
            "routerd.daemon.lifecycle.started",
            reason="Started",
            message=f"{self.kind.name} daemon for {self.ref} started (pid {os.getpid()})",
            pid=os.getpid(),
            restoredEvents=self.eventlog.restored,
            tornLines=self.eventlog.torn_lines,
        )
        self.loop.start_thread(name=f"engine-{self.kind.name}")
        ctx = self._ctx = _Context(self)
        context: Any = ctx  # a DaemonContext (its emit is a method, the protocol's an attribute)

        def build_and_start() -> None:  # one trip to the engine thread, not two
            self.engine = self.kind.factory(context)
            self.engine.start(context)

        try:
            self.loop.submit(build_and_start).result(timeout=COMMAND_TIMEOUT)
        except Exception as exc:
            log.exception("engine failed to start")
            self.resource_state.set_condition("EngineStarted", False, "StartFailed", str(exc))
            self.resource_state.set_phase("Error", "StartFailed", f"engine failed to start: {exc}")

    def ready(self) -> None:
        gc.enable()  # `routerd daemon` starts without the cyclic collector (routerd.cli.main)
        self.phase = "Running"
        self.emit(
            "routerd.daemon.lifecycle.ready",
            reason="Ready",
            message=f"serving {self.paths.socket}",
        )

    def serve(self, install_signals: bool = True) -> int:
        """Start everything and serve until stopped; returns the exit code.

        Raises :class:`routerd.daemon.listen.SocketInUse` (another instance
        serves the socket) or ``OSError`` before the engine starts.
        """
        listener = bind_listener(self.paths.socket, root=self.paths.runtime_root)
        try:
            self.start()
        except BaseException:
            listener.close()
            with contextlib.suppress(OSError):
                if self.paths.socket.is_socket():
                    self.paths.socket.unlink()
            raise
        # The HTTP stack only now: the protocol is already under way.
        from routerd.daemon.api import create_app
        from routerd.daemon.server import UnixServer

        self.server = UnixServer(
            create_app(self),
            self.paths.socket,
            threads=self.threads,
            root=self.paths.runtime_root,
            sock=listener,
        )
        if install_signals:
            self._install_signals()
        self.ready()
        self.server.run()
        self._stopped.wait(5)
        return 0

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: Any) -> None:
            threading.Thread(
                target=self.stop, args=(signal.Signals(signum).name,), daemon=True
            ).start()

        def on_hup(_signum: int, _frame: Any) -> None:
            threading.Thread(target=self._reload_from_signal, daemon=True).start()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _reload_from_signal(self) -> None:
        try:
            self.run_command("reload", {"via": "SIGHUP"})
        except CommandRejected as exc:
            log.warning("reload on SIGHUP refused: %s", exc.message)

    def stop(self, why: str = "stop command") -> None:
        """Graceful stop (any thread but the server loop): teardown, events, close."""
        with self._stop_lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
        self.phase = "Stopping"
        self.emit(
            "routerd.daemon.lifecycle.stopping",
            reason="Stopping",
            message=f"stopping ({why})",
        )
        # How the engine's teardown went, in the last event: the daemon still
        # exits in time, but the conformance suite fails an engine that overran.
        teardown = "none"  # the engine never started
        if self.engine is not None and self.loop.is_alive():
            try:
                self.loop.submit(self.engine.stop).result(timeout=STOP_ENGINE_TIMEOUT)
                teardown = "complete"
            except FutureTimeout:
                teardown = "timeout"
                log.error("engine teardown did not finish in %.1f s", STOP_ENGINE_TIMEOUT)
            except Exception:
                teardown = "failed"
                log.exception("engine teardown failed")
        self.loop.stop()
        self.loop.join(0.5)
        clean = teardown in ("complete", "none")
        self.emit(
            "routerd.daemon.lifecycle.stopped",
            reason="Stopped",
            message="stopped" if clean else f"stopped (teardown {teardown})",
            teardown=teardown,
        )
        self.eventlog.close()
        if self.statefile.unsaved and not self.statefile.retry():
            log.error("%s: the last state could not be saved before the exit", self.statefile.path)
        self.persistence.stop()
        if self.server is not None:
            self.server.graceful_stop(wake_waiters=self.eventlog.close)
        self.loop.close()
        self._stopped.set()

    # -- API backend ---------------------------------------------------------
    def healthz(self) -> tuple[bool, str | None]:
        if self.stopping:
            return True, None
        if not self.loop.is_alive():
            return False, "engine thread is not running"
        age = time.monotonic() - self.loop.heartbeat
        if age > STUCK_AFTER:
            return False, f"engine thread stuck for {age:.1f} s"
        return True, None

    def _runtime_block(self) -> dict[str, Any]:
        return {
            "eventLog": self.eventlog.stats(),
            "longPolls": self.waiters.to_dict(),
            "engine": {
                "callbackErrors": self.loop.callback_errors,
                "commandErrors": self.command_errors,
                "lastError": self.scrubber.value(self.loop.last_error),
            },
            "persistence": self.persistence.to_dict(),
            "stateFile": {
                "unsaved": self.statefile.unsaved,
                "failedSaves": self.statefile.failed_saves,
                "corruptFiles": self.statefile.corrupt_files,
                "lastError": self.statefile.last_error,
            },
            "commands": list(self.kind.all_commands()),
        }

    def status(self, runtime: dict[str, Any] | None = None) -> DaemonStatus:
        return DaemonStatus(
            daemon=DaemonInfo(
                kind=self.kind.name,
                name=f"{self.kind.name}-{self.ref.name}",
                pid=os.getpid(),
                version=self.kind.version,
                started_at=self.started_at,
            ),
            phase=self.phase,
            resources=(self.resource_state.snapshot(),),
            runtime=self._runtime_block() if runtime is None else runtime,
        )

    def status_json(self) -> bytes:
        """The status as a JSON body, serialized again only when it changed.

        The resource part changes with ``ResourceState.generation``; the
        runtime block (counters, cheap to read) is compared as a whole. The
        generation is read before the snapshot, so a change racing with the
        build only makes the next request build again.
        """
        generation, phase = self.resource_state.generation, self.phase
        runtime = self._runtime_block()
        cached = self._status_cache
        if (
            cached is not None
            and cached[0] == generation
            and cached[1] == phase
            and cached[2] == runtime
        ):
            return cached[3]
        # The same encoding as falcon's default JSON media handler.
        body = json.dumps(self.status(runtime).to_dict(), ensure_ascii=False).encode()
        self._status_cache = (generation, phase, runtime, body)
        return body

    def run_command(self, name: str, args: dict[str, Any]) -> CommandResult:
        self.emit(
            "routerd.daemon.command.received",
            reason="CommandReceived",
            message=name,
            command=name,
        )
        try:
            outcome = self._dispatch(name, args)
        except CommandRejected as exc:
            exc.message = self.scrubber.text(exc.message)
            exc.args = (exc.message,)
            self.emit(
                "routerd.daemon.command.rejected",
                reason="CommandRejected",
                message=exc.message,
                severity="warning",
                command=name,
                status=exc.status,
            )
            raise
        self.emit(
            "routerd.daemon.command.executed",
            reason="CommandExecuted",
            message=outcome.message,
            command=name,
        )
        return CommandResult(
            name, True, self.scrubber.text(outcome.message), self.scrubber.value(outcome.result)
        )

    def _dispatch(self, name: str, args: dict[str, Any]) -> CommandOutcome:
        if name not in self.kind.all_commands():
            raise UnknownCommand(
                f"{self.kind.name} has no command {name!r} (commands: {', '.join(self.kind.all_commands())})"
            )
        if name == "stop":
            threading.Thread(target=self.stop, args=("stop command",), daemon=True).start()
            return CommandOutcome("stopping")
        if name == "reload":
            return self._reload()
        engine = self.engine
        if engine is None:
            raise CommandRejected("the engine did not start; see the Error condition")
        return self._on_engine(lambda: engine.command(name, args))

    def _on_engine(self, fn: Any) -> CommandOutcome:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        try:
            out = self.loop.submit(fn).result(timeout=COMMAND_TIMEOUT)
            if isinstance(out, Future):
                out = out.result(timeout=max(0.1, deadline - time.monotonic()))
        except FutureTimeout:
            raise CommandRejected(f"no result within {COMMAND_TIMEOUT:g} s") from None
        except CommandRejected:
            raise
        except Exception as exc:
            # An engine bug, not "not possible now": still a 409 for the client,
            # but counted in status so the conformance suite fails the engine.
            self.command_errors += 1
            log.exception("command failed")
            raise CommandRejected(f"{type(exc).__name__}: {exc}") from None
        if not isinstance(out, CommandOutcome):
            self.command_errors += 1
            raise CommandRejected(f"engine returned {type(out).__name__}, not a CommandOutcome")
        return out

    def _reload(self) -> CommandOutcome:
        try:
            new = load_resource(self.config_path, self.plugins, self.resource.name, self.kind)
        except ConfigError as exc:
            raise CommandRejected(
                f"{self.config_path} does not validate, keeping the running config: "
                + "; ".join(str(p) for p in exc.problems)
            ) from None
        if new.spec == self.resource.spec:
            return CommandOutcome("configuration unchanged")
        self.scrubber.add_spec(new.spec)  # before the engine can show any of it
        engine = self.engine
        if engine is None:
            raise CommandRejected(
                "the engine did not start; restart the daemon to apply a new config"
            )
        outcome = self._on_engine(lambda: CommandOutcome(engine.reload(new.spec)))
        self.resource = new
        if self._ctx is not None:
            self._ctx.spec = new.spec
        return outcome
