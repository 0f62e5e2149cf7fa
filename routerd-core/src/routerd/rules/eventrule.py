"""The EventRule engine: many rules over one event stream, sans-I/O.

``feed(event)`` first fires every timer due before the event's time, then
hands the event to each rule whose matches it satisfies; ``advance(now)``
fires timers due before ``now``. Whoever drives the engine decides what
``now`` is: the wall clock (less a grace for late events) while live, the
event times while a backlog is replayed. Either way the outputs are the same,
because nothing in here reads a clock.

Guards: a rule never consumes an event it emitted itself (self-loop), and an
event whose ``chainDepth`` reached :data:`MAX_CHAIN_DEPTH` is consumed by no
rule (a chain of rules, or a cycle between two, is bounded). Correlation keys
are bounded per rule (:data:`MAX_KEYS`, least recently seen evicted and
counted).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
import heapq
from typing import Any

from routerd.model import Event
from routerd.model import Scalar
from routerd.rules import CHAIN_DEPTH
from routerd.rules import ENGINE_KIND
from routerd.rules import EVENT_RULE
from routerd.rules import MAX_CHAIN_DEPTH
from routerd.rules import MAX_KEYS
from routerd.rules.fields import Getter
from routerd.rules.fields import Template
from routerd.rules.fields import field_getter
from routerd.rules.fields import parse_template
from routerd.rules.operators import DEFAULT_REASONS
from routerd.rules.operators import Counters
from routerd.rules.operators import Fire
from routerd.rules.operators import Operator
from routerd.rules.operators import State
from routerd.rules.operators import build
from routerd.rules.operators import depth_of
from routerd.rules.spec import EventRuleSpec
from routerd.rules.spec import Match
from routerd.timefmt import rfc3339
from routerd.topics import topic_matches

Key = tuple[str, ...]
_TOPIC_CACHE = 4096
#: Timer pushes between two looks at how many heap entries are stale.
_COMPACT_EVERY = 1024


@dataclass(frozen=True)
class RuleDef:
    name: str
    spec: EventRuleSpec


def _same(a: Scalar, b: Scalar) -> bool:
    # 1 == True in Python; in a filter they are different values.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


class _Match:
    def __init__(self, m: Match) -> None:
        self.globs = m.topic
        self.where: tuple[tuple[Getter, tuple[Scalar, ...]], ...] = tuple(
            (field_getter(path), tuple(v) if isinstance(v, list) else (v,))
            for path, v in m.where.items()
        )

    def topic_ok(self, topic: str) -> bool:
        return any(topic_matches(g, topic) for g in self.globs)

    def accepts(self, ev: Event) -> bool:
        for get, values in self.where:
            got = get(ev)
            if not any(_same(got, v) for v in values):
                return False
        return True


@dataclass
class _Stats:
    fires: int = 0
    last_fired: float | None = None
    matched: int = 0
    evictions: int = 0
    too_deep: int = 0
    missing_key: dict[str, int] = field(default_factory=dict)
    unresolved: dict[str, int] = field(default_factory=dict)

    def dump(self, suppressed: int) -> dict[str, Any]:
        return {
            "fires": self.fires,
            "lastFired": self.last_fired,
            "matched": self.matched,
            "evictions": self.evictions,
            "tooDeep": self.too_deep,
            "missingKey": self.missing_key,
            "unresolved": self.unresolved,
            "suppressed": suppressed,
        }


class _Rule:
    def __init__(self, index: int, rdef: RuleDef, max_keys: int) -> None:
        self.index = index
        self.name = rdef.name
        self.spec = rdef.spec
        self.counters = Counters()
        self.op: Operator[Any]
        self.op, matches = build(rdef.spec.pattern, self.counters)
        self.matches = [_Match(m) for m in matches]
        self.filtered = any(m.where for m in self.matches)
        # Every correlation field is an attribute (CORRELATION_FIELDS): (path, its name).
        self.correlate = [(p, p.removeprefix("attributes.")) for p in rdef.spec.correlate_by]
        #: The attribute of a rule correlating by one field (read inline per delivery).
        self.single = self.correlate[0][1] if len(self.correlate) == 1 else None
        self.max_keys = max_keys
        self.keys: OrderedDict[Key, State] = OrderedDict()
        self.stats = _Stats()
        emit = rdef.spec.emit
        self.message: Template | None = (
            parse_template(emit.message) if isinstance(emit.message, str) and emit.message else None
        )
        self.attributes: list[tuple[str, Template | Scalar]] = [
            (k, parse_template(v) if isinstance(v, str) else v) for k, v in emit.attributes.items()
        ]
        self.reason = emit.reason or DEFAULT_REASONS[self.op.name]
        # Read once per delivery: the operator's class flags, as plain attributes.
        self.stateless = self.op.stateless
        self.timed = self.op.timed
        self.keeps_keys = self.op.keeps_keys

    def key_of(self, ev: Event) -> Key | None:
        """The event's correlation key; None (counted) when it lacks a field."""
        attrs = ev.attributes
        values: list[str] = []
        for path, name in self.correlate:
            v = attrs.get(name)
            if v is None or v == "":
                self.count_missing(path)
                return None
            values.append(v if type(v) is str else str(v))
        return tuple(values)

    def count_missing(self, path: str) -> None:
        self.stats.missing_key[path] = self.stats.missing_key.get(path, 0) + 1


class EventRuleEngine:
    """Every EventRule of a config; see the module docstring."""

    def __init__(
        self,
        rules: Iterable[RuleDef],
        *,
        max_keys: int = MAX_KEYS,
        max_depth: int = MAX_CHAIN_DEPTH,
    ) -> None:
        ordered = sorted(rules, key=lambda r: r.name)
        self.rules = [_Rule(i, r, max_keys) for i, r in enumerate(ordered)]
        self.by_name = {r.name: r for r in self.rules}
        self.max_depth = max_depth
        #: The engine's clock: the newest event time or ``advance`` time seen.
        self.now = float("-inf")
        self._timers: list[tuple[float, int, int, Key]] = []
        self._seq = 0
        self._dispatch: dict[str, list[tuple[_Rule, tuple[int, ...]]]] = {}
        self._dirty: set[str] = set()
        self._pushes = 0

    # -- input ---------------------------------------------------------------------
    def feed(self, ev: Event) -> list[Event]:
        """Fire timers due before ``ev.time``, then evaluate ``ev``; returns what to publish."""
        t = ev.time
        timers = self._timers
        if timers and timers[0][0] < t:
            out = self.advance(t)
        else:
            out = []
            if t > self.now:
                self.now = t
        candidates = self._dispatch.get(ev.topic)
        if candidates is None:
            candidates = self._candidates(ev.topic)
        if not candidates:
            return out
        depth = depth_of(ev)
        too_deep = depth >= self.max_depth
        own = ev.attributes.get("resource.name") if _is_rule_event(ev) else None
        dirty = self._dirty
        for rule, topic_roles in candidates:
            if own is not None and rule.name == own:
                continue  # a rule never consumes its own output
            if rule.filtered:
                roles = tuple(i for i in topic_roles if rule.matches[i].accepts(ev))
                if not roles:
                    continue
            else:
                roles = topic_roles
            dirty.add(rule.name)
            if too_deep:
                rule.stats.too_deep += 1
                continue
            fired = self._deliver(rule, roles, ev, depth)
            if fired is not None:
                out.append(fired)
        return out

    def advance(self, now: float) -> list[Event]:
        """Fire every timer whose deadline is before ``now`` (in deadline order)."""
        if now > self.now:
            self.now = now
        out: list[Event] = []
        timers = self._timers
        while timers and timers[0][0] < now:
            deadline, seq, index, key = heapq.heappop(timers)
            rule = self.rules[index]
            st = rule.keys.get(key)
            if st is None or st.deadline != deadline or st.seq != seq:
                continue  # cancelled, moved or evicted
            fire = rule.op.on_timer(st)
            self._dirty.add(rule.name)
            if rule.op.idle(st):
                del rule.keys[key]
            if fire is not None:
                out.append(self._emit(rule, key, fire))
        return out

    def next_deadline(self) -> float | None:
        """The earliest pending timer (it fires once ``advance`` is given a later time)."""
        timers = self._timers
        while timers:
            deadline, seq, index, key = timers[0]
            st = self.rules[index].keys.get(key)
            if st is not None and st.deadline == deadline and st.seq == seq:
                return deadline
            heapq.heappop(timers)
        return None

    def wants(self, topic: str) -> bool:
        """Whether a rule matches ``topic`` (by topic alone; ``where`` may still refuse)."""
        candidates = self._dispatch.get(topic)
        return bool(candidates if candidates is not None else self._candidates(topic))

    def _candidates(self, topic: str) -> list[tuple[_Rule, tuple[int, ...]]]:
        found = []
        for rule in self.rules:
            roles = tuple(i for i, m in enumerate(rule.matches) if m.topic_ok(topic))
            if roles:
                found.append((rule, roles))
        if len(self._dispatch) >= _TOPIC_CACHE:
            self._dispatch.clear()
        self._dispatch[topic] = found
        return found

    def _deliver(self, rule: _Rule, roles: tuple[int, ...], ev: Event, depth: int) -> Event | None:
        key: Key | None
        if rule.single is not None:
            v = ev.attributes.get(rule.single)
            if v is None or v == "":
                rule.count_missing(rule.correlate[0][0])
                return None
            key = (v if type(v) is str else str(v),)
        elif rule.correlate:
            key = rule.key_of(ev)
            if key is None:
                return None
        else:
            key = ()
        rule.stats.matched += 1
        op = rule.op
        if rule.stateless:
            fire = op.on_event(_NO_STATE, roles, ev, depth)
            return None if fire is None else self._emit(rule, key, fire)
        keys = rule.keys
        st = keys.get(key)
        if st is None:
            st = op.new()
            keys[key] = st
            if len(keys) > rule.max_keys:
                keys.popitem(last=False)  # least recently seen; its timer goes stale
                rule.stats.evictions += 1
        elif len(keys) > 1:
            keys.move_to_end(key)
        if rule.timed:
            before = st.deadline
            fire = op.on_event(st, roles, ev, depth)
            if st.deadline is not None and st.deadline != before:
                self._seq += 1
                st.seq = self._seq
                heapq.heappush(self._timers, (st.deadline, st.seq, rule.index, key))
                self._pushes += 1
                if self._pushes >= _COMPACT_EVERY:
                    self._compact()
        else:
            fire = op.on_event(st, roles, ev, depth)
        if not rule.keeps_keys and op.idle(st):
            del keys[key]
        return None if fire is None else self._emit(rule, key, fire)

    def _compact(self) -> None:
        """Drop stale timer entries (cancelled, moved) once they outnumber the live ones."""
        self._pushes = 0
        live = sum(len(r.keys) for r in self.rules if r.op.timed)
        if len(self._timers) > 4 * live + 1024:
            self._rebuild_timers()

    def _rebuild_timers(self) -> None:
        self._timers = [
            (st.deadline, st.seq, r.index, k)
            for r in self.rules
            if r.op.timed
            for k, st in r.keys.items()
            if st.deadline is not None
        ]
        heapq.heapify(self._timers)

    # -- output --------------------------------------------------------------------
    def _emit(self, rule: _Rule, key: Key, fire: Fire) -> Event:
        correlation = "/".join(key) if rule.correlate else None
        missing: list[str] = []

        lookup = _variables(rule.name, fire, correlation)
        attrs: dict[str, Scalar] = {"count": fire.count}
        if correlation is not None:
            attrs["correlation"] = correlation
        for name, value in rule.attributes:
            if isinstance(value, Template):
                rendered, miss = value.render(lookup)
                missing += miss
                attrs[name] = rendered
            else:
                attrs[name] = value
        if rule.message is not None:
            rendered, miss = rule.message.render(lookup)
            missing += miss
            message = "" if rendered is None else str(rendered)
        else:
            message = f"{rule.name}: {rule.op.name} matched ({fire.count} events)"
        for var in missing:
            rule.stats.unresolved[var] = rule.stats.unresolved.get(var, 0) + 1
        attrs["resource.kind"] = EVENT_RULE
        attrs["resource.name"] = rule.name
        attrs["daemon.kind"] = ENGINE_KIND
        attrs[CHAIN_DEPTH] = fire.depth + 1
        rule.stats.fires += 1
        rule.stats.last_fired = fire.time
        emit = rule.spec.emit
        return Event(0, fire.time, emit.topic, emit.severity, rule.reason, message, attrs)

    # -- state ---------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        """Names of the rules whose state changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def dump(self, name: str) -> dict[str, Any]:
        """One rule's state and counters as JSON-able data."""
        rule = self.by_name[name]
        return {
            "keys": [[list(k), rule.op.dump(st)] for k, st in rule.keys.items()],
            "stats": rule.stats.dump(rule.counters.suppressed),
        }

    def load(self, name: str, data: dict[str, Any]) -> None:
        """Restore what :meth:`dump` returned (for the same spec)."""
        rule = self.by_name[name]
        rule.keys = OrderedDict((tuple(k), rule.op.load(st)) for k, st in data["keys"])
        s = data["stats"]
        rule.stats = _Stats(
            fires=int(s["fires"]),
            last_fired=s["lastFired"],
            matched=int(s["matched"]),
            evictions=int(s["evictions"]),
            too_deep=int(s["tooDeep"]),
            missing_key=dict(s["missingKey"]),
            unresolved=dict(s["unresolved"]),
        )
        rule.counters.suppressed = int(s["suppressed"])
        self._seq = max([self._seq, *(st.seq for st in rule.keys.values())])
        self._rebuild_timers()

    def status(self, name: str) -> dict[str, Any]:
        """The rule's ``observed`` block: counters, keys, timers and warnings."""
        rule = self.by_name[name]
        s = rule.stats
        return {
            "operator": rule.op.name,
            "fireCount": s.fires,
            "lastFired": rfc3339(s.last_fired) if s.last_fired is not None else None,
            "matched": s.matched,
            "keys": len(rule.keys),
            "maxKeys": rule.max_keys,
            "timers": sum(st.deadline is not None for st in rule.keys.values())
            if rule.op.timed
            else 0,
            "evictions": s.evictions,
            "suppressed": rule.counters.suppressed,
            "missingCorrelationKey": sum(s.missing_key.values()),
            "unresolvedTemplates": sum(s.unresolved.values()),
            "chainDepthExceeded": s.too_deep,
            "warnings": self.warnings(name),
        }

    def warnings(self, name: str) -> list[str]:
        rule = self.by_name[name]
        s = rule.stats
        out = [
            f"{n} matching events had no {path} to correlate by"
            for path, n in sorted(s.missing_key.items())
        ]
        if s.evictions:
            out.append(
                f"{s.evictions} correlation keys evicted (at most {rule.max_keys} per rule, "
                "least recently seen first)"
            )
        out += [
            f"{n} emitted events had no value for ${{{var}}}"
            for var, n in sorted(s.unresolved.items())
        ]
        if s.too_deep:
            out.append(
                f"{s.too_deep} matching events ignored: they went through {self.max_depth} "
                "rules already (chain depth limit)"
            )
        return out


def _variables(rule: str, fire: Fire, correlation: str | None) -> Callable[[str], Scalar]:
    """The values of ``${...}`` in a rule's emit templates (docs/rules.md)."""
    subject = fire.subject
    fixed: dict[str, Scalar] = {
        "count": fire.count,
        "correlation": correlation,
        "rule": rule,
        "topic": subject.topic,
        "severity": subject.severity,
        "reason": subject.reason,
    }

    def lookup(var: str) -> Scalar:
        if var.startswith("attributes."):
            return subject.attributes.get(var[len("attributes.") :])
        if var in ("resource.name", "resource.kind", "daemon.kind"):
            return subject.attributes.get(var)
        if var == "time":
            return rfc3339(fire.time)
        return fixed.get(var)

    return lookup


#: The state a stateless operator is given (it keeps nothing in it).
_NO_STATE = State()


def _is_rule_event(ev: Event) -> bool:
    return ev.attributes.get("resource.kind") == EVENT_RULE
