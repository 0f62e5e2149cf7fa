"""Secret spec fields: how a plugin marks them, and the one redaction every output uses.

A plugin marks a field of its spec model secret with an ``Annotated`` marker::

    from typing import Annotated
    from routerd.secrets import Secret, SecretURL

    class WidgetSpec(SpecModel):
        password: Annotated[str, Secret()]        # shown as "***"
        url: Annotated[str, SecretURL()]          # "https://u:***@host/p?token=***"

(``Field(json_schema_extra={"secret": True})`` is the older spelling of
``Secret()``.) From then on the core keeps the values out of everything a
client or another user can see (DESIGN.md §9):

* :func:`redact_spec` is what ``SpecModel.to_wire`` returns: the spec as JSON
  with every marked field in its redacted form (the main and status sockets
  of ``routerd serve`` show this).
* A :class:`Scrubber` built from the spec replaces every secret value in what
  leaves a daemon: event messages and attributes (so ``events.jsonl`` and the
  store), status (phase, condition messages, ``observed``), command results
  and errors, and the daemon's log lines. It is the backstop for text an
  engine derives from the spec; an engine that shows a secret field on
  purpose should show :func:`shown` (``token=***`` reads better than a
  message with a hole in it).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
import functools
import logging
import re
import sys
import threading
from types import TracebackType
from typing import Any
from typing import TypeVar
from typing import get_args
from urllib.parse import quote
from urllib.parse import unquote_plus

import pydantic
from pydantic import GetJsonSchemaHandler
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = [
    "MIN_SCRUB_LENGTH",
    "REDACTED",
    "Scrubber",
    "Secret",
    "SecretURL",
    "install_log_redaction",
    "redact_spec",
    "redact_url",
    "secret_marker",
    "secret_values",
    "shown",
]

#: What a secret (or the secret part of a value) is replaced with.
REDACTED = "***"
#: Values shorter than this are redacted where a spec field is shown, but not
#: searched for in free text: ``?v=1`` must not blank every "1" in a log.
MIN_SCRUB_LENGTH = 4

T = TypeVar("T")
_PYDANTIC_SECRETS: frozenset[Any] = frozenset({pydantic.SecretStr, pydantic.SecretBytes})


@dataclass(frozen=True)
class Secret:
    """Marks a spec field secret as a whole: it is shown as ``***``.

    Use it as ``Annotated[str, Secret()]`` (also on ``str | None`` and
    ``list[str]`` fields).
    """

    def show(self, value: str) -> str:
        """The value as status, events and logs show it."""
        return REDACTED

    def parts(self, value: str) -> list[str]:
        """The substrings of ``value`` that must never be shown."""
        return [value]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        # "writeOnly": the value is given in the config and never read back.
        schema.update({"secret": True, "writeOnly": True})
        return schema


@dataclass(frozen=True)
class SecretURL(Secret):
    """Marks a URL (or a ``/path?query`` reference) whose credentials are secret.

    The password of the userinfo (the user name when there is no password),
    every query value and the fragment are secret; scheme, host, port, path
    and query keys stay visible: ``https://me:***@example.net/health?token=***``.
    A token in a path segment is not found: mark such a field :class:`Secret`.
    """

    def show(self, value: str) -> str:
        return redact_url(value)

    def parts(self, value: str) -> list[str]:
        return _url_parts(value)

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update({"secret": True, "x-redact": "url-credentials"})
        return schema


def _split_url(value: str) -> tuple[str, str, str, str | None, str | None]:
    """``(scheme_and_slashes, userinfo, rest_before_query, query, fragment)``."""
    before_fragment, hash_, fragment = value.partition("#")
    before_query, qmark, query = before_fragment.partition("?")
    scheme, sep, after = before_query.partition("://")
    userinfo = ""
    if sep:
        authority, slash, path = after.partition("/")
        if "@" in authority:
            userinfo, _, authority = authority.rpartition("@")
        head, rest = scheme + sep, authority + slash + path
    else:
        head, rest = "", before_query
    return head, userinfo, rest, query if qmark else None, fragment if hash_ else None


def _query_items(query: str) -> list[tuple[str, str | None]]:
    items: list[tuple[str, str | None]] = []
    for item in query.split("&"):
        key, eq, val = item.partition("=")
        items.append((key, val) if eq else (item, None))
    return items


def redact_url(value: str) -> str:
    """``value`` with the userinfo password, query values and fragment replaced by ``***``."""
    head, userinfo, rest, query, fragment = _split_url(value)
    out = head
    if userinfo:
        user, colon, _password = userinfo.partition(":")
        out += f"{user}:{REDACTED}@" if colon else f"{REDACTED}@"
    out += rest
    if query is not None:
        shown_items = []
        for key, val in _query_items(query):
            if val is None:  # a bare item ("?abcdef") is a value, not a key
                shown_items.append(REDACTED if key else "")
            else:
                shown_items.append(f"{key}={REDACTED}" if val else f"{key}=")
        out += "?" + "&".join(shown_items)
    if fragment is not None:
        out += "#" + (REDACTED if fragment else "")
    return out


def _url_parts(value: str) -> list[str]:
    _head, userinfo, _rest, query, fragment = _split_url(value)
    parts: list[str] = []
    if userinfo:
        user, colon, password = userinfo.partition(":")
        parts.append(password if colon else user)
    for key, val in _query_items(query or ""):
        parts.append(key if val is None else val)
    if fragment:
        parts.append(fragment)
    return [p for p in parts if p]


def secret_marker(info: FieldInfo) -> Secret | None:
    """The marker of a model field, or None when the field is not secret."""
    for item in info.metadata:
        if isinstance(item, Secret):
            return item
    extra = info.json_schema_extra
    if isinstance(extra, dict) and extra.get("secret"):
        return Secret()
    annotation = info.annotation
    if annotation in _PYDANTIC_SECRETS or set(get_args(annotation)) & _PYDANTIC_SECRETS:
        return Secret()
    return None


@functools.cache
def _secret_fields(model: type[pydantic.BaseModel]) -> tuple[tuple[str, str, Secret | None], ...]:
    """``(attribute, wire key, marker)`` of every field of ``model``."""
    return tuple(
        (name, info.alias or name, secret_marker(info)) for name, info in model.model_fields.items()
    )


def _show(marker: Secret, dumped: Any) -> Any:
    if isinstance(dumped, str):
        return marker.show(dumped)
    if isinstance(dumped, list):
        return [_show(marker, item) for item in dumped]
    if isinstance(dumped, dict):
        return {key: _show(marker, item) for key, item in dumped.items()}
    return dumped  # None, numbers: nothing to hide


def _redact_dump(model: pydantic.BaseModel, data: dict[str, Any]) -> None:
    for name, key, marker in _secret_fields(type(model)):
        if key not in data:
            continue
        if marker is not None:
            data[key] = _show(marker, data[key])
            continue
        value = getattr(model, name, None)
        if isinstance(value, pydantic.BaseModel) and isinstance(data[key], dict):
            _redact_dump(value, data[key])
        elif isinstance(value, list | tuple) and isinstance(data[key], list):
            for item, dumped in zip(value, data[key], strict=False):
                if isinstance(item, pydantic.BaseModel) and isinstance(dumped, dict):
                    _redact_dump(item, dumped)
        elif isinstance(value, Mapping) and isinstance(data[key], dict):
            for sub_key, item in value.items():
                dumped = data[key].get(sub_key)
                if isinstance(item, pydantic.BaseModel) and isinstance(dumped, dict):
                    _redact_dump(item, dumped)


def redact_spec(spec: pydantic.BaseModel) -> dict[str, Any]:
    """The spec as JSON (camelCase keys) with every secret field in its shown form."""
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True)
    _redact_dump(spec, data)
    return data


def _raw_values(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _raw_values(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _raw_values(item)
    elif isinstance(value, pydantic.SecretStr | pydantic.SecretBytes):
        secret = value.get_secret_value()
        yield secret if isinstance(secret, str) else secret.decode("utf-8", "replace")


def _nested_models(value: Any) -> Iterable[pydantic.BaseModel]:
    if isinstance(value, pydantic.BaseModel):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _nested_models(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _nested_models(item)


def secret_values(spec: pydantic.BaseModel) -> set[str]:
    """Every secret substring held by ``spec`` (nested models included)."""
    found: set[str] = set()
    for name, _key, marker in _secret_fields(type(spec)):
        value = getattr(spec, name, None)
        if marker is not None:
            for raw in _raw_values(value):
                for part in marker.parts(raw):
                    found.add(part)
                    # The same secret as it may appear once decoded or encoded.
                    found.add(unquote_plus(part))
                    found.add(quote(part, safe=""))
        else:
            for nested in _nested_models(value):
                found |= secret_values(nested)
    return {v for v in found if v}


def shown(spec: pydantic.BaseModel, field: str) -> str:
    """How a (secret or not) string field of ``spec`` may be shown to people."""
    value = getattr(spec, field)
    info = type(spec).model_fields[field]
    marker = secret_marker(info)
    text = "" if value is None else str(value)
    return marker.show(text) if marker is not None else text


class Scrubber:
    """Replaces every known secret value in strings (and JSON-like values) by ``***``.

    Thread-safe; values are only ever added (an old password stays secret
    after a reload). Empty scrubbers cost one attribute check per call.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.add(values)

    @classmethod
    def for_spec(cls, spec: pydantic.BaseModel) -> Scrubber:
        return cls(secret_values(spec))

    def add(self, values: Iterable[str]) -> None:
        new = {v for v in values if len(v) >= MIN_SCRUB_LENGTH}
        with self._lock:
            if new <= self._values:
                return
            self._values = self._values | new
            # Longest first, so a secret that contains another is replaced whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def add_spec(self, spec: pydantic.BaseModel) -> None:
        self.add(secret_values(spec))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def value(self, value: T) -> T:
        """``value`` with every string in it (keys too) scrubbed; other types as they are."""
        if self._pattern is None:
            return value
        return self._value(value)  # type: ignore[no-any-return]

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._value(k): self._value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._value(v) for v in value)
        return value


class _ScrubbingFormatter(logging.Formatter):
    """Formats with the handler's own formatter, then scrubs the whole line (tracebacks too)."""

    def __init__(self, inner: logging.Formatter | None, scrubber: Scrubber) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.text(self.inner.format(record))


def install_log_redaction(scrubber: Scrubber, logger: logging.Logger | None = None) -> None:
    """Scrub every line the handlers of ``logger`` (the root logger) write.

    Call once per daemon process after logging is set up. Uncaught exceptions
    (main and other threads) are routed through the same logger, so their
    messages are scrubbed too instead of going to stderr raw.
    """
    target = logger or logging.getLogger()
    for handler in target.handlers:
        current = handler.formatter
        if isinstance(current, _ScrubbingFormatter):
            current.scrubber = scrubber
        else:
            handler.setFormatter(_ScrubbingFormatter(current, scrubber))
    crash_log = logging.getLogger("routerd.crash")

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        crash_log.critical("uncaught exception", exc_info=(kind, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        crash_log.error(
            "uncaught exception in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
