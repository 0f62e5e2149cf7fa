"""DESIGN.md §9 for real: who reaches which socket and file, and where secrets go.

The permission tests create a real unprivileged user and a real member of
group ``routerd`` (and the group when it is missing), act as them from a
forked child that drops to their credentials, and remove what they created.
The secret test runs a real ``routerd serve`` with an HTTP check whose URL
carries a token, then searches everything a client or a local user could
read for it.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
import grp
import http.server
import json
import os
from pathlib import Path
import pwd
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from typing import Any

import pytest
from routerd.client import UnixClient
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import PREFIX
from routerd.testing.serve import ServeProcess

ENV = {"ROUTERD_PLUGINS": "healthcheck"}
GROUP = "routerd"


# -- fixtures -----------------------------------------------------------------


def _require_root_and_account_tools() -> None:
    reason = None
    if os.geteuid() != 0:
        reason = "creating users needs root"
    else:
        missing = [t for t in ("useradd", "userdel", "groupadd", "groupdel") if not shutil.which(t)]
        if missing:
            reason = "missing tool(s): " + ", ".join(missing)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and a permission-test prerequisite is missing: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Accounts:
    plain: str  # a local user with no business with routerd
    member: str  # a member of group routerd


@pytest.fixture
def accounts() -> Iterator[Accounts]:
    _require_root_and_account_tools()
    suffix = secrets.token_hex(3)
    made_group = False
    made_users: list[str] = []
    try:
        try:
            grp.getgrnam(GROUP)
        except KeyError:
            subprocess.run(["groupadd", "--system", GROUP], check=True, capture_output=True)
            made_group = True
        plain, member = f"rdplain{suffix}", f"rdmember{suffix}"
        for name, extra in ((plain, []), (member, ["-G", GROUP])):
            subprocess.run(
                ["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", *extra, name],
                check=True,
                capture_output=True,
            )
            made_users.append(name)
        yield Accounts(plain, member)
    finally:
        for name in made_users:
            subprocess.run(["userdel", name], check=False, capture_output=True)
        if made_group:
            subprocess.run(["groupdel", GROUP], check=False, capture_output=True)


@pytest.fixture
def base() -> Iterator[Path]:
    """A short temp dir any user may traverse (socket paths are at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rdperm-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def serve_at(base: Path) -> Iterator[Callable[..., ServeProcess]]:
    made: list[ServeProcess] = []

    def start(config: dict[str, Any], wait: bool = True) -> ServeProcess:
        path = write_config(base / "router.yaml", config)
        sp = ServeProcess(path, base / "run", base / "state", base / "serve.log", env=ENV)
        made.append(sp)
        return sp.start(wait=wait)

    yield start
    for sp in made:
        sp.stop()


@dataclass
class HttpTarget:
    port: int
    paths: list[str]


@pytest.fixture
def http_target() -> Iterator[HttpTarget]:
    """A loopback HTTP server answering 200 and recording the request paths."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="http-target", daemon=True)
    thread.start()
    yield HttpTarget(server.server_address[1], seen)
    server.shutdown()
    server.server_close()
    thread.join(5)


def tcp_check(name: str, port: int) -> dict[str, Any]:
    return resource(
        "HealthCheck",
        name,
        {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": port,
            "interval": "1h",
            "healthyThreshold": 1,
        },
    )


# -- acting as another user -----------------------------------------------------


def as_user(
    user: str, attempts: dict[str, Callable[[], object]], timeout: float = 20.0
) -> dict[str, str]:
    """Run each attempt in a child with ``user``'s uid, gid and groups; name its outcome.

    An outcome is the attempt's result as a string, or the name of the
    exception it raised (``PermissionError``, ``SocketPermissionDenied``).
    """
    entry = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only syscalls and the client below, then _exit
        code = 0
        try:
            os.close(read_end)
            os.initgroups(user, entry.pw_gid)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            outcome: dict[str, str] = {}
            for name, attempt in attempts.items():
                try:
                    outcome[name] = str(attempt())
                except Exception as exc:
                    outcome[name] = type(exc).__name__
            os.write(write_end, json.dumps(outcome).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        chunks = []
        while True:
            ready, _, _ = select.select([read_end], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"acting as {user} did not finish in {timeout:g} s")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the child acting as {user} failed"
    result: dict[str, str] = json.loads(b"".join(chunks))
    return result


def http_get(path: Path, url: str) -> Callable[[], object]:
    return lambda: UnixClient(str(path), timeout=5).get(url).status


def http_post(path: Path, url: str) -> Callable[[], object]:
    return lambda: UnixClient(str(path), timeout=10).post(url).status


def read(path: Path) -> Callable[[], object]:
    return lambda: len(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- permissions ------------------------------------------------------------------


def test_status_socket_for_everyone_main_and_daemons_for_group_routerd(
    accounts: Accounts, base: Path, serve_at: Callable[..., ServeProcess], tcp_listener: int
) -> None:
    # What an older routerd left behind: a 0750 runtime root, a socket dir
    # of root's group, a world-readable state dir and database.
    run, state = base / "run", base / "state"
    (run / "healthcheck").mkdir(parents=True)
    os.chmod(run, 0o750)
    os.chmod(run / "healthcheck", 0o750)
    state.mkdir()
    os.chmod(state, 0o755)
    (state / "routerd.db").touch()
    os.chmod(state / "routerd.db", 0o644)

    sp = serve_at(router_config(tcp_check("up", tcp_listener)))
    sp.wait_for_phase("HealthCheck", "up", "Healthy")
    routerd_gid = grp.getgrnam(GROUP).gr_gid
    daemon_socket = run / "healthcheck" / "up.sock"
    db = state / "routerd.db"
    private = [
        db,
        db.with_name("routerd.db-wal"),
        db.with_name("routerd.db-shm"),
        state / "healthcheck" / "up" / "events.jsonl",
        state / "healthcheck" / "up" / "state.json",
    ]
    daemon_log = base / "daemons" / "healthcheck-up.log"

    attempts = {
        "status socket": http_get(sp.status_socket_path, f"{PREFIX}/status"),
        "status socket resources": http_get(sp.status_socket_path, f"{PREFIX}/resources"),
        "main socket": http_get(sp.socket_path, f"{PREFIX}/status"),
        "main socket renew": http_post(
            sp.socket_path, f"{PREFIX}/resources/HealthCheck/up/commands/renew"
        ),
        "daemon socket": http_get(daemon_socket, "/v1/status"),
        **{path.name: read(path) for path in private},
    }
    plain = as_user(accounts.plain, attempts)
    assert plain == {
        "status socket": "200",
        "status socket resources": "200",
        "main socket": "SocketPermissionDenied",
        "main socket renew": "SocketPermissionDenied",
        "daemon socket": "SocketPermissionDenied",
        **{path.name: "PermissionError" for path in private},
    }
    member = as_user(accounts.member, attempts)
    assert member == {
        "status socket": "200",
        "status socket resources": "200",
        "main socket": "200",
        "main socket renew": "200",
        "daemon socket": "200",
        # The state is root's: members use the API, not the files.
        **{path.name: "PermissionError" for path in private},
    }

    assert mode(run) == 0o755, "the runtime root is fixed so the status socket is reachable"
    assert (mode(run / "healthcheck"), (run / "healthcheck").stat().st_gid) == (0o750, routerd_gid)
    assert (mode(sp.socket_path), sp.socket_path.stat().st_gid) == (0o660, routerd_gid)
    assert (mode(daemon_socket), daemon_socket.stat().st_gid) == (0o660, routerd_gid)
    assert mode(sp.status_socket_path) == 0o666
    assert mode(state) == 0o750
    for path in [*private, daemon_log]:
        assert not mode(path) & 0o007, f"{path} is world-accessible ({mode(path):o})"
    assert mode(base / "daemons") == 0o750, "routerd serve runs with umask 027"


def test_standalone_daemon_makes_its_directories(
    accounts: Accounts, base: Path, tcp_listener: int
) -> None:
    config = write_config(base / "router.yaml", router_config(tcp_check("up", tcp_listener)))
    daemon = DaemonProcess(
        "healthcheck", "up", config, base / "run", base / "state", base / "daemon.log", env=ENV
    )
    try:
        daemon.start()
        run = base / "run"
        assert mode(run) == 0o755, "a runtime root the daemon creates is traversable"
        assert (run / "healthcheck").stat().st_gid == grp.getgrnam(GROUP).gr_gid
        assert mode(run / "healthcheck") == 0o750
        events = daemon.resource_state_dir / "events.jsonl"
        poll(events.exists, 10, "the event log")
        for path in (base / "state", base / "state" / "healthcheck", daemon.resource_state_dir):
            assert mode(path) == 0o750, f"{path} is {mode(path):o} (umask 027 at entry)"
        outcome = {
            who: as_user(
                who,
                {"daemon": http_get(daemon.socket_path, "/v1/healthz"), "events": read(events)},
            )
            for who in (accounts.plain, accounts.member)
        }
        assert outcome == {
            accounts.plain: {"daemon": "SocketPermissionDenied", "events": "PermissionError"},
            accounts.member: {"daemon": "200", "events": "PermissionError"},
        }
    finally:
        daemon.stop()


# -- secrets ----------------------------------------------------------------------


def _http_check(name: str, port: int, token: str) -> dict[str, Any]:
    return resource(
        "HealthCheck",
        name,
        {
            "protocol": "http",
            "target": "127.0.0.1",
            "port": port,
            "path": f"/health?token={token}",
            "interval": "200ms",
            "timeout": "150ms",
            "healthyThreshold": 1,
            "unhealthyThreshold": 1,
        },
    )


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_an_http_checks_token_never_leaves_routerd(
    base: Path, serve_at: Callable[..., ServeProcess], http_target: HttpTarget
) -> None:
    token_a, token_b = f"tokA-{secrets.token_hex(8)}", f"tokB-{secrets.token_hex(8)}"
    down = _closed_port()
    sp = serve_at(
        router_config(
            _http_check("web", http_target.port, token_a), _http_check("down", down, token_a)
        )
    )
    sp.wait_for_phase("HealthCheck", "web", "Healthy")
    sp.wait_for_phase("HealthCheck", "down", "Unhealthy")
    seen: dict[str, bytes] = {}
    renew = sp.post("resources/HealthCheck/web/commands/renew")
    assert renew.status == 200, renew.error_text()
    seen["renew"] = renew.body

    # A new token, applied live: the old one and the new one stay secret.
    write_config(
        sp.config_path,
        router_config(
            _http_check("web", http_target.port, token_b), _http_check("down", down, token_b)
        ),
    )
    reload = sp.post("reload")
    assert reload.status == 200, reload.error_text()
    seen["reload"] = reload.body
    poll(lambda: any(token_b in p for p in http_target.paths), 10, "a probe with the new token")
    assert any(token_a in p for p in http_target.paths), "the probes did send the secret"

    def reload_stored() -> bool:
        items = sp.events(topic="routerd.daemon.command.executed", limit=100)["items"]
        return sum(e["attributes"].get("command") == "reload" for e in items) >= 2

    poll(reload_stored, 15, "both daemons' reload events in the store")

    for name, sock in (("main", sp.socket_path), ("status", sp.status_socket_path)):
        client = UnixClient(str(sock), timeout=10)
        for path in (
            "status",
            "resources",
            "resources/HealthCheck/web",
            "resources/HealthCheck/down",
            "events",
        ):
            resp = client.get(f"{PREFIX}/{path}", limit=1000 if path == "events" else None)
            assert resp.status == 200, (name, path, resp.error_text())
            seen[f"{name} socket {path}"] = resp.body
    pids = [sp.proc.pid] if sp.proc is not None else []
    for d in sp.status()["daemons"]:
        pids.append(d["pid"])
        client = UnixClient(d["socket"], timeout=10)
        seen[f"{d['socket']} status"] = client.get("/v1/status").body
        seen[f"{d['socket']} events"] = client.get("/v1/events", limit=1000).body
    for pid in pids:
        seen[f"/proc/{pid}/cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes()

    def files() -> dict[str, bytes]:
        out = {}
        for root in (base / "state", base / "run", base / "daemons"):
            for path in root.rglob("*"):
                if path.is_file():
                    out[str(path)] = path.read_bytes()
        out["serve.log"] = (base / "serve.log").read_bytes()
        return out

    seen.update(files())  # the WAL while routerd runs
    assert any(name.endswith("routerd.db-wal") for name in seen)

    web = json.loads(seen["status socket resources/HealthCheck/web"])
    assert web["spec"]["path"] == "/health?token=***", "the spec is shown redacted"
    healthy = [e["message"] for e in web["recentEvents"] if e["topic"].endswith("state.healthy")]
    assert healthy and f"127.0.0.1:{http_target.port}/health?token=*** is healthy" in healthy[0]

    sp.stop()
    seen.update({f"{k} (stopped)": v for k, v in files().items()})  # checkpointed database
    for token in (token_a, token_b):
        leaks = sorted(name for name, data in seen.items() if token.encode() in data)
        assert not leaks, f"{token} is readable in {leaks}"
