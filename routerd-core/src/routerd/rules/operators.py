"""One state machine per EventRule operator, for one correlation key.

Every operator works on **event time**: an event is evaluated at its own
``time``, and a timer (``absence``, ``debounce``) is due at a deadline computed
from event times. The engine (:mod:`.eventrule`) fires a timer only once its
clock is past the deadline, so the same events give the same answers whether
they arrive live or as a backlog.

``on_event`` gets the indexes of the pattern's matches the event satisfied
(``of`` / ``steps`` / ``[trigger, expected]`` / ``[match]``) and the event's
chain depth, and returns a :class:`Fire` when the operator fires. States are JSON-able (``dump`` /
``load``), so routerd serve stores them with its consumer cursor.
"""

from __future__ import annotations

from bisect import bisect_left
from bisect import bisect_right
from bisect import insort
from dataclasses import dataclass
from typing import Any
from typing import ClassVar
from typing import Generic
from typing import TypeVar

from routerd.model import Event
from routerd.rules import CHAIN_DEPTH
from routerd.rules import spec as S


@dataclass(frozen=True)
class Fire:
    """An operator fired: the event its templates read, how many events counted,
    the virtual event's time and the deepest chain depth among the inputs."""

    subject: Event
    count: int
    time: float
    depth: int


@dataclass
class Counters:
    """Per-rule counters the operators bump (shown in the rule's status)."""

    suppressed: int = 0


def depth_of(ev: Event) -> int:
    d = ev.attributes.get(CHAIN_DEPTH)
    return d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else 0


def dump_event(ev: Event | None) -> dict[str, Any] | None:
    if ev is None:
        return None
    return {"t": ev.time, "p": ev.topic, "s": ev.severity, "r": ev.reason, "a": ev.attributes}


def load_event(data: dict[str, Any] | None) -> Event | None:
    if data is None:
        return None
    return Event(0, float(data["t"]), data["p"], data["s"], data["r"], "", dict(data["a"]))


class State:
    """Base of a per-key state; ``deadline``/``seq`` are used by timer operators."""

    deadline: float | None = None
    seq: int = 0


StateT = TypeVar("StateT", bound=State)


class Operator(Generic[StateT]):
    """One operator; generic over its per-key state (the engine calls it once per
    delivered event, so it trusts the type instead of checking it each time)."""

    name: ClassVar[str]
    #: True: ``on_timer`` and ``deadline`` are used.
    timed: ClassVar[bool] = False
    #: True: no per-key state at all (nothing to correlate but the template).
    stateless: ClassVar[bool] = False
    #: True: ``idle`` is always False (a key is kept until evicted), so it is not asked.
    keeps_keys: ClassVar[bool] = False

    def new(self) -> StateT:
        raise NotImplementedError

    def on_event(self, st: StateT, roles: tuple[int, ...], ev: Event, depth: int) -> Fire | None:
        raise NotImplementedError

    def on_timer(self, st: StateT) -> Fire | None:
        return None

    def idle(self, st: StateT) -> bool:
        """True when the key holds nothing worth keeping (it is dropped, not evicted)."""
        return True

    def dump(self, st: StateT) -> dict[str, Any]:
        return {}

    def load(self, data: dict[str, Any]) -> StateT:
        return self.new()


class AnyOf(Operator[State]):
    name = "any_of"
    stateless = True

    def new(self) -> State:
        return State()

    def on_event(self, st: State, roles: tuple[int, ...], ev: Event, depth: int) -> Fire | None:
        return Fire(ev, 1, ev.time, depth)


class _AllOfState(State):
    def __init__(self, size: int) -> None:
        self.last: list[float | None] = [None] * size
        self.n = 0
        self.depth = 0


class AllOf(Operator[_AllOfState]):
    name = "all_of"

    def __init__(self, spec: S.AllOf) -> None:
        self.size = len(spec.of)
        self.within = spec.within

    def new(self) -> _AllOfState:
        return _AllOfState(self.size)

    def on_event(
        self, st: _AllOfState, roles: tuple[int, ...], ev: Event, depth: int
    ) -> Fire | None:
        t = ev.time
        for i in roles:
            prev = st.last[i]
            st.last[i] = t if prev is None else max(prev, t)
        if self.within is not None:
            horizon = max(x for x in st.last if x is not None) - self.within
            st.last = [x if x is not None and x >= horizon else None for x in st.last]
            if sum(x is not None for x in st.last) == len(roles):
                st.n, st.depth = 0, 0  # what came before fell out of the window
        st.n += 1
        if depth > st.depth:
            st.depth = depth
        if all(x is not None for x in st.last):
            fire = Fire(ev, st.n, t, st.depth)
            st.last, st.n, st.depth = [None] * self.size, 0, 0
            return fire
        return None

    def idle(self, st: _AllOfState) -> bool:
        return all(x is None for x in st.last)

    def dump(self, st: _AllOfState) -> dict[str, Any]:
        return {"last": st.last, "n": st.n, "d": st.depth}

    def load(self, data: dict[str, Any]) -> _AllOfState:
        st = self.new()
        st.last = [None if x is None else float(x) for x in data["last"]][: self.size]
        st.last += [None] * (self.size - len(st.last))
        st.n, st.depth = int(data["n"]), int(data["d"])
        return st


class _SequenceState(State):
    def __init__(self) -> None:
        self.pos = 0
        self.start = 0.0
        self.n = 0
        self.depth = 0

    def reset(self) -> None:
        self.pos, self.start, self.n, self.depth = 0, 0.0, 0, 0


class Sequence(Operator[_SequenceState]):
    name = "sequence"

    def __init__(self, spec: S.Sequence) -> None:
        self.steps = len(spec.steps)
        self.within = spec.within
        self.strict = spec.strict

    def new(self) -> _SequenceState:
        return _SequenceState()

    def on_event(
        self, st: _SequenceState, roles: tuple[int, ...], ev: Event, depth: int
    ) -> Fire | None:
        t = ev.time
        if self.within is not None and st.pos and t - st.start > self.within:
            st.reset()  # too late for this attempt; the event may start the next one
        if st.pos in roles:
            if st.pos == 0:
                st.start = t
            st.pos += 1
            st.n += 1
            if depth > st.depth:
                st.depth = depth
            if st.pos == self.steps:
                fire = Fire(ev, st.n, t, st.depth)
                st.reset()
                return fire
        elif self.strict:
            # Another step's event in between: this attempt is broken.
            st.reset()
            if 0 in roles:
                st.pos, st.start, st.n, st.depth = 1, t, 1, depth
        return None

    def idle(self, st: _SequenceState) -> bool:
        return st.pos == 0

    def dump(self, st: _SequenceState) -> dict[str, Any]:
        return {"pos": st.pos, "start": st.start, "n": st.n, "d": st.depth}

    def load(self, data: dict[str, Any]) -> _SequenceState:
        st = self.new()
        st.pos, st.start = int(data["pos"]), float(data["start"])
        st.n, st.depth = int(data["n"]), int(data["d"])
        return st


class _TimesState(State):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.depth = 0
        self.suppressed = 0


class Window(Operator[_TimesState]):
    name = "window"

    def __init__(self, spec: S.Window) -> None:
        self.threshold = spec.threshold
        self.within = spec.within

    def new(self) -> _TimesState:
        return _TimesState()

    def on_event(
        self, st: _TimesState, roles: tuple[int, ...], ev: Event, depth: int
    ) -> Fire | None:
        insort(st.times, ev.time)
        # The window ends at the newest event time (an event stored late still counts
        # where it belongs, and never drags the window back).
        horizon = st.times[-1] - self.within
        del st.times[: bisect_left(st.times, horizon)]
        if depth > st.depth:
            st.depth = depth
        if len(st.times) >= self.threshold:
            fire = Fire(ev, len(st.times), ev.time, st.depth)
            st.times, st.depth = [], 0
            return fire
        return None

    def idle(self, st: _TimesState) -> bool:
        return not st.times

    def dump(self, st: _TimesState) -> dict[str, Any]:
        return {"times": st.times, "d": st.depth}

    def load(self, data: dict[str, Any]) -> _TimesState:
        st = self.new()
        st.times = sorted(float(x) for x in data["times"])
        st.depth = int(data["d"])
        return st


class _TimerState(State):
    def __init__(self) -> None:
        self.deadline: float | None = None
        self.seq = 0
        self.subject: Event | None = None
        self.n = 0
        self.depth = 0

    def clear(self) -> None:
        self.deadline, self.subject, self.n, self.depth = None, None, 0, 0


class Absence(Operator[_TimerState]):
    """Match 0 is the trigger, match 1 the expected event.

    An event that is both cancels first, then starts a new timer: a heartbeat
    as trigger and expected is a watchdog.
    """

    name = "absence"
    timed = True

    def __init__(self, spec: S.Absence) -> None:
        self.within = spec.within

    def new(self) -> _TimerState:
        return _TimerState()

    def on_event(
        self, st: _TimerState, roles: tuple[int, ...], ev: Event, depth: int
    ) -> Fire | None:
        if 1 in roles and st.deadline is not None and ev.time <= st.deadline:
            st.clear()
        if 0 in roles:
            if st.deadline is None:
                # A trigger while the timer runs keeps the first deadline: repeated
                # triggers must not postpone the answer forever.
                st.deadline, st.subject, st.n = ev.time + self.within, ev, 0
            st.n += 1
            if depth > st.depth:
                st.depth = depth
        return None

    def on_timer(self, st: _TimerState) -> Fire | None:
        assert st.subject is not None and st.deadline is not None
        fire = Fire(st.subject, st.n, st.deadline, st.depth)
        st.clear()
        return fire

    def idle(self, st: _TimerState) -> bool:
        return st.deadline is None

    def dump(self, st: _TimerState) -> dict[str, Any]:
        return {
            "deadline": st.deadline,
            "seq": st.seq,
            "subject": dump_event(st.subject),
            "n": st.n,
            "d": st.depth,
        }

    def load(self, data: dict[str, Any]) -> _TimerState:
        st = self.new()
        st.deadline = None if data["deadline"] is None else float(data["deadline"])
        st.seq, st.subject = int(data["seq"]), load_event(data["subject"])
        st.n, st.depth = int(data["n"]), int(data["d"])
        return st


class Debounce(Absence):
    """Every matching event moves the deadline to ``time + quiet``; at the deadline
    the last event of the burst is published, with the burst's size as count."""

    name = "debounce"

    def __init__(self, spec: S.Debounce) -> None:
        self.quiet = spec.quiet

    def on_event(
        self, st: _TimerState, roles: tuple[int, ...], ev: Event, depth: int
    ) -> Fire | None:
        st.n += 1
        if depth > st.depth:
            st.depth = depth
        due = ev.time + self.quiet
        if st.deadline is None or due >= st.deadline:
            st.deadline, st.subject = due, ev
        return None


class Throttle(Operator[_TimesState]):
    name = "throttle"

    def __init__(self, spec: S.Throttle, counters: Counters) -> None:
        self.limit = spec.limit
        self.per = spec.per
        self.counters = counters

    def new(self) -> _TimesState:
        return _TimesState()

    def on_event(
        self, st: _TimesState, roles: tuple[int, ...], ev: Event, depth: int
    ) -> Fire | None:
        # Passed events younger than `per` (strictly) still count against the limit.
        del st.times[: bisect_right(st.times, ev.time - self.per)]
        if len(st.times) < self.limit:
            insort(st.times, ev.time)
            fire = Fire(ev, st.suppressed + 1, ev.time, depth)
            st.suppressed = 0
            return fire
        st.suppressed += 1
        self.counters.suppressed += 1
        return None

    def idle(self, st: _TimesState) -> bool:
        return not st.times and not st.suppressed

    def dump(self, st: _TimesState) -> dict[str, Any]:
        return {"times": st.times, "suppressed": st.suppressed}

    def load(self, data: dict[str, Any]) -> _TimesState:
        st = self.new()
        st.times = sorted(float(x) for x in data["times"])
        st.suppressed = int(data["suppressed"])
        return st


class _CountState(State):
    def __init__(self) -> None:
        self.n = 0
        self.depth = 0


class Count(Operator[_CountState]):
    name = "count"
    keeps_keys = True

    def __init__(self, spec: S.Count) -> None:
        self.every = spec.every

    def new(self) -> _CountState:
        return _CountState()

    def on_event(
        self, st: _CountState, roles: tuple[int, ...], ev: Event, depth: int
    ) -> Fire | None:
        st.n += 1
        if depth > st.depth:
            st.depth = depth
        if st.n % self.every == 0:
            fire = Fire(ev, st.n, ev.time, st.depth)
            st.depth = 0
            return fire
        return None

    def idle(self, st: _CountState) -> bool:
        return False  # the running total is the state

    def dump(self, st: _CountState) -> dict[str, Any]:
        return {"n": st.n, "d": st.depth}

    def load(self, data: dict[str, Any]) -> _CountState:
        st = self.new()
        st.n, st.depth = int(data["n"]), int(data["d"])
        return st


def build(pattern: S.Pattern, counters: Counters) -> tuple[Operator[Any], list[S.Match]]:
    """The operator for a pattern and its matches, in the order ``roles`` index them."""
    p = pattern.spec
    if isinstance(p, S.AnyOf):
        return AnyOf(), p.of
    if isinstance(p, S.AllOf):
        return AllOf(p), p.of
    if isinstance(p, S.Sequence):
        return Sequence(p), p.steps
    if isinstance(p, S.Window):
        return Window(p), [p.match]
    if isinstance(p, S.Absence):
        return Absence(p), [p.trigger, p.expected]
    if isinstance(p, S.Throttle):
        return Throttle(p, counters), [p.match]
    if isinstance(p, S.Debounce):
        return Debounce(p), [p.match]
    return Count(p), [p.match]


#: Default ``reason`` of a virtual event, per operator.
DEFAULT_REASONS = {
    "any_of": "Matched",
    "all_of": "AllMatched",
    "sequence": "SequenceCompleted",
    "window": "ThresholdReached",
    "absence": "ExpectedEventMissing",
    "throttle": "Passed",
    "debounce": "Settled",
    "count": "CountReached",
}
