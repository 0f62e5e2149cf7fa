"""The fork server: daemons started by ``routerd serve`` are forks of one pre-loaded process.

A fresh ``routerd daemon`` interpreter spends most of its start importing
(routerd, its plugin, falcon, waitress, pydantic, pyroute2). ``routerd
serve`` therefore execs one ``routerd fork-server`` process that imports all
of it once, runs ``gc.collect(); gc.freeze()`` (so that the first full
collection in a child does not write to, and so unshare, every inherited
page) and then, single-threaded, forks one child per daemon on request. The
child is from there on exactly the daemon ``routerd daemon`` runs
(:func:`routerd.cli.run_daemon`): its own session, default signal handlers,
its own threads and pyroute2 handles, named ``routerd: <kind> <resource>`` in
``ps``.

Protocol, over a ``SOCK_SEQPACKET`` socketpair (one JSON object per packet):

======================================  =================================================
serve -> fork server                    fork server -> serve
======================================  =================================================
``{"op": "fork", "id", "kind",          ``{"op": "ready", "pid", "kinds", "refused"}``
"resource", "config", "runtimeDir",     once, when everything is imported and frozen;
"stateDir", "item"}``, the daemon's     ``{"op": "forked", "id", "pid", "starttime"}``;
log file descriptor attached            ``{"op": "failed", "id", "error"}``;
(``SCM_RIGHTS``) when it has one        ``{"op": "stale", "id", "changed"}``, then it exits;
                                        ``{"op": "exit", "pid", "status"}`` for each child
                                        it reaped (``Popen.returncode`` convention)
======================================  =================================================

``item`` (optional) is the resource's ``apiVersion`` and raw ``spec`` as
serve just read them from the config: the child validates them with its own
plugin code (:func:`routerd.config.resource_from_item`) instead of reading
and parsing the file again.

serve cannot ``waitpid`` the daemons (they are the fork server's children),
so their exit statuses come as ``exit`` reports. If the fork server goes
away, its daemons keep running (reparented) and serve watches them by PID,
as it does daemons it adopted after a crash of its own.

Stale code: at each fork the server compares the modification time and
size of every module file it has loaded with what they were when it loaded
them. When routerd, a plugin or a library was upgraded on disk it answers
``stale`` and exits, and serve starts a new fork server (which imports the
new code) and asks again: no daemon runs code older than what is installed.

A plugin that cannot be imported here (an import error, or an import that
starts a thread, after which forking is unsafe) is refused: serve starts the
daemons of its kinds with ``routerd daemon`` (the exec path) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
import contextlib
from dataclasses import dataclass
import gc
import importlib
from importlib import metadata
import json
import logging
import os
from pathlib import Path
import pkgutil
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import IO
from typing import Any

log = logging.getLogger("routerd.forkserver")

MAX_MESSAGE = 64 * 1024
#: How long serve waits for a new fork server to import everything.
READY_TIMEOUT = 60.0
#: How long serve waits for the answer to one fork request.
FORK_TIMEOUT = 10.0
#: A fork server that died is started again after this, doubling up to the cap.
RESTART_FIRST = 1.0
RESTART_CAP = 60.0
#: Modules the server imports besides routerd and the plugins: the stack a
#: daemon uses (DESIGN.md §1), pyroute2 through its lean path.
STACK = (
    "routerd.cli",
    "routerd.client",
    "routerd.config",
    "routerd.daemon.runtime",
    "routerd.daemon.api",
    "routerd.daemon.server",
    "routerd.netapply",
    "routerd.packetstats",
    "routerd.secrets",
    "routerd.permissions",
    "falcon",
    "falcon.testing",
    "waitress",
    "pydantic",
    "yaml",
    "json",
    "concurrent.futures.thread",
    "setproctitle",
    # What a child would import on its way to serving: waitress resolves its
    # (unused) TCP default through the idna codec; a config is read as utf-8-sig.
    "encodings.idna",
    "encodings.utf_8_sig",
)


class ForkUnavailable(RuntimeError):
    """The fork server cannot start this daemon now; use the exec path."""


# -- wire --------------------------------------------------------------------------
def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors attached to it; ``(None, [])`` at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a fork server message must be a JSON object")
    return message, list(fds)


def process_starttime(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (clock ticks after boot): with the PID, a process's identity."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def daemon_title(kind: str, resource: str) -> str:
    """What ``ps`` shows for a forked daemon (its argv area)."""
    return f"routerd: {kind} {resource}"


def daemon_comm(kind: str, resource: str) -> str:
    """The kernel's 15-byte process name (``top``, ``ps -o comm``, ``/proc/PID/comm``)."""
    return f"{kind} {resource}"[:15]


def _task_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


# -- the server process --------------------------------------------------------------
@dataclass
class _Loaded:
    path: str
    mtime_ns: int
    size: int


class ForkServer:
    """The single-threaded process that forks daemons (``routerd fork-server``)."""

    def __init__(self, control: socket.socket, log_level: str) -> None:
        self.control = control
        self.log_level = log_level
        self.plugins: Any = None
        self.refused: dict[str, str] = {}  # plugin entry-point name -> why it is not loaded here
        self.files: list[_Loaded] = []
        self.children: set[int] = set()
        self._wake_r, self._wake_w = os.pipe()
        self.selector = selectors.DefaultSelector()

    # -- start ----------------------------------------------------------------
    def preload(self, exclude: set[str]) -> None:
        """Import routerd, the stack and every plugin that can be forked; freeze the heap."""
        from routerd.leanimport import preload as preload_pyroute2
        from routerd.plugins import ENTRY_POINT_GROUP
        from routerd.plugins import allowed_plugins
        from routerd.plugins import load_plugins

        for name in STACK:
            importlib.import_module(name)
        preload_pyroute2()
        allow = allowed_plugins()
        names: set[str] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allow is not None and ep.name not in allow:
                continue
            if ep.name in exclude:
                self.refused[ep.name] = "refused by an earlier fork server"
                continue
            names.add(ep.name)
            if ep.name in self.refused:
                continue
            try:
                module = importlib.import_module(ep.module)
            except BaseException as exc:  # a plugin's import is contained, whatever it raises
                self.refused[ep.name] = f"import failed: {type(exc).__name__}: {exc}"
                continue
            if _task_count() > 1:
                # Forking now would copy a process whose other thread may hold
                # a lock: this server is unusable. Tell serve, which starts a
                # new one without this plugin (and runs its kinds by exec).
                raise _ThreadStarted(ep.name)
            self._import_package_of(module)
            if _task_count() > 1:
                raise _ThreadStarted(ep.name)
        self.plugins = load_plugins(allow=names - set(self.refused))
        if _task_count() > 1:
            raise _ThreadStarted(",".join(sorted(names - set(self.refused))))
        for record in self.plugins.records:
            if record.error and record.name not in self.refused:
                self.refused[record.name] = record.error
        self._record_files()
        gc.collect()
        gc.freeze()

    @staticmethod
    def _import_package_of(module: Any) -> None:
        """Import every module of the plugin's top-level package (engines are often imported lazily)."""
        top = module.__name__.partition(".")[0]
        package = sys.modules.get(top)
        path = getattr(package, "__path__", None)
        if path is None:
            return
        for info in pkgutil.walk_packages(path, prefix=f"{top}."):
            if info.name.rpartition(".")[2].startswith(("test", "_test")):
                continue
            with contextlib.suppress(Exception):  # the daemon reports it when it needs it
                importlib.import_module(info.name)

    def _record_files(self) -> None:
        seen: set[str] = set()
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not isinstance(path, str) or path in seen:
                continue
            seen.add(path)
            try:
                st = os.stat(path)
            except OSError:
                continue
            self.files.append(_Loaded(path, st.st_mtime_ns, st.st_size))

    def changed(self) -> str | None:
        """The first loaded module file that changed on disk since it was imported."""
        for f in self.files:
            try:
                st = os.stat(f.path)
            except OSError:
                return f.path
            if st.st_mtime_ns != f.mtime_ns or st.st_size != f.size:
                return f.path
        return None

    # -- serve ----------------------------------------------------------------
    def run(self) -> int:
        """Answer fork requests and report exits until serve closes the socket."""
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
        self.selector.register(self.control, selectors.EVENT_READ, "control")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "signal")
        kinds = sorted(self.plugins.kinds) if self.plugins is not None else []
        send(
            self.control,
            {"op": "ready", "pid": os.getpid(), "kinds": kinds, "refused": self.refused},
        )
        while True:
            for key, _ in self.selector.select():
                if key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 512):
                            pass
                    self._reap()
                    continue
                try:
                    message, fds = receive(self.control)
                except (OSError, ValueError) as exc:
                    log.error("fork server: bad request: %s", exc)
                    return 1
                if message is None:
                    return 0  # serve is gone (or closed us): the daemons live on
                if message.get("op") != "fork":
                    for fd in fds:
                        os.close(fd)
                elif not self._fork(message, fds):
                    return 0  # stale: serve starts a new fork server
            self._reap()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                send(self.control, {"op": "exit", "pid": pid, "status": code})

    def _fork(self, req: dict[str, Any], fds: list[int]) -> bool:
        rid = req.get("id")
        try:
            kind = str(req["kind"])
            if self.plugins is None or kind not in self.plugins.kinds:
                raise ForkUnavailable(f"daemon kind {kind} is not loaded in the fork server")
            changed = self.changed()
            if changed is not None:
                send(self.control, {"op": "stale", "id": rid, "changed": changed})
                return False
            for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
                stream.flush()
            pid = os.fork()
        except Exception as exc:
            for fd in fds:
                os.close(fd)
            send(self.control, {"op": "failed", "id": rid, "error": f"{exc}"})
            return True
        if pid == 0:
            self._child(req, fds[0] if fds else None)  # never returns
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        send(
            self.control,
            {"op": "forked", "id": rid, "pid": pid, "starttime": process_starttime(pid)},
        )
        return True

    def _child(self, req: dict[str, Any], log_fd: int | None) -> None:
        """In the forked child: become the daemon; never return into the server's loop."""
        code = 1
        try:
            self._become_daemon(req, log_fd)
            from routerd.cli import DaemonRefused
            from routerd.cli import run_daemon

            try:
                code = run_daemon(
                    str(req["kind"]),
                    str(req["config"]),
                    str(req["resource"]),
                    runtime_dir=str(req["runtimeDir"]),
                    state_dir=str(req["stateDir"]),
                    plugins=self.plugins,
                    item=req.get("item"),
                )
            except DaemonRefused as exc:
                print(f"Error: {exc}", file=sys.stderr)  # as `routerd daemon` says it
                code = 1
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _become_daemon(self, req: dict[str, Any], log_fd: int | None) -> None:
        """Leave the server's state behind: descriptors, signals, session, name."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.control.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if log_fd is not None:
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
        # Whatever else is open here was not meant for the daemon.
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.close(fd)
        os.setsid()  # as the exec path's start_new_session: serve's signals are not ours
        import setproctitle

        kind, resource = str(req["kind"]), str(req["resource"])
        setproctitle.setproctitle(daemon_title(kind, resource))
        setproctitle.setthreadtitle(daemon_comm(kind, resource))


class _ThreadStarted(Exception):
    """Importing this plugin started a thread: it cannot be forked."""

    def __init__(self, plugin: str) -> None:
        super().__init__(plugin)
        self.plugin = plugin


def server_main(control_fd: int, log_level: str, exclude: set[str]) -> int:
    """``routerd fork-server``: preload, then serve fork requests on ``control_fd``."""
    control = socket.socket(fileno=control_fd)
    # Ctrl-C in a terminal reaches the whole process group: serve handles it
    # and closes our socket; the server itself must not die with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    import setproctitle

    setproctitle.setproctitle("routerd: fork-server")
    # serve has reported every plugin that fails to load; here it would be said twice.
    logging.getLogger("routerd.plugins").setLevel(logging.ERROR)
    server = ForkServer(control, log_level)
    try:
        server.preload(exclude)
    except _ThreadStarted as exc:
        with contextlib.suppress(OSError):
            send(control, {"op": "exclude", "plugin": exc.plugin})
        return 0
    try:
        return server.run()
    except (BrokenPipeError, ConnectionResetError):
        return 0  # serve went away while we answered


# -- serve's side ----------------------------------------------------------------------
class ForkedProcess:
    """A daemon forked by the fork server, with the parts of ``subprocess.Popen`` serve uses."""

    def __init__(self, pid: int, starttime: int | None, title: str) -> None:
        self.pid = pid
        self.starttime = starttime
        self.title = title
        self.returncode: int | None = None
        self.orphaned = False  # the fork server went away: no exit status will come
        self._exited = threading.Event()

    def _exit(self, status: int) -> None:
        self.returncode = status
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._exited.wait(0.05):
            if self.orphaned and not _alive(self.pid, self.starttime):
                return -1  # status unknown (reaped by whoever adopted it)
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.title, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _alive(pid: int, starttime: int | None) -> bool:
    now = process_starttime(pid)
    if now is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and (starttime is None or now == starttime)


class ForkServerClient:
    """serve's end: starts the fork server, asks it for daemons, hears their exits.

    Thread-safe. When the fork server is not (yet) usable, :meth:`spawn`
    raises :class:`ForkUnavailable` and the caller uses the exec path.
    """

    def __init__(
        self,
        log_level: str = "info",
        *,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``argv``: how to run ``routerd`` (default: this interpreter's ``-m routerd``);
        ``env``: the fork server's environment, and so its daemons' (default: ours)."""
        self.log_level = log_level
        self._argv = argv
        self._env = env
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._ready = threading.Event()
        self._dead = threading.Event()
        self.kinds: set[str] = set()
        self.refused: dict[str, str] = {}
        self.exclude: set[str] = set()
        self.pid: int | None = None
        self.starts = 0
        self.restarts_for_stale = 0
        self.last_error: str | None = None
        self._next_id = 0
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._closed = False
        self._retry_at = 0.0
        self._backoff = RESTART_FIRST

    # -- the server process -------------------------------------------------------
    def start(self) -> None:
        """Exec a new fork server (returns at once; :meth:`wait_ready` waits for it)."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._closed:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = self._argv or [sys.executable, "-m", "routerd"]
        argv = [
            *argv,
            "fork-server",
            "--control-fd",
            str(theirs.fileno()),
            "--log-level",
            self.log_level,
            *(f"--exclude={name}" for name in sorted(self.exclude)),
        ]
        try:
            proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], env=self._env)
        except OSError as exc:
            ours.close()
            theirs.close()
            self.last_error = f"cannot start the fork server: {exc}"
            log.error("%s; daemons are started by exec", self.last_error)
            self._retry_at = time.monotonic() + self._backoff
            return
        finally:
            with contextlib.suppress(OSError):
                theirs.close()
        self._proc, self._sock = proc, ours
        self._ready.clear()
        self._dead.clear()
        self.pid = proc.pid
        self.starts += 1
        threading.Thread(
            target=self._read, args=(proc, ours), name="fork-server-reader", daemon=True
        ).start()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.is_set():
                return True
            if self._dead.wait(0.01) and not self._ready.is_set():
                return False
        return self._ready.is_set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._dead.is_set()

    def close(self) -> None:
        """Stop the fork server (its daemons are left running)."""
        with self._lock:
            self._closed = True
            sock, proc = self._sock, self._proc
            self._sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if sock is not None:
            sock.close()

    # -- requests ------------------------------------------------------------------
    def can_fork(self, kind: str) -> bool:
        return kind in self.kinds

    def spawn(
        self,
        kind: str,
        resource: str,
        config: Path,
        runtime_dir: Path,
        state_dir: Path,
        log_file: IO[bytes] | None = None,
        item: dict[str, Any] | None = None,
    ) -> ForkedProcess:
        """Fork the daemon; raises :class:`ForkUnavailable` (then use exec).

        ``item``: the resource's ``apiVersion`` and raw ``spec`` as read from
        ``config`` (the child validates them instead of reading the file);
        left out when it does not travel as JSON in one message.
        """
        request: dict[str, Any] = {
            "op": "fork",
            "kind": kind,
            "resource": resource,
            "config": str(config),
            "runtimeDir": str(runtime_dir),
            "stateDir": str(state_dir),
        }
        if item is not None:
            try:
                if len(json.dumps({**request, "id": 0, "item": item})) < MAX_MESSAGE // 2:
                    request["item"] = item
            except (TypeError, ValueError):
                pass  # a YAML date or binary: the child reads the file
        for attempt in range(3):
            excluded = len(self.exclude)
            self._ensure_running()
            if not self.wait_ready():
                if len(self.exclude) > excluded:
                    self._wait_dead(5.0)
                    continue  # it refused a plugin that starts threads: start one without it
                raise ForkUnavailable(self.last_error or "the fork server did not start")
            if kind not in self.kinds:
                why = (
                    next((r for p, r in self.refused.items() if p and kind.startswith(p)), None)
                    or "its plugin is not loaded in the fork server"
                )
                raise ForkUnavailable(f"{kind}: {why}")
            answer = self._request(
                dict(request), [log_file.fileno()] if log_file is not None else []
            )
            op = answer.get("op")
            if op == "forked":
                return self._adopt_answer(answer, kind, resource)
            if op == "stale":
                # Code on disk changed since the server imported it: a new
                # server imports the new code; ask it instead.
                self.restarts_for_stale += 1
                log.info(
                    "%s changed on disk; restarting the fork server (attempt %d)",
                    answer.get("changed"),
                    attempt + 1,
                )
                self._wait_dead(5.0)
                continue
            raise ForkUnavailable(str(answer.get("error") or f"unexpected answer {answer!r}"))
        raise ForkUnavailable("the fork server keeps finding changed code")

    def _adopt_answer(self, answer: dict[str, Any], kind: str, resource: str) -> ForkedProcess:
        pid = int(answer["pid"])
        starttime = answer.get("starttime")
        proc = ForkedProcess(
            pid, starttime if isinstance(starttime, int) else None, daemon_title(kind, resource)
        )
        with self._lock:
            early = self._early_exits.pop(pid, None)
            if early is None:
                self._children[pid] = proc
        if early is not None:
            proc._exit(early)
        return proc

    def _ensure_running(self) -> None:
        with self._lock:
            if self._closed:
                raise ForkUnavailable("routerd serve is stopping")
            alive = self._proc is not None and not self._dead.is_set()
            if alive:
                return
            if time.monotonic() < self._retry_at:
                raise ForkUnavailable(self.last_error or "the fork server is restarting")
            self._start_locked()

    def _restart_after_crash(self) -> None:
        with contextlib.suppress(ForkUnavailable):
            self._ensure_running()

    def _wait_dead(self, timeout: float) -> None:
        self._dead.wait(timeout)

    def _request(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            sock = self._sock
            if sock is None or self._dead.is_set():
                raise ForkUnavailable("the fork server is not running")
            self._next_id += 1
            message["id"] = self._next_id
            self._pending[self._next_id] = future
            try:
                send(sock, message, fds)
            except OSError as exc:
                self._pending.pop(self._next_id, None)
                raise ForkUnavailable(f"fork server: {exc}") from None
        try:
            return future.result(FORK_TIMEOUT)
        except FutureTimeout:
            raise ForkUnavailable(f"no answer from the fork server in {FORK_TIMEOUT:g} s") from None

    # -- the reader thread -------------------------------------------------------
    def _read(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        try:
            for message in self._messages(sock):
                self._dispatch(message)
        finally:
            self._lost(proc)

    def _messages(self, sock: socket.socket) -> Iterator[dict[str, Any]]:
        while True:
            try:
                message, fds = receive(sock)
            except (OSError, ValueError) as exc:
                self.last_error = f"fork server: {exc}"
                return
            for fd in fds:
                os.close(fd)
            if message is None:
                return
            yield message

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready":
            self.kinds = set(message.get("kinds") or [])
            refused = message.get("refused") or {}
            self.refused = {str(k): str(v) for k, v in refused.items()}
            for name, why in self.refused.items():
                log.warning(
                    "plugin %s is not loaded in the fork server (%s): its daemons are started by exec",
                    name,
                    why,
                )
            self._backoff = RESTART_FIRST
            self._ready.set()
            log.info("fork server ready (pid %s, kinds %s)", message.get("pid"), sorted(self.kinds))
        elif op == "exclude":
            plugin = str(message.get("plugin"))
            log.warning(
                "plugin %s starts a thread when imported, so it cannot be forked: "
                "its daemons are started by exec",
                plugin,
            )
            with self._lock:
                self.exclude.add(plugin)
                self._retry_at = 0.0
        elif op == "exit":
            pid, status = int(message["pid"]), int(message["status"])
            with self._lock:
                proc = self._children.pop(pid, None)
                if proc is None:
                    self._early_exits[pid] = status  # the answer to its fork is still on its way
            if proc is not None:
                proc._exit(status)
        elif op in ("forked", "failed", "stale"):
            with self._lock:
                future = self._pending.pop(int(message.get("id") or 0), None)
            if future is not None:
                future.set_result(message)

    def _lost(self, proc: subprocess.Popen[bytes]) -> None:
        """The fork server exited: fail what waits, hand its daemons to PID watching."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        with self._lock:
            pending, self._pending = self._pending, {}
            children, self._children = self._children, {}
            self._early_exits.clear()
            if self._proc is proc:
                self._sock = None
                if proc.returncode != 0 and not self._closed:
                    # Started again after a backoff, ready for the next daemon.
                    self.last_error = f"the fork server exited with {proc.returncode}"
                    log.error(
                        "%s; starting a new one in %.0f s (daemons are started by exec meanwhile)",
                        self.last_error,
                        self._backoff,
                    )
                    self._retry_at = time.monotonic() + self._backoff
                    timer = threading.Timer(self._backoff, self._restart_after_crash)
                    timer.daemon = True
                    timer.start()
                    self._backoff = min(self._backoff * 2, RESTART_CAP)
                self._dead.set()
        for future in pending.values():
            future.set_result({"op": "failed", "error": "the fork server exited"})
        for child in children.values():
            child.orphaned = True
