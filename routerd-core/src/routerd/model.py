"""Wire types of the ``/v1`` API (DESIGN.md §4-6).

Every type serialises with ``to_dict()`` to the exact JSON the API returns and
parses with ``from_dict()``; times are POSIX floats inside and RFC 3339 UTC
strings on the wire; cursors are ints inside and decimal strings on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal

from routerd.timefmt import parse_rfc3339
from routerd.timefmt import rfc3339

DAEMON_API_VERSION = "daemon.routerd.net/v1alpha1"
RESOURCE_API_VERSION = "net.routerd.net/v1alpha1"

#: The one phase vocabulary of every resource (DESIGN.md §5).
PHASES = (
    "Pending",
    "Bound",
    "Applied",
    "Up",
    "Installed",
    "Healthy",
    "Unhealthy",
    "Error",
)
#: Phases of the daemon process itself.
DAEMON_PHASES = ("Starting", "Running", "Stopping")
SEVERITIES = ("debug", "info", "warning", "error")
CONDITION_STATUSES = ("True", "False", "Unknown")

Severity = Literal["debug", "info", "warning", "error"]
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class ResourceRef:
    """Which configured resource a status or event is about."""

    api_version: str
    kind: str
    name: str

    def to_dict(self) -> dict[str, str]:
        return {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResourceRef:
        return cls(str(data["apiVersion"]), str(data["kind"]), str(data["name"]))

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Event:
    """One entry of a daemon's event log."""

    cursor: int
    time: float
    topic: str
    severity: Severity
    reason: str
    message: str
    attributes: dict[str, Scalar] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cursor": str(self.cursor),
            "time": rfc3339(self.time),
            "topic": self.topic,
            "severity": self.severity,
            "reason": self.reason,
            "message": self.message,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Parse an event; raises ``KeyError``/``ValueError``/``TypeError`` when malformed."""
        severity = data["severity"]
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}")
        attributes = data.get("attributes", {})
        if not isinstance(attributes, dict):
            raise TypeError("attributes must be an object")
        return cls(
            cursor=int(data["cursor"]),
            time=parse_rfc3339(str(data["time"])),
            topic=str(data["topic"]),
            severity=severity,
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            attributes=attributes,
        )


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition: ``status`` is "True", "False" or "Unknown"."""

    type: str
    status: str
    reason: str
    message: str
    last_transition_time: float

    def to_dict(self) -> dict[str, str]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": rfc3339(self.last_transition_time),
        }


@dataclass(frozen=True)
class ResourceStatus:
    """The status of one resource a daemon serves."""

    resource: ResourceRef
    phase: str
    since: float
    conditions: tuple[Condition, ...]
    observed: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource.to_dict(),
            "phase": self.phase,
            "since": rfc3339(self.since),
            "conditions": [c.to_dict() for c in self.conditions],
            "observed": self.observed,
        }


@dataclass(frozen=True)
class DaemonInfo:
    """Identity of a daemon process."""

    kind: str
    name: str
    pid: int
    version: str
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "pid": self.pid,
            "version": self.version,
            "startedAt": rfc3339(self.started_at),
        }


@dataclass(frozen=True)
class DaemonStatus:
    """``GET /v1/status``."""

    daemon: DaemonInfo
    phase: str
    resources: tuple[ResourceStatus, ...]
    runtime: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": DAEMON_API_VERSION,
            "kind": "DaemonStatus",
            "daemon": self.daemon.to_dict(),
            "phase": self.phase,
            "resources": [r.to_dict() for r in self.resources],
            "runtime": self.runtime,
        }


@dataclass(frozen=True)
class CommandResult:
    """The answer to ``POST /v1/commands/<name>``."""

    command: str
    accepted: bool
    message: str
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": DAEMON_API_VERSION,
            "kind": "CommandResult",
            "command": self.command,
            "accepted": self.accepted,
            "message": self.message,
            "result": self.result or {},
        }
