"""Phase, conditions and observed facts of the resource a daemon serves."""

from __future__ import annotations

from collections.abc import Callable
import copy
import threading
from typing import Any

from routerd.model import PHASES
from routerd.model import Condition
from routerd.model import ResourceRef
from routerd.model import ResourceStatus
from routerd.secrets import Scrubber

PhaseListener = Callable[[str, str, str, str, list[Condition]], None]
"""``(old, new, reason, message, conditions)``, called after a phase change."""


class ResourceState:
    """Thread-safe holder; every change records its real transition time.

    ``generation`` grows with every change of what :meth:`snapshot` shows,
    so the daemon serializes its status once per change, not per request.

    What an engine sets passes through ``scrub`` (the daemon's secret
    scrubber) first, so status, phase events and the phase hook never hold a
    secret of the spec, whatever text the engine built from it.
    """

    def __init__(
        self,
        ref: ResourceRef,
        wall: Callable[[], float],
        on_phase: PhaseListener | None = None,
        on_condition: Callable[[Condition], None] | None = None,
        scrub: Scrubber | None = None,
    ) -> None:
        self.ref = ref
        self._scrub = scrub if scrub is not None else Scrubber()
        self._wall = wall
        self._lock = threading.Lock()
        self.phase = "Pending"
        self.reason = "Starting"
        self.message = ""
        self.since = wall()
        self._conditions: dict[str, Condition] = {}
        self._observed: dict[str, Any] = {}
        self.generation = 0
        self._on_phase = on_phase
        self._on_condition = on_condition

    def set_phase(self, phase: str, reason: str, message: str = "") -> bool:
        """Move to ``phase``; returns True when it changed. ``since`` only moves then."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; use one of {', '.join(PHASES)}")
        reason, message = self._scrub.text(reason), self._scrub.text(message)
        with self._lock:
            old = self.phase
            self.reason, self.message = reason, message
            if old == phase:
                return False
            self.phase = phase
            self.since = self._wall()
            self.generation += 1
            conditions = list(self._conditions.values())
        if self._on_phase is not None:
            self._on_phase(old, phase, reason, message, conditions)
        return True

    def set_condition(
        self, type_: str, status: bool | None, reason: str, message: str = ""
    ) -> None:
        """Set a condition; ``lastTransitionTime`` moves only when the status does."""
        text = "Unknown" if status is None else ("True" if status else "False")
        reason, message = self._scrub.text(reason), self._scrub.text(message)
        with self._lock:
            prev = self._conditions.get(type_)
            when = prev.last_transition_time if prev and prev.status == text else self._wall()
            cond = Condition(type_, text, reason, message, when)
            if cond != prev:
                self._conditions[type_] = cond
                self.generation += 1
        if self._on_condition is not None and (prev is None or prev.status != text):
            self._on_condition(cond)

    def remove_condition(self, type_: str) -> None:
        with self._lock:
            if self._conditions.pop(type_, None) is not None:
                self.generation += 1

    def condition(self, type_: str) -> Condition | None:
        with self._lock:
            return self._conditions.get(type_)

    def set_observed(self, observed: dict[str, Any]) -> None:
        """Replace ``observed`` (a JSON-able mapping; copied)."""
        observed = self._scrub.value(observed)
        with self._lock:
            # No equality test to skip the bump: 1 == 1.0 == True, yet their JSON differs.
            self._observed = copy.deepcopy(observed)
            self.generation += 1

    def update_observed(self, **values: Any) -> None:
        values = self._scrub.value(values)
        with self._lock:
            self._observed.update(copy.deepcopy(values))
            self.generation += 1

    def snapshot(self) -> ResourceStatus:
        with self._lock:
            return ResourceStatus(
                resource=self.ref,
                phase=self.phase,
                since=self.since,
                conditions=tuple(self._conditions.values()),
                observed=copy.deepcopy(self._observed),
            )
