"""The DerivedEvent engine: level-triggered events from resource status, sans-I/O.

A derived event is ``Retracted`` until its inputs say otherwise. Each
evaluation (on a status change of a resource it reads, or at a hysteresis
deadline) decides what it wants: when ``Retracted``, whether the assert
condition (``emitWhen``) holds; when ``Asserted``, whether the retract
condition (``retractWhen``) holds. A wanted transition happens at once, or,
with hysteresis, once it has held for that long: the derived event is then
``Pending`` with the transition it waits for, and flipping back before the
deadline cancels it. Each transition publishes ``<topic>.asserted`` or
``<topic>.retracted``.

A resource whose status routerd cannot keep current (its daemon stopped, is
unreachable, has not reported: the status document carries ``stale``, as
serve's API shows it) makes the inputs reading it **unknown**: they neither
hold nor fail, and ``any_of``/``all_of``/``emitWhen`` combine them as
three-valued logic (one true input is enough for ``any``, one false one
decides ``all``). An unknown assert condition never asserts; while
``Asserted``, it retracts (reason ``InputStale``, through the retract
hysteresis) whatever ``retractWhen`` says: a verdict on a stale status is not
served as current.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
import json
from typing import Any

from routerd.model import Event
from routerd.model import Scalar
from routerd.model import Severity
from routerd.rules import CHAIN_DEPTH
from routerd.rules import DERIVED_EVENT
from routerd.rules import ENGINE_KIND
from routerd.rules.spec import DerivedEventSpec
from routerd.rules.spec import Input
from routerd.rules.spec import RetractWhen
from routerd.rules.statusref import StatusRef
from routerd.rules.statusref import parse_status_ref
from routerd.timefmt import rfc3339

ASSERTED = "Asserted"
RETRACTED = "Retracted"
PENDING = "Pending"
#: Reason of a retraction because an input's resource is stale (its value unknown).
INPUT_STALE = "InputStale"
#: An input's truth: True, False, or None (unknown: its resource's status is stale).
Truth = bool | None
#: status of a resource by ``<Kind>/<name>`` (a ResourceStatus document), None if unknown.
Lookup = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class DerivedDef:
    name: str
    spec: DerivedEventSpec


def same_value(got: Any, want: Scalar) -> bool:
    """Status values against config values; compared as text when the types differ
    (a condition's ``"True"`` equals YAML's ``true``, ``"60"`` equals ``60``)."""
    if got is None or want is None:
        return got is None and want is None
    if isinstance(got, bool) and isinstance(want, bool):
        return got == want
    if isinstance(got, bool) or isinstance(want, bool):
        return str(got) == str(want)
    if isinstance(got, int | float) and isinstance(want, int | float):
        return got == want
    return str(got) == str(want)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass
class _Pending:
    to: str
    since: float
    deadline: float
    reason: str = ""  # of the event it publishes (Asserted, Retracted, InputStale)


@dataclass
class _Derived:
    name: str
    spec: DerivedEventSpec
    refs: dict[str, StatusRef]
    state: str | None = None
    since: float | None = None
    pending: _Pending | None = None
    transitions: int = 0
    cancelled: int = 0
    last_asserted: float | None = None
    last_retracted: float | None = None
    last_ok: tuple[Truth, ...] = ()
    inputs_view: list[dict[str, Any]] = field(default_factory=list)
    #: The assert condition was unknown at the last evaluation (a stale input).
    unknown: bool = False
    #: Reason of the last transition (Asserted, Retracted, InputStale).
    reason: str | None = None

    @property
    def keys(self) -> set[str]:
        return {r.key for r in self.refs.values()}


class DerivedEventEngine:
    """Every DerivedEvent of a config; see the module docstring."""

    def __init__(self, defs: Iterable[DerivedDef]) -> None:
        self.items: dict[str, _Derived] = {}
        for d in sorted(defs, key=lambda d: d.name):
            refs = {text: parse_status_ref(text) for text in d.spec.refs()}
            self.items[d.name] = _Derived(d.name, d.spec, refs)
        self._dirty: set[str] = set()

    def keys(self) -> set[str]:
        """Every ``<Kind>/<name>`` some derived event reads."""
        return {k for d in self.items.values() for k in d.keys}

    def depends_on(self, key: str) -> list[str]:
        return [d.name for d in self.items.values() if key in d.keys]

    # -- evaluation ----------------------------------------------------------------
    def on_status(self, key: str | None, lookup: Lookup, now: float) -> list[Event]:
        """Re-evaluate the derived events reading ``key`` (every one when None)."""
        out = self.advance(now)
        for d in self.items.values():
            if key is None or key in d.keys:
                out += self._evaluate(d, lookup, now)
        return out

    def advance(self, now: float) -> list[Event]:
        """Complete every pending transition whose hysteresis has run out by ``now``."""
        due = sorted(
            (d.pending.deadline, d.name)
            for d in self.items.values()
            if d.pending is not None and d.pending.deadline <= now
        )
        out: list[Event] = []
        for deadline, name in due:
            d = self.items[name]
            assert d.pending is not None
            reason = d.pending.reason or d.pending.to
            out.append(self._transition(d, d.pending.to, deadline, reason))
        return out

    def next_deadline(self) -> float | None:
        deadlines = [d.pending.deadline for d in self.items.values() if d.pending is not None]
        return min(deadlines) if deadlines else None

    def _evaluate(self, d: _Derived, lookup: Lookup, now: float) -> list[Event]:
        spec = d.spec
        docs = {key: lookup(key) for key in d.keys}
        stale = {key: _stale_text(doc) for key, doc in docs.items() if doc and doc.get("stale")}
        values = {
            text: None if ref.key in stale else ref.resolve(docs[ref.key])
            for text, ref in d.refs.items()
        }
        unknown = {text for text, ref in d.refs.items() if ref.key in stale}
        oks = tuple(_holds(i, values, unknown) for i in spec.inputs)
        self._view(d, values, oks, stale)
        assert_cond = _all(oks) if spec.emit_when == "all_true" else _any(oks)
        retract_cond = _retract(spec, oks, values, unknown)
        d.unknown = assert_cond is None
        out: list[Event] = []
        if d.state is None:
            d.state, d.since = RETRACTED, now
            d.reason = INPUT_STALE if d.unknown else RETRACTED
            self._dirty.add(d.name)
            if spec.emit_initial and assert_cond is not True:
                out.append(self._event(d, RETRACTED, None, now, d.reason))
        if d.state == RETRACTED:
            target, want, reason = ASSERTED, assert_cond is True, ASSERTED
        else:
            # A stale input leaves the assert condition unknown: not current, so not asserted.
            want = retract_cond or d.unknown
            reason = RETRACTED if retract_cond else INPUT_STALE
            target = RETRACTED
        if want:
            hold = spec.hysteresis.assert_ if target == ASSERTED else spec.hysteresis.retract
            if hold <= 0:
                out.append(self._transition(d, target, now, reason))
            elif d.pending is None:
                d.pending = _Pending(target, now, now + hold, reason)
                self._dirty.add(d.name)
            elif d.pending.reason != reason:
                d.pending.reason = reason
                self._dirty.add(d.name)
        elif d.pending is not None:
            d.pending = None  # flipped back within the hysteresis: nothing happened
            d.cancelled += 1
            self._dirty.add(d.name)
        return out

    def _view(
        self,
        d: _Derived,
        values: dict[str, Any],
        oks: tuple[Truth, ...],
        stale: dict[str, str],
    ) -> None:
        if oks != d.last_ok:
            self._dirty.add(d.name)
        d.last_ok = oks
        views = []
        for i, ok in zip(d.spec.inputs, oks, strict=True):
            keys = sorted({d.refs[text].key for text in i.refs()})
            why = "; ".join(f"{k}: {stale[k]}" for k in keys if k in stale)
            views.append(
                {
                    "name": i.name,
                    "value": _show(i),
                    "got": values.get(i.value) if i.value is not None else None,
                    "ok": ok,
                    "stale": why or None,
                }
            )
        if views != d.inputs_view:
            self._dirty.add(d.name)
        d.inputs_view = views

    def _transition(self, d: _Derived, to: str, t: float, reason: str) -> Event:
        previous = d.state
        d.state, d.since, d.pending, d.reason = to, t, None, reason
        d.transitions += 1
        if to == ASSERTED:
            d.last_asserted = t
        else:
            d.last_retracted = t
        self._dirty.add(d.name)
        return self._event(d, to, previous, t, reason)

    def _event(self, d: _Derived, state: str, previous: str | None, t: float, reason: str) -> Event:
        spec = d.spec
        asserted = state == ASSERTED
        attrs: dict[str, Scalar] = dict(spec.attributes)
        trues = sum(ok is True for ok in d.last_ok)
        attrs.update(
            {
                "state": state,
                "previousState": previous,
                "trueInputs": trues,
                "inputs": len(d.last_ok),
                "unknownInputs": sum(ok is None for ok in d.last_ok),
            }
        )
        for view in d.inputs_view:
            if view["name"]:
                attrs[f"input.{view['name']}"] = _scalar(view["got"])
        attrs["resource.kind"] = DERIVED_EVENT
        attrs["resource.name"] = d.name
        attrs["daemon.kind"] = ENGINE_KIND
        attrs[CHAIN_DEPTH] = 1
        false = [v["value"] for v in d.inputs_view if v["ok"] is False]
        unknown = [f"{v['value']} ({v['stale']})" for v in d.inputs_view if v["ok"] is None]
        detail = f"{trues} of {len(d.last_ok)} inputs true"
        if false and not asserted:
            detail += "; false: " + "; ".join(false)
        if unknown and not asserted:
            detail += "; unknown, status stale: " + "; ".join(unknown)
        severity: Severity = spec.asserted_severity if asserted else spec.retracted_severity
        suffix = "asserted" if asserted else "retracted"
        return Event(
            0,
            t,
            f"{spec.topic}.{suffix}",
            severity,
            reason,
            f"{d.name} {suffix}: {detail}",
            attrs,
        )

    # -- state ---------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    def dump(self, name: str) -> dict[str, Any]:
        d = self.items[name]
        p = d.pending
        return {
            "state": d.state,
            "since": d.since,
            "pending": None
            if p is None
            else {"to": p.to, "since": p.since, "deadline": p.deadline, "reason": p.reason},
            "reason": d.reason,
            "transitions": d.transitions,
            "cancelled": d.cancelled,
            "lastAsserted": d.last_asserted,
            "lastRetracted": d.last_retracted,
        }

    def load(self, name: str, data: dict[str, Any]) -> None:
        d = self.items[name]
        d.state, d.since = data["state"], data["since"]
        p = data["pending"]
        d.pending = (
            None
            if p is None
            else _Pending(p["to"], p["since"], p["deadline"], str(p.get("reason") or p["to"]))
        )
        d.reason = data.get("reason") or d.state
        d.transitions, d.cancelled = int(data["transitions"]), int(data["cancelled"])
        d.last_asserted, d.last_retracted = data["lastAsserted"], data["lastRetracted"]

    def reason(self, name: str) -> str:
        """Why the derived event is in its state: ``InputStale`` while it is retracted and
        an input is unknown, else the reason of its last transition."""
        d = self.items[name]
        if d.state is None:
            return "NotEvaluated"
        if d.state == RETRACTED and d.unknown:
            return INPUT_STALE
        return d.reason or d.state

    def phase(self, name: str) -> str:
        d = self.items[name]
        return PENDING if d.pending is not None or d.state is None else d.state

    def status(self, name: str) -> dict[str, Any]:
        """The derived event's ``observed`` block."""
        d = self.items[name]
        p = d.pending
        return {
            "state": d.state,
            "since": _time(d.since),
            "pendingTransition": None
            if p is None
            else {
                "to": p.to,
                "since": _time(p.since),
                "at": _time(p.deadline),
                "reason": p.reason,
            },
            "reason": self.reason(name),
            "inputs": d.inputs_view,
            "transitions": d.transitions,
            "cancelledTransitions": d.cancelled,
            "lastAsserted": _time(d.last_asserted),
            "lastRetracted": _time(d.last_retracted),
        }


def _holds(cond: Input, values: Mapping[str, Any], unknown: set[str]) -> Truth:
    """Whether a condition holds; None when that depends on an unknown (stale) value."""
    if cond.any_of is not None:
        return _any([_holds(c, values, unknown) for c in cond.any_of])
    if cond.all_of is not None:
        return _all([_holds(c, values, unknown) for c in cond.all_of])
    assert cond.value is not None
    if cond.value in unknown:
        return None
    got = values.get(cond.value)
    if cond.not_empty is not None:
        return _empty(got) != cond.not_empty
    if cond.in_ is not None:
        return any(same_value(got, w) for w in cond.in_)
    return same_value(got, cond.equals)


def _any(truths: Iterable[Truth]) -> Truth:
    """Three-valued OR: one true is enough; unknown unless every one is false."""
    seen = list(truths)
    if any(t is True for t in seen):
        return True
    return None if any(t is None for t in seen) else False


def _all(truths: Iterable[Truth]) -> Truth:
    """Three-valued AND: one false decides; unknown unless every one is true."""
    seen = list(truths)
    if any(t is False for t in seen):
        return False
    return None if any(t is None for t in seen) else True


def _retract(
    spec: DerivedEventSpec, oks: tuple[Truth, ...], values: Mapping[str, Any], unknown: set[str]
) -> bool:
    """Whether the retract condition certainly holds (unknown is not enough)."""
    rw = spec.retract_when
    if isinstance(rw, RetractWhen):
        results = [_holds(i, values, unknown) for i in rw.inputs]
        return (_all(results) if rw.when == "all_true" else _any(results)) is True
    if rw is None:
        rw = "any_false" if spec.emit_when == "all_true" else "all_false"
    if rw == "any_false":
        return any(ok is False for ok in oks)
    return all(ok is False for ok in oks)


def _show(cond: Input) -> str:
    if cond.any_of is not None:
        return "anyOf(" + ", ".join(_show(c) for c in cond.any_of) + ")"
    if cond.all_of is not None:
        return "allOf(" + ", ".join(_show(c) for c in cond.all_of) + ")"
    if cond.not_empty is not None:
        return f"{cond.value} {'not empty' if cond.not_empty else 'empty'}"
    if cond.in_ is not None:
        return f"{cond.value} in {list(cond.in_)!r}"
    return f"{cond.value} == {cond.equals!r}"


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _stale_text(doc: Mapping[str, Any]) -> str:
    stale = doc.get("stale")
    if isinstance(stale, Mapping):
        return f"{stale.get('reason') or 'Stale'}: {stale.get('message') or ''}".rstrip(": ")
    return str(stale)


def _time(t: float | None) -> str | None:
    return None if t is None else rfc3339(t)
