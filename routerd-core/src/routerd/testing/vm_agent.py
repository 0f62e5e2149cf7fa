"""The agent inside the test VM: a line-based JSON RPC over a virtio-serial port.

Run as PID 1 by the VM's init (``switch_root`` execs it), with the host's
Python and ``-I -S``: standard library only, no ``routerd`` import, so it
starts quickly even though Python in the VM (TCG) is 20-30x slower than on
the host. See :mod:`routerd.testing.vm` for the host side.

One request per line, one answer per line, matched by ``id``::

    {"id": 1, "op": "run", "argv": ["ip", "link"], "timeout": 10}
    {"id": 1, "ok": true, "rc": 0, "stdout": "...", "stderr": "..."}

Operations: ``ping``, ``run`` (wait, return rc/stdout/stderr), ``spawn``
(background, output to a log file, returns the PID), ``signal`` (by PID),
``wait`` (a spawned PID's exit status, with a timeout), ``read`` and
``write`` (files, base64), ``unix_http`` (one HTTP request to a daemon's
Unix socket inside the VM), ``stop_all`` (every spawned process that is still
running: SIGTERM, then SIGKILL, by PID). Requests run on threads of their
own, so a long ``run`` does not hold up a ``signal``.

As PID 1 the agent inherits every orphan. One reaper thread owns every
``waitpid``: the processes this agent starts record their status through it,
anything else is reaped and forgotten. That is why ``run`` does not use
:func:`subprocess.run` (its own ``waitpid`` would race the reaper).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from pathlib import Path
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Any

PORT_NAME = "routerd.agent"
#: Output kept from one ``run``; the rest is dropped (the caller gets a flag).
MAX_OUTPUT = 4 * 1024 * 1024
#: After a ``run``'s program exits, how long to keep reading pipes that a
#: daemonized grandchild may hold open.
_DRAIN_AFTER_EXIT = 0.5


class _Child:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None
        self.done = threading.Event()


class Agent:
    """Serve requests from *port_fd* until the host side goes away for good."""

    def __init__(self, port_fd: int) -> None:
        self.port_fd = port_fd
        self._write_lock = threading.Lock()
        # Held while starting a child and while recording a reaped status, so
        # a child that exits at once is never reaped before it is registered.
        self._children_lock = threading.Lock()
        self._children: dict[int, _Child] = {}
        self._spawned: list[int] = []
        self._have_children = threading.Condition(self._children_lock)

    # -- children ----------------------------------------------------------

    def _reaper(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                with self._have_children:
                    self._have_children.wait(1.0)
                continue
            except InterruptedError:
                continue
            with self._children_lock:
                child = self._children.get(pid)
                if child is not None:
                    child.status = os.waitstatus_to_exitcode(status)
                    child.done.set()

    def _start(self, argv: list[str], **kwargs: Any) -> tuple[subprocess.Popen[bytes], _Child]:
        with self._children_lock:
            proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
            child = _Child(proc.pid)
            self._children[proc.pid] = child
            self._have_children.notify_all()
        # NOTE: Popen's own wait()/poll() must never run: the reaper owns
        # waitpid. Mark it finished so its destructor does not poll either.
        proc.returncode = 0
        return proc, child

    # -- operations --------------------------------------------------------

    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"time": time.time(), "uptime": _uptime()}

    def op_run(self, req: dict[str, Any]) -> dict[str, Any]:
        timeout = float(req.get("timeout", 30))
        data = req.get("input")
        proc, child = self._start(
            list(req["argv"]),
            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=req.get("env"),
            cwd=req.get("cwd"),
        )
        if data is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(data.encode())
            proc.stdin.close()
        assert proc.stdout is not None and proc.stderr is not None
        stdout, stderr = bytearray(), bytearray()
        out = {proc.stdout.fileno(): stdout, proc.stderr.fileno(): stderr}
        deadline = time.monotonic() + timeout
        timed_out = False
        exited_at: float | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            sel.register(proc.stderr, selectors.EVENT_READ)
            while sel.get_map():
                now = time.monotonic()
                if child.done.is_set() and exited_at is None:
                    exited_at = now
                if exited_at is not None and now - exited_at > _DRAIN_AFTER_EXIT:
                    break
                if now >= deadline:
                    timed_out = True
                    break
                for key, _ in sel.select(min(0.1, deadline - now)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = out[key.fd]
                    if len(buf) < MAX_OUTPUT:
                        buf += chunk[: MAX_OUTPUT - len(buf)]
        if timed_out or not child.done.wait(max(deadline - time.monotonic(), 0)):
            timed_out = True
            _kill_group(proc.pid, signal.SIGKILL)
            child.done.wait(5.0)
        proc.stdout.close()
        proc.stderr.close()
        with self._children_lock:
            self._children.pop(proc.pid, None)
        return {
            "pid": proc.pid,
            "rc": child.status,
            "timed_out": timed_out,
            "stdout": stdout.decode("utf-8", "replace"),
            "stderr": stderr.decode("utf-8", "replace"),
        }

    def op_spawn(self, req: dict[str, Any]) -> dict[str, Any]:
        log = Path(req["log"])
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab" if req.get("append") else "wb") as f:
            proc, _ = self._start(
                list(req["argv"]),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=req.get("env"),
                cwd=req.get("cwd"),
            )
        with self._children_lock:
            self._spawned.append(proc.pid)
        return {"pid": proc.pid, "time": time.time()}

    def op_signal(self, req: dict[str, Any]) -> dict[str, Any]:
        pid = int(req["pid"])
        try:
            os.kill(pid, int(req.get("sig", signal.SIGTERM)))
        except ProcessLookupError:
            return {"sent": False}
        return {"sent": True}

    def op_wait(self, req: dict[str, Any]) -> dict[str, Any]:
        """Return the exit status of a spawned PID, ``rc`` null while it runs."""
        pid = int(req["pid"])
        with self._children_lock:
            child = self._children.get(pid)
        if child is None:
            raise LookupError(f"pid {pid} was not started by this agent")
        child.done.wait(float(req.get("timeout", 0)))
        return {"rc": child.status}

    def op_stop_all(self, req: dict[str, Any]) -> dict[str, Any]:
        timeout = float(req.get("timeout", 5))
        with self._children_lock:
            pids = list(self._spawned)
            children = [self._children[p] for p in pids if p in self._children]
        running = [c for c in children if not c.done.is_set()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for c in running:
                if not c.done.is_set():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(c.pid, sig)
            deadline = time.monotonic() + timeout
            for c in running:
                c.done.wait(max(deadline - time.monotonic(), 0))
            running = [c for c in running if not c.done.is_set()]
            if not running:
                break
        return {"stopped": [c.pid for c in children], "still_running": [c.pid for c in running]}

    def op_read(self, req: dict[str, Any]) -> dict[str, Any]:
        offset = int(req.get("offset", 0))
        limit = int(req.get("limit", MAX_OUTPUT))
        try:
            with open(req["path"], "rb") as f:
                f.seek(offset)
                data = f.read(limit)
        except FileNotFoundError:
            return {"exists": False, "data": ""}
        return {"exists": True, "data": base64.b64encode(data).decode()}

    def op_write(self, req: dict[str, Any]) -> dict[str, Any]:
        path = Path(req["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = int(req.get("mode", 0o600))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with open(fd, "wb") as f:
            f.write(base64.b64decode(req["data"]))
        os.chmod(path, mode)
        return {}

    def op_unix_http(self, req: dict[str, Any]) -> dict[str, Any]:
        """One HTTP/1.1 request over a Unix socket (a daemon's API in the VM)."""
        import http.client
        import socket

        timeout = float(req.get("timeout", 10))

        class _Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(req["socket"])
                self.sock = sock

        conn = _Conn("localhost", timeout=timeout)
        try:
            body = req.get("body")
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(
                req.get("method", "GET"),
                req["path"],
                body=None if body is None else body.encode(),
                headers=headers,
            )
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return {"status": resp.status, "body": data.decode("utf-8", "replace")}

    # -- transport ---------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        line = (json.dumps(message) + "\n").encode()
        with self._write_lock:
            view = memoryview(line)
            while view:
                n = os.write(self.port_fd, view)
                view = view[n:]

    def handle(self, line: bytes) -> None:
        req_id: Any = None
        try:
            req = json.loads(line)
            req_id = req.get("id")
            handler = getattr(self, "op_" + str(req.get("op")), None)
            if handler is None:
                raise ValueError(f"unknown op {req.get('op')!r}")
            answer = handler(req)
            answer.update({"id": req_id, "ok": True})
        except Exception as e:
            answer = {"id": req_id, "ok": False, "error": f"{type(e).__name__}: {e}"}
        self.send(answer)

    def serve(self) -> None:
        threading.Thread(target=self._reaper, name="reaper", daemon=True).start()
        self.send({"event": "hello", "uptime": _uptime(), "time": time.time()})
        buf = b""
        while True:
            chunk = os.read(self.port_fd, 65536)
            if not chunk:
                # The host side is not connected (yet, or any more).
                time.sleep(0.05)
                continue
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    threading.Thread(target=self.handle, args=(line,), daemon=True).start()


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def find_port(name: str = PORT_NAME, timeout: float = 30.0) -> str:
    """Return ``/dev/vportNpM`` of the virtio-serial port called *name*."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in Path("/sys/class/virtio-ports").glob("*"):
            with contextlib.suppress(OSError):
                if (entry / "name").read_text().strip() == name:
                    dev = Path("/dev") / entry.name
                    if dev.exists():
                        return str(dev)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"virtio-serial port {name!r} not found")
        time.sleep(0.05)


def main() -> None:
    port = find_port(sys.argv[1] if len(sys.argv) > 1 else PORT_NAME)
    fd = os.open(port, os.O_RDWR)
    Agent(fd).serve()


if __name__ == "__main__":
    main()
