"""``${Kind/name.status.<path>}``: a value of another resource's status.

``<path>`` starts with ``phase``, ``since``, ``conditions.<Type>`` (the
condition's ``status``; ``conditions.<Type>.reason`` etc. for another field) or
``observed.<key>...`` (nested keys; a number indexes a list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import re
from typing import Any

_REF = re.compile(
    r"^\$\{\s*(?P<kind>[A-Z][A-Za-z0-9]*)/(?P<name>[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
    r"\.status\.(?P<path>[^}\s]+)\s*\}$"
)
STATUS_ROOTS = ("phase", "since", "conditions", "observed")
CONDITION_FIELDS = ("status", "reason", "message", "lastTransitionTime")


@dataclass(frozen=True)
class StatusRef:
    kind: str
    name: str
    path: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    def __str__(self) -> str:
        return f"${{{self.key}.status.{'.'.join(self.path)}}}"

    def resolve(self, status: Mapping[str, Any] | None) -> Any:
        """The value in a ResourceStatus document, or None when it is not there."""
        if status is None:
            return None
        root, rest = self.path[0], self.path[1:]
        if root in ("phase", "since"):
            return status.get(root)
        if root == "conditions":
            field = rest[1] if len(rest) > 1 else "status"
            for cond in status.get("conditions") or ():
                if isinstance(cond, dict) and cond.get("type") == rest[0]:
                    return cond.get(field)
            return None
        value: Any = status.get("observed")
        for seg in rest:
            if isinstance(value, dict):
                value = value.get(seg)
            elif isinstance(value, list) and seg.isdigit() and int(seg) < len(value):
                value = value[int(seg)]
            else:
                return None
        return value


def parse_status_ref(text: str) -> StatusRef:
    """Parse a reference; ``ValueError`` saying what is expected."""
    m = _REF.match(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not a status reference (expected ${{Kind/name.status.<path>}}, "
            "e.g. ${HealthCheck/internet.status.phase})"
        )
    path = tuple(m.group("path").split("."))
    if any(not seg for seg in path):
        raise ValueError(f"{text!r}: empty segment in the status path")
    root = path[0]
    if root not in STATUS_ROOTS:
        raise ValueError(
            f"{text!r}: status.{root} does not exist (expected status.phase, status.since, "
            "status.conditions.<Type>[.<field>] or status.observed.<key>)"
        )
    if root in ("phase", "since") and len(path) > 1:
        raise ValueError(f"{text!r}: status.{root} is a single value")
    if root == "conditions" and not (
        2 <= len(path) <= 3 and (len(path) == 2 or path[2] in CONDITION_FIELDS)
    ):
        raise ValueError(
            f"{text!r}: expected status.conditions.<Type> or status.conditions.<Type>.<field> "
            f"with a field of {', '.join(CONDITION_FIELDS)}"
        )
    if root == "observed" and len(path) < 2:
        raise ValueError(f"{text!r}: expected status.observed.<key>")
    return StatusRef(m.group("kind"), m.group("name"), path)
