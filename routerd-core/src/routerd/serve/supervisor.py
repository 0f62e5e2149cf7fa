"""One daemon process per resource, restarted with backoff when it crashes.

A daemon that exits 0 was stopped on purpose (a ``stop`` command or a
signal from an operator) and stays stopped until asked to start. A daemon
killed by a signal or exiting non-zero is restarted after
``min(cap, base * 2**failures)`` seconds; the failure count resets once it has
run ``stable_after`` seconds. A socket already answered by a process routerd
did not start is reported (``Foreign``) and left alone.

Daemons are forked by the fork server (:mod:`routerd.serve.forkserver`)
when it serves their kind, and started as ``routerd daemon`` processes (the
exec path) otherwise; supervision is the same for both.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
import json
import logging
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO
from typing import Any
from typing import Protocol

from routerd.config import ResourceConfig
from routerd.daemon.statefile import atomic_write
from routerd.serve.forkserver import ForkedProcess
from routerd.serve.forkserver import ForkServerClient
from routerd.serve.forkserver import ForkUnavailable
from routerd.serve.forkserver import daemon_title
from routerd.serve.forkserver import process_starttime

log = logging.getLogger("routerd.supervisor")
#: children.json the disk refused is written again after 1 s, doubling up to 10 s.
REGISTRY_RETRY_FIRST = 1.0
REGISTRY_RETRY_CAP = 10.0


def socket_answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


class Process(Protocol):
    """What supervision needs of a daemon process: ``subprocess.Popen`` or :class:`ForkedProcess`."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


@dataclass
class Child:
    """What the supervisor knows of one resource's daemon."""

    res: ResourceConfig
    socket_path: Path
    state: str = "Starting"  # Starting | Running | Backoff | Stopped | Foreign | Removed
    proc: Process | None = None
    restarts: int = 0
    failures: int = 0
    started_at: float = 0.0  # monotonic
    next_start: float | None = None
    last_exit: int | None = None
    wanted: bool = True
    expected_exit: bool = False
    adopted_pid: int | None = None  # a daemon a previous routerd started
    adopted_starttime: int | None = None
    how: str = ""  # "fork" or "exec"
    #: For the registry: ``starttime`` and ``title`` (forked) or ``argv`` (exec).
    identity: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return self.adopted_pid

    @property
    def key(self) -> str:
        return self.res.ref

    @property
    def source(self) -> str:
        return f"{self.res.daemon_kind}/{self.res.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": {"kind": self.res.kind, "name": self.res.name},
            "daemonKind": self.res.daemon_kind,
            "state": self.state,
            "pid": self.pid,
            "adopted": self.adopted_pid is not None,
            "startedBy": self.how or None,
            "restarts": self.restarts,
            "lastExit": self.last_exit,
            "socket": str(self.socket_path),
        }


class Supervisor:
    """Starts, watches and stops the daemons of a config."""

    def __init__(
        self,
        config_path: Path,
        runtime_dir: Path,
        state_dir: Path,
        *,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        stable_after: float = 30.0,
        log_dir: Path | None = None,
        on_started: Callable[[Child], None] | None = None,
        forks: ForkServerClient | None = None,
        exec_plugins: Callable[[str], set[str] | None] | None = None,
    ) -> None:
        """``forks``: the fork server to start daemons from (None: always exec).
        ``exec_plugins``: the plugins a daemon of a kind started by exec needs
        (its own and the observers of every daemon), so it imports no other."""
        self.config_path = config_path
        self.runtime_dir = runtime_dir
        self.state_dir = state_dir
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stable_after = stable_after
        self.log_dir = log_dir
        self.on_started = on_started
        self.forks = forks
        self.exec_plugins = exec_plugins
        self._exec_reasons: dict[str, str] = {}  # kind -> why it is started by exec (logged once)
        self.children: dict[str, Child] = {}
        self.registry = state_dir / "serve" / "children.json"
        self._known = self._load_registry()
        self._lock = threading.RLock()
        # A registry the disk refused is written again at this monotonic time.
        self._registry_retry: float | None = None
        self._registry_backoff = REGISTRY_RETRY_FIRST
        self.registry_error: str | None = None
        self.registry_changed_at = 0.0  # wall clock of the last failing/written change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- children ------------------------------------------------------------
    def _argv(self, res: ResourceConfig) -> list[str]:
        return [
            sys.executable,
            "-m",
            "routerd",
            "daemon",
            res.daemon_kind,
            "--config",
            str(self.config_path),
            "--resource",
            res.name,
            "--runtime-dir",
            str(self.runtime_dir),
            "--state-dir",
            str(self.state_dir),
        ]

    def add(self, res: ResourceConfig) -> Child:
        with self._lock:
            child = Child(res, self.runtime_dir / res.daemon_kind / f"{res.name}.sock")
            self.children[child.key] = child
            self._spawn(child)
            return child

    # -- the registry of spawned daemons, to adopt them after a routerd crash --
    def _load_registry(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.registry.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_registry(self) -> None:
        """Write the registry; when the disk refuses, retry from :meth:`tick` with backoff."""
        known = {c.key: self._registry_entry(c) for c in self.children.values() if c.pid}
        try:
            atomic_write(self.registry, json.dumps(known).encode())
        except OSError as exc:
            now = time.monotonic()
            if self._registry_retry is None:
                # One line per state change: the retries are silent.
                log.warning("cannot write %s (%s); retrying with backoff", self.registry, exc)
                self._registry_backoff = REGISTRY_RETRY_FIRST
                self.registry_changed_at = time.time()
            else:
                self._registry_backoff = min(self._registry_backoff * 2, REGISTRY_RETRY_CAP)
            self._registry_retry = now + self._registry_backoff
            self.registry_error = str(exc)
            return
        if self._registry_retry is not None:
            log.info("wrote %s again", self.registry)
            self.registry_changed_at = time.time()
        self._registry_retry = None
        self.registry_error = None

    def _registry_entry(self, child: Child) -> dict[str, Any]:
        """PID, start time and what ``/proc/PID/cmdline`` shows: enough to know it again."""
        return {**child.identity, "pid": child.pid}

    def _ours(self, child: Child) -> int | None:
        """The PID of a live daemon a previous routerd started for ``child``.

        The same PID, the same start time (a PID reused since is not it) and
        the command line it was started with, or, for a forked daemon, the
        title it gave itself.
        """
        entry = self._known.get(child.key)
        if not isinstance(entry, dict) or not isinstance(entry.get("pid"), int):
            return None
        pid = int(entry["pid"])
        starttime = entry.get("starttime")
        if isinstance(starttime, int) and process_starttime(pid) != starttime:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        title = entry.get("title")
        if title is not None:
            expected = daemon_title(child.res.daemon_kind, child.res.name)
            return pid if title == expected and cmdline[0] == expected.encode() else None
        argv = [a.encode() for a in self._argv(child.res)]
        return pid if cmdline[: len(argv)] == argv else None

    def _spawn(self, child: Child) -> None:
        if socket_answers(child.socket_path):
            pid = self._ours(child)
            if pid is not None:
                child.adopted_pid = pid
                child.adopted_starttime = process_starttime(pid)
                child.identity = {
                    k: v for k, v in self._known[child.key].items() if k in ("title", "argv")
                }
                child.identity["starttime"] = child.adopted_starttime
                child.state = "Running"
                child.started_at = time.monotonic()
                log.info("adopted %s (pid %d) started by a previous routerd", child.key, pid)
                self._save_registry()
                if self.on_started is not None:
                    self.on_started(child)
                return
            if child.state != "Foreign":
                log.warning(
                    "%s is served by a process routerd did not start; leaving it alone",
                    child.socket_path,
                )
            child.state = "Foreign"
            return
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{child.res.daemon_kind}-{child.res.name}.log", "ab")  # noqa: SIM115
        try:
            child.proc = self._launch(child, out)
        except OSError as exc:
            log.error("cannot start %s: %s", child.key, exc)
            self._schedule_restart(child, time.monotonic())
            return
        finally:
            if out is not None:
                out.close()
        child.state = "Starting"  # Running once its socket answers
        child.started_at = time.monotonic()
        child.next_start = None
        child.expected_exit = False
        child.adopted_pid = None
        child.adopted_starttime = None
        log.info("started %s (pid %d, %s)", child.key, child.proc.pid, child.how)
        self._save_registry()
        if self.on_started is not None:
            self.on_started(child)

    def _launch(self, child: Child, out: IO[bytes] | None) -> Process:
        """Fork the daemon from the fork server, or exec ``routerd daemon`` when it cannot."""
        res = child.res
        if self.forks is not None:
            try:
                proc = self.forks.spawn(
                    res.daemon_kind,
                    res.name,
                    self.config_path,
                    self.runtime_dir,
                    self.state_dir,
                    log_file=out,
                    # The spec of this config generation: the child need not read the file.
                    item=None
                    if res.raw_spec is None
                    else {"apiVersion": res.api_version, "spec": res.raw_spec},
                )
            except ForkUnavailable as exc:
                if self._exec_reasons.get(res.daemon_kind) != str(exc):
                    self._exec_reasons[res.daemon_kind] = str(exc)
                    log.warning("starting %s daemons by exec: %s", res.daemon_kind, exc)
            else:
                child.how = "fork"
                child.identity = {"starttime": proc.starttime, "title": proc.title}
                return proc
        env = None
        allow = self.exec_plugins(res.daemon_kind) if self.exec_plugins is not None else None
        if allow is not None:
            env = {**os.environ, "ROUTERD_PLUGINS": ",".join(sorted(allow))}
        argv = self._argv(res)
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
            env=env,
        )
        child.how = "exec"
        child.identity = {"starttime": process_starttime(popen.pid), "argv": argv}
        return popen

    def _schedule_restart(self, child: Child, now: float) -> None:
        delay = min(self.backoff_cap, self.backoff_base * (2**child.failures))
        child.failures += 1
        child.state = "Backoff"
        child.next_start = now + delay
        log.warning("%s will be restarted in %.1f s (failure %d)", child.key, delay, child.failures)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            self.tick()

    def tick(self) -> None:
        """One supervision pass: reap exits, restart what is due."""
        now = time.monotonic()
        with self._lock:
            if self._registry_retry is not None and now >= self._registry_retry:
                self._save_registry()
            for child in list(self.children.values()):
                proc = child.proc
                if isinstance(proc, ForkedProcess) and proc.orphaned and proc.returncode is None:
                    # The fork server went away: no exit status will come for
                    # this daemon; watch its PID as for an adopted one.
                    child.adopted_pid, child.adopted_starttime = proc.pid, proc.starttime
                    child.proc = None
                if child.adopted_pid is not None and not _pid_alive(
                    child.adopted_pid, child.adopted_starttime
                ):
                    # Not our child: no exit status. A stop we forwarded is a
                    # stop; anything else is a crash.
                    child.adopted_pid = None
                    child.adopted_starttime = None
                    child.last_exit = None
                    if child.expected_exit:
                        child.state = "Stopped"
                    else:
                        child.restarts += 1
                        self._schedule_restart(child, now)
                    continue
                proc = child.proc
                if proc is not None and proc.poll() is not None:
                    child.last_exit = proc.returncode
                    child.proc = None
                    ran = now - child.started_at
                    if ran >= self.stable_after:
                        child.failures = 0
                    if not child.wanted:
                        child.state = "Removed"
                        del self.children[child.key]
                    elif proc.returncode == 0 or child.expected_exit:
                        child.state = "Stopped"  # stopped on purpose: stays stopped
                        log.info("%s exited 0 (stopped); not restarting", child.key)
                    else:
                        child.restarts += 1
                        log.warning(
                            "%s exited with %s after %.1f s", child.key, proc.returncode, ran
                        )
                        self._schedule_restart(child, now)
                elif child.state == "Starting":
                    if proc is not None and socket_answers(child.socket_path):
                        child.state = "Running"
                elif (
                    child.state == "Backoff"
                    and child.next_start is not None
                    and now >= child.next_start
                ) or (child.state == "Foreign" and not socket_answers(child.socket_path)):
                    self._spawn(child)

    def start_child(self, key: str) -> Child:
        """Start a stopped daemon again (operator request)."""
        with self._lock:
            child = self.children[key]
            if child.state in ("Stopped", "Backoff"):
                child.failures = 0
                self._spawn(child)
            return child

    def stop_child(self, key: str, timeout: float = 5.0) -> None:
        with self._lock:
            child = self.children.get(key)
            if child is None:
                return
            child.expected_exit = True
            proc = child.proc
            adopted = child.adopted_pid
        if proc is not None:
            _terminate(proc, timeout)
        if adopted is not None:
            _terminate_pid(adopted, timeout)
            child.adopted_pid = None
            child.adopted_starttime = None
        with self._lock:
            child.state = "Stopped"
            if child.proc is proc:
                child.last_exit = proc.returncode if proc is not None else child.last_exit
                child.proc = None

    def remove(self, key: str, timeout: float = 5.0) -> None:
        self.stop_child(key, timeout)
        with self._lock:
            self.children.pop(key, None)

    def replace(self, res: ResourceConfig, timeout: float = 5.0) -> None:
        """Restart a daemon for a changed spec it cannot apply live."""
        self.stop_child(res.ref, timeout)
        with self._lock:
            child = self.children[res.ref]
            child.res = res
            child.failures = 0
            self._spawn(child)

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every daemon in parallel; SIGKILL what is still there at ``timeout``."""
        self._stop.set()
        with self._lock:
            procs: list[Process | int] = []
            for child in self.children.values():
                child.expected_exit = True
                if child.proc is not None:
                    procs.append(child.proc)
                elif child.adopted_pid is not None:
                    procs.append(child.adopted_pid)
        if procs:
            with ThreadPoolExecutor(len(procs)) as pool:
                list(
                    pool.map(
                        lambda p: (
                            _terminate_pid(p, timeout)
                            if isinstance(p, int)
                            else _terminate(p, timeout)
                        ),
                        procs,
                    )
                )
        if self._thread.is_alive():
            self._thread.join(2)
        if self.forks is not None:
            self.forks.close()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.to_dict() for c in self.children.values()]


def _terminate(proc: Process, timeout: float) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.error("pid %d did not stop within %.1f s; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait(5)
    except ProcessLookupError:
        pass


def _pid_alive(pid: int, starttime: int | None = None) -> bool:
    """Whether ``pid`` runs and is not a zombie (and, given ``starttime``, is still the same process)."""
    if starttime is not None and process_starttime(pid) != starttime:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def _terminate_pid(pid: int, timeout: float) -> None:
    """SIGTERM a process that is not our child, wait, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.02)
    log.error("pid %d did not stop within %.1f s; killing it", pid, timeout)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def sd_notify(message: str) -> bool:
    """Tell systemd (``Type=notify``) about our state; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(address)
            s.sendall(message.encode())
        except OSError:
            return False
    return True
