"""A small HTTP/1.1 client for routerd's Unix sockets.

Imports only the standard library's socket and json so that routerctl starts
fast (no http.client, no httpx). One request per connection
(``Connection: close``); bodies by Content-Length, chunked or close.
"""

from __future__ import annotations

from dataclasses import dataclass
import errno
import json
import os
import socket
import stat
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

from routerd.errors import DaemonUnavailable
from routerd.errors import SocketNotFound
from routerd.errors import SocketPermissionDenied

QueryValue = str | int | float | bool | list[str] | tuple[str, ...] | None


def default_runtime_dir() -> str:
    return os.environ.get("ROUTERD_RUNTIME_DIR", "/run/routerd")


def default_state_dir() -> str:
    return os.environ.get("ROUTERD_STATE_DIR", "/var/lib/routerd")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_text(self) -> str:
        """``title: description`` of a JSON error body, or the raw body."""
        try:
            data = self.json()
        except ValueError:
            return self.body.decode("utf-8", "replace").strip()[:200]
        if isinstance(data, dict) and "title" in data:
            desc = data.get("description")
            return f"{data['title']}: {desc}" if desc else str(data["title"])
        return str(data)[:200]


def encode_query(query: dict[str, QueryValue] | None) -> str:
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            pairs.extend((key, str(v)) for v in value)
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        else:
            pairs.append((key, str(value)))
    return "?" + urlencode(pairs) if pairs else ""


class UnixClient:
    """Requests to one Unix socket. Errors are :class:`routerd.errors.ClientError`."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except FileNotFoundError:
            sock.close()
            raise SocketNotFound(f"no socket at {self.path} (is the daemon running?)") from None
        except PermissionError:
            sock.close()
            raise SocketPermissionDenied(
                f"permission denied for {self.path} (run as root or join the routerd group)"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            # Linux answers ECONNREFUSED for a regular file too.
            try:
                mode = os.stat(self.path).st_mode
            except OSError:  # removed meanwhile (a daemon replacing a stale socket)
                mode = stat.S_IFSOCK
            if not stat.S_ISSOCK(mode):
                raise SocketNotFound(f"{self.path} is not a socket") from None
            raise DaemonUnavailable(
                f"{self.path}: connection refused (the daemon is not running or is stopping)"
            ) from None
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENOTSOCK:
                raise SocketNotFound(f"{self.path} is not a socket") from None
            raise DaemonUnavailable(f"{self.path}: {exc.strerror or exc}") from None
        return sock

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, QueryValue] | None = None,
        body: Any = None,
        timeout: float | None = None,
    ) -> Response:
        timeout = self.timeout if timeout is None else timeout
        payload = b"" if body is None else json.dumps(body).encode()
        target = quote(path, safe="/:@") + encode_query(query)
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: routerd\r\nConnection: close\r\n"
            f"Accept: application/json\r\nUser-Agent: routerd-client\r\n"
        )
        if payload or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        sock = self._connect(timeout)
        try:
            sock.sendall(head.encode("latin-1") + b"\r\n" + payload)
            return _read_response(sock)
        except TimeoutError:
            raise DaemonUnavailable(f"{self.path}: no answer within {timeout:g} s") from None
        except OSError as exc:
            raise DaemonUnavailable(f"{self.path}: {exc.strerror or exc}") from None
        finally:
            sock.close()

    def get(self, path: str, *, timeout: float | None = None, **query: QueryValue) -> Response:
        return self.request("GET", path, query=query, timeout=timeout)

    def post(self, path: str, body: Any = None, *, timeout: float | None = None) -> Response:
        return self.request("POST", path, body=body, timeout=timeout)


def _read_response(sock: socket.socket) -> Response:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise DaemonUnavailable("connection closed before a response")
        buf += chunk
        if len(buf) > 1 << 20:
            raise DaemonUnavailable("response header too large")
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise DaemonUnavailable(f"malformed status line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    body = bytearray(rest)
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise DaemonUnavailable("connection closed inside the body")
            body += chunk
        return Response(status, headers, bytes(body[:length]))
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Response(status, headers, _dechunk(bytes(body)))
    return Response(status, headers, bytes(body))


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise DaemonUnavailable("malformed chunked body")
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def daemon_socket_path(daemon_kind: str, resource: str, runtime_dir: str | None = None) -> str:
    """``<runtime>/<daemon-kind>/<resource>.sock`` (DESIGN.md §2)."""
    return os.path.join(runtime_dir or default_runtime_dir(), daemon_kind, f"{resource}.sock")
