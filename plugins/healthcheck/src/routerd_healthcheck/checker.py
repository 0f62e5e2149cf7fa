"""Rise/fall thresholds over probe results (sans-I/O: times are arguments).

Like keepalived's ``rise``/``fall`` and mwan3's ``up``/``down``: one lost
probe does not flap a route. ``Pending`` until a threshold is first met; a
probe that cannot run at all is ``Error`` until one runs again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from routerd.timefmt import rfc3339

HISTORY = 20


@dataclass(frozen=True)
class Outcome:
    """One probe result as the checker sees it."""

    time: float
    ok: bool
    latency: float | None
    detail: str
    error: str | None = None
    address: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "time": rfc3339(self.time),
            "at": self.time,
            "ok": self.ok,
            "latencyMs": None if self.latency is None else round(self.latency * 1000, 3),
            "detail": self.detail,
            "error": self.error,
            "address": self.address,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        latency = data.get("latencyMs")
        return cls(
            time=float(data["at"]),
            ok=bool(data["ok"]),
            latency=None if latency is None else float(latency) / 1000,
            detail=str(data.get("detail", "")),
            error=data.get("error"),
            address=data.get("address"),
        )


class Checker:
    """Counts consecutive results and decides the verdict."""

    def __init__(self, healthy_threshold: int, unhealthy_threshold: int) -> None:
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.verdict = "Pending"  # Pending | Healthy | Unhealthy | Error
        self.consecutive_ok = 0
        self.consecutive_fail = 0
        self.total = 0
        self.successes = 0
        self.failures = 0
        self.errors = 0
        self.first_failure: float | None = None  # start of the current failure run
        self.last_failure: float | None = None
        self.last_success: float | None = None
        self.history: deque[Outcome] = deque(maxlen=HISTORY)

    def record(self, outcome: Outcome) -> str | None:
        """Account for ``outcome``; return the new verdict when it changed."""
        self.total += 1
        self.history.append(outcome)
        before = self.verdict
        if outcome.error is not None:
            self.errors += 1
            self.consecutive_ok = self.consecutive_fail = 0
            self.verdict = "Error"
        elif outcome.ok:
            self.successes += 1
            self.consecutive_ok += 1
            self.consecutive_fail = 0
            self.last_success = outcome.time
            self.first_failure = None
            if self.consecutive_ok >= self.healthy_threshold:
                self.verdict = "Healthy"
            elif self.verdict == "Error":
                self.verdict = "Pending"
        else:
            self.failures += 1
            self.consecutive_fail += 1
            self.consecutive_ok = 0
            self.last_failure = outcome.time
            if self.first_failure is None:
                self.first_failure = outcome.time
            if self.consecutive_fail >= self.unhealthy_threshold:
                self.verdict = "Unhealthy"
            elif self.verdict == "Error":
                self.verdict = "Pending"
        return self.verdict if self.verdict != before else None

    def stall(self) -> None:
        """Probes stopped finishing: the verdict is no longer current.

        ``Error`` until a probe finishes again, then thresholds from scratch.
        """
        self.verdict = "Error"
        self.consecutive_ok = self.consecutive_fail = 0

    def set_thresholds(self, healthy: int, unhealthy: int) -> str | None:
        """Apply new thresholds to the current run; return the verdict if it changed."""
        self.healthy_threshold, self.unhealthy_threshold = healthy, unhealthy
        before = self.verdict
        if self.consecutive_ok >= healthy and self.verdict != "Error":
            self.verdict = "Healthy"
        elif self.consecutive_fail >= unhealthy and self.verdict != "Error":
            self.verdict = "Unhealthy"
        return self.verdict if self.verdict != before else None

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "consecutiveSuccesses": self.consecutive_ok,
            "consecutiveFailures": self.consecutive_fail,
            "totalProbes": self.total,
            "successes": self.successes,
            "failures": self.failures,
            "errors": self.errors,
            "firstFailureAt": self.first_failure,
            "lastFailureAt": self.last_failure,
            "lastSuccessAt": self.last_success,
            "history": [o.to_json() for o in self.history],
        }

    def restore(self, data: dict[str, Any], now: float, fresh_for: float) -> None:
        """Load counters and history; keep the verdict only if the last probe is recent.

        A verdict older than ``fresh_for`` seconds says nothing about the path
        now, so the check starts ``Pending`` again (counters and history stay).
        """
        self.total = int(data.get("totalProbes", 0))
        self.successes = int(data.get("successes", 0))
        self.failures = int(data.get("failures", 0))
        self.errors = int(data.get("errors", 0))
        self.first_failure = _opt_float(data.get("firstFailureAt"))
        self.last_failure = _opt_float(data.get("lastFailureAt"))
        self.last_success = _opt_float(data.get("lastSuccessAt"))
        for item in data.get("history", [])[-HISTORY:]:
            self.history.append(Outcome.from_json(item))
        last = self.history[-1].time if self.history else None
        verdict = data.get("verdict")
        if verdict in ("Healthy", "Unhealthy") and last is not None and now - last <= fresh_for:
            self.verdict = verdict
            self.consecutive_ok = int(data.get("consecutiveSuccesses", 0))
            self.consecutive_fail = int(data.get("consecutiveFailures", 0))


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def iso(value: float | None) -> str | None:
    return None if value is None else rfc3339(value)
