"""A small HTTP/1.1 client for routerd's Unix sockets.

Imports only the standard library's socket and json so that routerctl starts
fast (no http.client, no httpx). One request per connection
(``Connection: close``).

The peer is not trusted to behave:

* Every request runs against one :class:`Deadline`: connect, send and each
  ``recv`` get what remains of it, so a peer that trickles one byte at a
  time cannot stretch a request past it. A caller can share one deadline
  between many requests (``routerctl --timeout`` bounds a whole command).
* The answer is parsed strictly (RFC 9112): the status line, a bounded header
  section, ``Content-Length`` (digits only, bounded) or ``chunked`` framing
  (hex sizes, CRLFs), a bounded body.
* :meth:`Response.json_as` decodes the body and checks it against a
  :class:`Shape` (an object with these fields, a list of objects...).

Every such problem is a :class:`routerd.errors.BadResponse` (a
:class:`~routerd.errors.ClientError`) whose message is one line naming what
was wrong; peer bytes in it are escaped and cut short.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
import errno
import json
import os
import re
import socket
import stat
import time
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode

from routerd.errors import BadResponse
from routerd.errors import ClientError
from routerd.errors import DaemonUnavailable
from routerd.errors import SocketNotFound
from routerd.errors import SocketPermissionDenied

QueryValue = str | int | float | bool | list[str] | tuple[str, ...] | None

#: Longest status line, header line, chunk-size or trailer line.
MAX_LINE = 8192
#: Most header (or trailer) fields in one answer.
MAX_HEADERS = 100
#: Largest header section, all lines together.
MAX_HEADER_BYTES = 64 * 1024
#: Largest body. A full events page (1000 events) is about 1 MB.
MAX_BODY = 16 * 1024 * 1024
#: Most ``1xx`` interim answers skipped before the final one.
MAX_INTERIM = 5
#: Longest single wait handed to the socket (``settimeout`` overflows past time_t).
_MAX_SOCKET_WAIT = 86400.0

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: [\t\x20-\x7e\x80-\xff]*)?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_BAD_FIELD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # RFC 9110 §5.5: no CR, LF, NUL
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")  # RFC 9112 §7.1


def default_runtime_dir() -> str:
    return os.environ.get("ROUTERD_RUNTIME_DIR", "/run/routerd")


def default_state_dir() -> str:
    return os.environ.get("ROUTERD_STATE_DIR", "/var/lib/routerd")


def show(data: bytes | str, limit: int = 40) -> str:
    """Peer bytes for an error message: quoted, escaped (one line, no terminal codes), cut short."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    return ascii(text[:limit]) + ("…" if len(text) > limit else "")


class Deadline:
    """A point in (monotonic) time by which an operation, or a whole command, must be done.

    ``seconds`` is the budget it was made with, for messages
    ("no answer within 2 s").
    """

    __slots__ = ("_clock", "at", "seconds")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self.at

    def earliest(self, other: Deadline | None) -> Deadline:
        """Whichever of the two comes first."""
        return self if other is None or self.at <= other.at else other


# -- JSON shapes -------------------------------------------------------------------
def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _where(where: str) -> str:
    return where or "the answer"


class Shape:
    """What a decoded JSON value must look like; :meth:`check` raises :class:`BadResponse`."""

    expected = "any value"

    def matches(self, value: object) -> bool:
        return True

    def check(self, value: object, where: str = "") -> None:
        if not self.matches(value):
            raise BadResponse(
                f"malformed answer: {_where(where)} is {_kind_of(value)}, expected {self.expected}"
            )


class Scalar(Shape):
    def __init__(self, types: tuple[type, ...], expected: str) -> None:
        self.types = types
        self.expected = expected

    def matches(self, value: object) -> bool:
        # bool is an int subclass; a JSON true is never a number here.
        return isinstance(value, self.types) and (bool in self.types or not isinstance(value, bool))


class _Cursor(Shape):
    """An event cursor or id: a decimal string (the API's form) or a non-negative integer."""

    expected = "a decimal cursor"

    def matches(self, value: object) -> bool:
        if isinstance(value, str):
            return value.isascii() and value.isdigit() and len(value) <= 20
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Nullable(Shape):
    def __init__(self, inner: Shape) -> None:
        self.inner = inner
        self.expected = f"{inner.expected} or null"

    def check(self, value: object, where: str = "") -> None:
        if value is not None:
            self.inner.check(value, where)


class ListOf(Shape):
    expected = "a list"

    def __init__(self, item: Shape) -> None:
        self.item = item

    def matches(self, value: object) -> bool:
        return isinstance(value, list)

    def check(self, value: object, where: str = "") -> None:
        super().check(value, where)
        assert isinstance(value, list)
        for index, item in enumerate(value):
            self.item.check(item, f"{where}[{index}]" if where else f"item {index}")


class Obj(Shape):
    """A JSON object; ``fields`` are checked when present and not null, ``required`` must be there."""

    expected = "an object"

    def __init__(
        self, fields: Mapping[str, Shape] | None = None, required: tuple[str, ...] = ()
    ) -> None:
        self.fields = dict(fields or {})
        self.required = required

    def matches(self, value: object) -> bool:
        return isinstance(value, dict)

    def check(self, value: object, where: str = "") -> None:
        super().check(value, where)
        assert isinstance(value, dict)
        for key in self.required:
            if value.get(key) is None:
                raise BadResponse(f"malformed answer: {_where(where)} has no {key!r}")
        for key, shape in self.fields.items():
            item = value.get(key)
            if item is not None:
                shape.check(item, f"{where}.{key}" if where else key)


ANY = Shape()
STR = Scalar((str,), "a string")
INT = Scalar((int,), "an integer")
NUMBER = Scalar((int, float), "a number")
BOOL = Scalar((bool,), "a boolean")
CURSOR = _Cursor()
OBJECT = Obj()

# The daemon API's answers (DESIGN.md §4-§6), as far as clients rely on them.
RESOURCE_REF = Obj({"apiVersion": STR, "kind": STR, "name": STR}, required=("kind", "name"))
CONDITION = Obj(
    {"type": STR, "status": STR, "reason": STR, "message": STR, "lastTransitionTime": STR},
    required=("type", "status"),
)
RESOURCE_STATUS = Obj(
    {
        "resource": RESOURCE_REF,
        "phase": STR,
        "since": STR,
        "conditions": ListOf(CONDITION),
        "observed": OBJECT,
    },
    required=("resource",),
)
DAEMON_STATUS = Obj(
    {
        "daemon": Obj({"kind": STR, "name": STR, "pid": INT, "version": STR, "startedAt": STR}),
        "phase": STR,
        "resources": ListOf(RESOURCE_STATUS),
        "runtime": Obj({"commands": ListOf(STR), "eventLog": OBJECT}),
    },
    required=("daemon", "resources"),
)
EVENT = Obj(
    {
        "cursor": CURSOR,
        "time": STR,
        "topic": STR,
        "severity": STR,
        "reason": STR,
        "message": STR,
        "attributes": OBJECT,
    },
    required=("cursor", "topic"),
)
EVENT_PAGE = Obj(
    {"cursor": CURSOR, "events": ListOf(EVENT), "more": BOOL, "reset": BOOL},
    required=("cursor", "events"),
)
COMMAND_RESULT = Obj(
    {"command": STR, "accepted": BOOL, "message": STR, "result": ANY}, required=("accepted",)
)


# -- responses ---------------------------------------------------------------------
@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The decoded body (None when empty); ``ValueError`` when it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except RecursionError:  # "[[[[..." nested past the interpreter's limit
            raise ValueError("JSON nested too deeply") from None

    def json_as(self, shape: Shape) -> Any:
        """The decoded body, checked against ``shape``; :class:`BadResponse` otherwise."""
        if not self.body:
            raise BadResponse("malformed answer: empty body, expected JSON")
        try:
            data = self.json()
        except ValueError as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise BadResponse(f"malformed answer: not JSON ({detail})") from None
        shape.check(data)
        return data

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


def encode_query(query: Mapping[str, QueryValue] | None) -> str:
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
    """Requests to one Unix socket. Errors are :class:`routerd.errors.ClientError`.

    ``timeout`` bounds each request as a whole (not each read). ``deadline``,
    when given, additionally bounds every request made through this client,
    e.g. all requests of one ``routerctl`` command.
    """

    def __init__(
        self,
        path: str,
        timeout: float = 10.0,
        *,
        deadline: Deadline | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.deadline = deadline
        self.max_body = max_body

    def _connect(self, deadline: Deadline) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        remaining = deadline.remaining()
        if remaining <= 0:
            sock.close()
            raise DaemonUnavailable(f"{self.path}: no answer within {deadline.seconds:g} s")
        sock.settimeout(min(remaining, _MAX_SOCKET_WAIT))
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
        except TimeoutError:  # the listen backlog is full and stays full
            sock.close()
            raise DaemonUnavailable(
                f"{self.path}: no answer within {deadline.seconds:g} s"
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
        query: Mapping[str, QueryValue] | None = None,
        body: Any = None,
        timeout: float | None = None,
        hold: float = 0.0,
        deadline: Deadline | None = None,
    ) -> Response:
        """One request; the whole answer must arrive within ``timeout`` (default: the client's).

        ``hold``: seconds the peer may legitimately keep the request before
        it starts answering (a long-poll's ``wait``); the answer, once
        started, must still be complete within ``timeout``. ``deadline``
        (or the client's) caps all of it.
        """
        timeout = self.timeout if timeout is None else timeout
        limit = Deadline(timeout + hold).earliest(deadline).earliest(self.deadline)
        payload = b"" if body is None else json.dumps(body).encode()
        target = quote(path, safe="/:@") + encode_query(query)
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: routerd\r\nConnection: close\r\n"
            f"Accept: application/json\r\nUser-Agent: routerd-client\r\n"
        )
        if payload or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        sock = self._connect(limit)
        try:
            sock.settimeout(min(max(limit.remaining(), 0.001), _MAX_SOCKET_WAIT))
            try:
                sock.sendall(head.encode("latin-1") + b"\r\n" + payload)
            except TimeoutError:
                raise DaemonUnavailable(
                    f"{self.path}: no answer within {limit.seconds:g} s (request not taken)"
                ) from None
            reader = _Reader(sock, self.path, limit, timeout if hold > 0 else None)
            try:
                return _read_response(reader, method, self.max_body)
            except BadResponse as exc:
                raise BadResponse(f"{self.path}: malformed HTTP answer: {exc}") from None
        except ClientError:
            raise
        except OSError as exc:  # reset by the peer, and the like
            raise DaemonUnavailable(f"{self.path}: {exc.strerror or exc}") from None
        finally:
            sock.close()

    def get(
        self,
        path: str,
        *,
        timeout: float | None = None,
        hold: float = 0.0,
        deadline: Deadline | None = None,
        **query: QueryValue,
    ) -> Response:
        return self.request("GET", path, query=query, timeout=timeout, hold=hold, deadline=deadline)

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> Response:
        return self.request("POST", path, body=body, timeout=timeout, deadline=deadline)


# -- the strict response parser ------------------------------------------------------
class _Reader:
    """Buffered reads from a socket, each bounded by what remains of a deadline."""

    def __init__(
        self, sock: socket.socket, path: str, deadline: Deadline, after_first: float | None
    ) -> None:
        self.sock = sock
        self.path = path
        self.deadline = deadline
        # A long-poll may be held; once the answer starts it gets `after_first` seconds.
        self.after_first = after_first
        self.buf = bytearray()
        self.received = 0

    def _timed_out(self) -> DaemonUnavailable:
        seconds = f"{self.deadline.seconds:g}"
        if self.received == 0:
            return DaemonUnavailable(f"{self.path}: no answer within {seconds} s")
        return DaemonUnavailable(
            f"{self.path}: answer not complete within {seconds} s "
            f"({self.received} bytes received; the daemon is stuck or too slow)"
        )

    def fill(self) -> bool:
        """Read more into the buffer; False at the end of the stream."""
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise self._timed_out()
        self.sock.settimeout(min(remaining, _MAX_SOCKET_WAIT))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise self._timed_out() from None
        if not chunk:
            return False
        if self.received == 0 and self.after_first is not None:
            self.deadline = self.deadline.earliest(Deadline(self.after_first))
        self.received += len(chunk)
        self.buf += chunk
        return True

    def closed(self, what: str) -> DaemonUnavailable:
        if self.received == 0:
            return DaemonUnavailable(f"{self.path}: connection closed without an answer")
        return BadResponse(f"connection closed inside the {what}")

    def line(self, what: str) -> bytes:
        """One CRLF-terminated line (without the CRLF), at most MAX_LINE bytes."""
        start = 0
        while True:
            end = self.buf.find(b"\n", start)
            if end >= 0:
                break
            if len(self.buf) > MAX_LINE:
                raise BadResponse(f"{what} longer than {MAX_LINE} bytes: {show(bytes(self.buf))}")
            start = len(self.buf)
            if not self.fill():
                raise self.closed(what)
        if end > MAX_LINE:
            raise BadResponse(f"{what} longer than {MAX_LINE} bytes: {show(bytes(self.buf))}")
        line = bytes(self.buf[:end])
        if not line.endswith(b"\r"):  # RFC 9112 §2.2: lines end in CRLF
            raise BadResponse(f"{what} not ended by CRLF: {show(line)}")
        del self.buf[: end + 1]
        return line[:-1]

    def exact(self, size: int, what: str) -> bytes:
        while len(self.buf) < size:
            if not self.fill():
                raise BadResponse(
                    f"connection closed inside the {what} ({len(self.buf)} of {size} bytes)"
                )
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    def expect_start(self, prefix: bytes) -> None:
        """Fail at once when the answer does not begin with ``prefix`` (HTTP/0.9, garbage)."""
        while len(self.buf) < len(prefix) and prefix.startswith(self.buf):
            if not self.fill():
                break
        if not self.buf:
            raise self.closed("status line")
        if not self.buf.startswith(prefix):
            raise BadResponse(f"not an HTTP/1.x answer: {show(bytes(self.buf))}")

    def rest(self, cap: int) -> bytes:
        while self.fill():
            if len(self.buf) > cap:
                raise BadResponse(f"body larger than {cap} bytes")
        data = bytes(self.buf)
        self.buf.clear()
        return data


def _fields(reader: _Reader, what: str) -> list[tuple[str, str]]:
    """Header (or trailer) fields up to the empty line, bounded in number and size."""
    fields: list[tuple[str, str]] = []
    total = 0
    while True:
        line = reader.line(f"{what} line")
        if not line:
            return fields
        total += len(line) + 2
        if total > MAX_HEADER_BYTES:
            raise BadResponse(f"{what} section larger than {MAX_HEADER_BYTES} bytes")
        if len(fields) >= MAX_HEADERS:
            raise BadResponse(f"more than {MAX_HEADERS} {what} fields")
        if line[:1] in (b" ", b"\t"):  # RFC 9112 §5.2: obs-fold; we reject it
            raise BadResponse(f"folded {what} line (obsolete line folding): {show(line)}")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):  # RFC 9112 §5.1: no space before ':'
            raise BadResponse(f"malformed {what} line: {show(line)}")
        value = value.strip(b" \t")
        if _BAD_FIELD_VALUE.search(value):
            raise BadResponse(f"control character in {what} {show(name)}")
        fields.append((name.decode("ascii").lower(), value.decode("latin-1")))


def _content_length(values: list[str], max_body: int) -> int:
    """RFC 9110 §8.6: digits only; repeated values (or a list) must all agree."""
    parts = [p.strip() for v in values for p in v.split(",")]
    for part in parts:
        if not (part.isascii() and part.isdigit()):
            raise BadResponse(f"Content-Length {show(part)} is not a decimal number")
    numbers = {p.lstrip("0") or "0" for p in parts}
    if len(numbers) != 1:
        raise BadResponse(f"conflicting Content-Length values {show(', '.join(values))}")
    number = numbers.pop()
    length = int(number) if len(number) <= 19 else max_body + 1  # no 4300-digit int()
    if length > max_body:
        raise BadResponse(f"Content-Length {length} is over the {max_body}-byte limit")
    return length


def _chunked(reader: _Reader, max_body: int) -> bytes:
    """RFC 9112 §7.1: hex sizes, CRLF after each chunk, a bounded total, trailers skipped."""
    body = bytearray()
    while True:
        line = reader.line("chunk size line")
        match = _CHUNK_SIZE.fullmatch(line)
        if match is None:
            raise BadResponse(f"bad chunk size {show(line)}")
        size = int(match.group(1), 16)
        if size == 0:
            _fields(reader, "trailer")
            return bytes(body)
        if len(body) + size > max_body:
            raise BadResponse(f"chunked body over the {max_body}-byte limit")
        body += reader.exact(size, "chunk")
        if reader.exact(2, "chunk") != b"\r\n":
            raise BadResponse("chunk data not followed by CRLF (wrong chunk size?)")


def _read_response(reader: _Reader, method: str, max_body: int) -> Response:
    reader.expect_start(b"HTTP/1.")
    for _ in range(MAX_INTERIM + 1):
        status_line = reader.line("status line")
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise BadResponse(f"not an HTTP/1.x status line: {show(status_line)}")
        status = int(match.group(1))
        fields = _fields(reader, "header")
        if status >= 200:
            break
        # RFC 9110 §15.2: a 1xx answer is interim; the final one follows.
    else:
        raise BadResponse(f"more than {MAX_INTERIM} interim (1xx) answers")
    headers: dict[str, str] = {}
    lengths: list[str] = []
    for name, value in fields:
        if name == "content-length":
            lengths.append(value)
        # RFC 9110 §5.3: repeated fields combine with commas.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if method == "HEAD" or status in (204, 304):
        return Response(status, headers, b"")
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if lengths:  # RFC 9112 §6.3: both framings at once is how smuggling starts
            raise BadResponse("both Transfer-Encoding and Content-Length")
        if encoding.lower() != "chunked":
            raise BadResponse(f"unsupported Transfer-Encoding {show(encoding)}")
        body = _chunked(reader, max_body)
    elif lengths:
        body = reader.exact(_content_length(lengths, max_body), "body")
    else:
        return Response(status, headers, reader.rest(max_body))
    if reader.buf:
        # Connection: close, so nothing may follow the message; if something
        # already has, the framing above was wrong.
        raise BadResponse(
            f"{len(reader.buf)} bytes after the end of the body (wrong Content-Length?)"
        )
    return Response(status, headers, body)


def daemon_socket_path(daemon_kind: str, resource: str, runtime_dir: str | None = None) -> str:
    """``<runtime>/<daemon-kind>/<resource>.sock`` (DESIGN.md §2)."""
    return os.path.join(runtime_dir or default_runtime_dir(), daemon_kind, f"{resource}.sock")
