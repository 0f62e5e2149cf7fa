"""Event field paths (``attributes.<key>``, ``resource.name`` ...) and ``${...}`` templates."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
import re

from routerd.model import Event
from routerd.model import Scalar

#: Paths that name a field of an event besides ``attributes.<key>``.
#: ``resource.*`` and ``daemon.kind`` are attributes every event carries (DESIGN.md §6).
EVENT_FIELDS = ("resource.name", "resource.kind", "daemon.kind", "topic", "severity", "reason")
#: Paths allowed in ``correlateBy``.
CORRELATION_FIELDS = ("resource.name", "resource.kind", "daemon.kind")

Getter = Callable[[Event], Scalar]


def check_field_path(path: str, allowed: tuple[str, ...] = EVENT_FIELDS) -> str:
    """Return ``path`` if it names an event field; raise ``ValueError`` naming the choices."""
    if path.startswith("attributes.") and len(path) > len("attributes."):
        return path
    if path in allowed:
        return path
    raise ValueError(
        f"{path!r} is not an event field (expected attributes.<key> or one of {', '.join(allowed)})"
    )


def field_getter(path: str) -> Getter:
    """A function reading ``path`` from an event (None when the event does not have it)."""
    if path.startswith("attributes."):
        key = path[len("attributes.") :]
        return lambda ev: ev.attributes.get(key)
    if path in ("resource.name", "resource.kind", "daemon.kind"):
        return lambda ev: ev.attributes.get(path)
    if path == "topic":
        return lambda ev: ev.topic
    if path == "severity":
        return lambda ev: ev.severity
    if path == "reason":
        return lambda ev: ev.reason
    raise ValueError(check_field_path(path))


# -- templates ---------------------------------------------------------------------
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
#: Variables of an EventRule's ``emit`` templates (besides ``attributes.<key>``).
EMIT_VARIABLES = (
    "resource.name",
    "resource.kind",
    "daemon.kind",
    "topic",
    "severity",
    "reason",
    "time",
    "count",
    "correlation",
    "rule",
)


@dataclass(frozen=True)
class Template:
    """A string with ``${name}`` variables; ``$${`` is a literal ``${``.

    A template that is exactly one variable renders to that variable's value
    with its JSON type (``count: ${count}`` gives a number); anything else
    renders to a string, a missing value as the empty string.
    """

    parts: tuple[str | tuple[str], ...]

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(p[0] for p in self.parts if isinstance(p, tuple))

    @property
    def is_constant(self) -> bool:
        return not self.variables

    def render(self, lookup: Callable[[str], Scalar]) -> tuple[Scalar, list[str]]:
        """The rendered value and the variables that had no value."""
        missing: list[str] = []
        if len(self.parts) == 1 and isinstance(self.parts[0], tuple):
            value = lookup(self.parts[0][0])
            if value is None:
                missing.append(self.parts[0][0])
            return value, missing
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, tuple):
                value = lookup(part[0])
                if value is None:
                    missing.append(part[0])
                    continue
                out.append(_text(value))
            else:
                out.append(part)
        return "".join(out), missing


def _text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_template(text: str) -> Template:
    """Split ``text`` into literal parts and variables; ``ValueError`` on a bad ``${``."""
    parts: list[str | tuple[str]] = []
    buffer = ""
    pos = 0
    for m in _VAR.finditer(text):
        buffer += text[pos : m.start()]
        pos = m.end()
        if m.group(0) == "$${":
            buffer += "${"
            continue
        if m.group(1) is None:
            raise ValueError(f"template {text!r}: '${{' without a closing '}}'")
        name = m.group(1).strip()
        if not name:
            raise ValueError(f"template {text!r}: empty variable '${{}}'")
        if buffer:
            parts.append(buffer)
            buffer = ""
        parts.append((name,))
    buffer += text[pos:]
    if buffer or not parts:
        parts.append(buffer)
    return Template(tuple(parts))


def check_emit_variable(name: str, *, correlated: bool) -> str | None:
    """None when an EventRule emit template can resolve ``name``, else the problem."""
    if name.startswith("attributes.") and len(name) > len("attributes."):
        return None
    if name == "correlation" and not correlated:
        return "${correlation} cannot resolve: the rule has no correlateBy"
    if name in EMIT_VARIABLES:
        return None
    return (
        f"template variable ${{{name}}} cannot resolve "
        f"(expected attributes.<key> or one of {', '.join(EMIT_VARIABLES)})"
    )


def template_value(template: Template, values: Mapping[str, Scalar]) -> Scalar:
    """Render with a plain mapping (tests and constant attributes)."""
    return template.render(values.get)[0]
