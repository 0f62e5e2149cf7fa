"""Both engines together, with their outputs fed back in: what routerd serve runs.

A virtual event is an ordinary event: every one the engines produce (an
EventRule firing, a DerivedEvent's ``.asserted``) goes on to the EventRules
before ``feed`` returns, and a DerivedEvent's new phase is the status other
DerivedEvents read. So chains are evaluated here, in order, and the caller
stores the whole cascade of one input at once; it must not feed the virtual
events back a second time. The chain-depth guard bounds a chain of
EventRules; DerivedEvents cannot read each other in a cycle (validation).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from routerd.model import Event
from routerd.rules import DERIVED_EVENT
from routerd.rules import EVENT_RULE
from routerd.rules import RULES_API_VERSION
from routerd.rules.derived import DerivedDef
from routerd.rules.derived import DerivedEventEngine
from routerd.rules.eventrule import EventRuleEngine
from routerd.rules.eventrule import RuleDef
from routerd.timefmt import rfc3339

#: A cascade longer than this is cut short (it cannot happen within the guards).
MAX_CASCADE = 10_000
ExternalLookup = Callable[[str], Mapping[str, Any] | None]


class RulesCore:
    """EventRules and DerivedEvents of one config; sans-I/O."""

    def __init__(
        self,
        rules: Iterable[RuleDef],
        derived: Iterable[DerivedDef],
        lookup: ExternalLookup,
        *,
        started: float = 0.0,
    ) -> None:
        self.events = EventRuleEngine(rules)
        self.derived = DerivedEventEngine(derived)
        #: ``<Kind>/<name>`` of every resource some DerivedEvent reads.
        self.read_by_derived = self.derived.keys()
        self.external = lookup
        self.started = started
        self.truncated = 0

    # -- input ---------------------------------------------------------------------
    def feed(self, ev: Event) -> list[Event]:
        """One stored event in; every virtual event it causes out (cascade included)."""
        return self._cascade(self.events.feed(ev))

    def wants(self, topic: str) -> bool:
        """Whether some EventRule takes events of ``topic`` (others need no parsing)."""
        return self.events.wants(topic)

    def on_status(self, key: str | None, now: float) -> list[Event]:
        """A resource's status changed (``None``: evaluate every DerivedEvent)."""
        return self._cascade(self.derived.on_status(key, self.lookup, now))

    def advance(self, now: float) -> list[Event]:
        """Fire the timers of both engines that are due before ``now``."""
        first = self.events.advance(now) + self.derived.advance(now)
        first.sort(key=lambda e: e.time)
        return self._cascade(first)

    def next_deadline(self) -> float | None:
        found = [d for d in (self.events.next_deadline(), self.derived.next_deadline()) if d]
        return min(found) if found else None

    def _cascade(self, first: list[Event]) -> list[Event]:
        if not first:
            return first
        out: list[Event] = []
        todo = deque(first)
        while todo:
            if len(out) >= MAX_CASCADE:
                self.truncated += len(todo)
                break
            ev = todo.popleft()
            out.append(ev)
            kind = ev.attributes.get("resource.kind")
            if kind in (DERIVED_EVENT, EVENT_RULE):
                # Its status changed: DerivedEvents reading it are evaluated now.
                key = f"{kind}/{ev.attributes.get('resource.name')}"
                if key in self.read_by_derived:
                    todo.extend(self.derived.on_status(key, self.lookup, ev.time))
                else:  # as on_status would: hysteresis deadlines passed by now
                    todo.extend(self.derived.advance(ev.time))
            todo.extend(self.events.feed(ev))
        return out

    # -- status --------------------------------------------------------------------
    def lookup(self, key: str) -> Mapping[str, Any] | None:
        kind, _, name = key.partition("/")
        if kind == EVENT_RULE and name in self.events.by_name:
            return self.resource_status(kind, name)
        if kind == DERIVED_EVENT and name in self.derived.items:
            return self.resource_status(kind, name)
        return self.external(key)

    def resource_status(self, kind: str, name: str) -> dict[str, Any]:
        """A ResourceStatus document for one rule (the shape daemons report)."""
        ref = {"apiVersion": RULES_API_VERSION, "kind": kind, "name": name}
        if kind == EVENT_RULE:
            observed = self.events.status(name)
            warnings = observed["warnings"]
            return {
                "resource": ref,
                "phase": "Installed",
                "since": rfc3339(self.started),
                "conditions": [
                    {
                        "type": "Warnings",
                        "status": "True" if warnings else "False",
                        "reason": "Warnings" if warnings else "NoWarnings",
                        "message": "; ".join(warnings),
                        "lastTransitionTime": rfc3339(self.started),
                    }
                ],
                "observed": observed,
            }
        observed = self.derived.status(name)
        state = observed["state"]
        pending = observed["pendingTransition"]
        since = observed["since"] or rfc3339(self.started)
        return {
            "resource": ref,
            "phase": self.derived.phase(name),
            "since": pending["since"] if pending else since,
            "conditions": [
                {
                    "type": "Asserted",
                    "status": "True" if state == "Asserted" else "False",
                    "reason": observed["reason"],
                    "message": "; ".join(
                        f"{i['value']}: {i['stale']}" for i in observed["inputs"] if i["stale"]
                    ),
                    "lastTransitionTime": since,
                }
            ],
            "observed": observed,
        }

    # -- state ---------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        """``<Kind>/<name>`` of every rule whose state changed since the last call."""
        return {f"{EVENT_RULE}/{n}" for n in self.events.take_dirty()} | {
            f"{DERIVED_EVENT}/{n}" for n in self.derived.take_dirty()
        }

    def names(self) -> list[str]:
        return [f"{EVENT_RULE}/{n}" for n in self.events.by_name] + [
            f"{DERIVED_EVENT}/{n}" for n in self.derived.items
        ]

    def dump(self, key: str) -> dict[str, Any]:
        kind, _, name = key.partition("/")
        return self.events.dump(name) if kind == EVENT_RULE else self.derived.dump(name)

    def load(self, key: str, data: dict[str, Any]) -> None:
        kind, _, name = key.partition("/")
        if kind == EVENT_RULE:
            self.events.load(name, data)
        else:
            self.derived.load(name, data)
