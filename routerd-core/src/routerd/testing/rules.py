"""Run EventRule / DerivedEvent examples against a timeline (the format of docs/rules.md).

A timeline is a YAML list of steps, in time order::

    - at: 0s                       # offset from T0 (2026-01-01T00:00:00Z)
      event: routerd.healthcheck.state.unhealthy
      attributes: {resource.kind: HealthCheck, resource.name: internet, daemon.kind: healthcheck}
    - at: 30s
      status:                      # resource status documents (DerivedEvent inputs)
        HealthCheck/internet: {phase: Healthy}
    - at: 1m                       # no event: the clock moves on, timers before 1m fire
      emits:                       # exactly what the engines publish at this step, in order
        - topic: routerd.rules.wan.flapping
          at: 50s                  # optional: the virtual event's time
          attributes: {count: 3}   # optional: these attributes (others may be there too)

At each step the clock advances to ``at`` (timers due before it fire), then
the statuses are applied (each changed resource re-evaluates the
DerivedEvents reading it), then the event is fed. A step without ``emits``
expects nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from routerd.durations import parse_duration
from routerd.model import Event
from routerd.rules import DERIVED_EVENT
from routerd.rules import EVENT_RULE
from routerd.rules.core import RulesCore
from routerd.rules.derived import DerivedDef
from routerd.rules.eventrule import RuleDef
from routerd.rules.spec import DerivedEventSpec
from routerd.rules.spec import EventRuleSpec
from routerd.timefmt import rfc3339

#: Time zero of every timeline: 2026-01-01T00:00:00Z.
T0 = 1_767_225_600.0
_STEP_KEYS = {"at", "event", "attributes", "severity", "status", "emits"}


def defs_from_resources(
    resources: Sequence[Mapping[str, Any]],
) -> tuple[list[RuleDef], list[DerivedDef]]:
    """The EventRules and DerivedEvents among resource documents (others are skipped)."""
    rules: list[RuleDef] = []
    derived: list[DerivedDef] = []
    for res in resources:
        name = str(res["metadata"]["name"])
        if res["kind"] == EVENT_RULE:
            rules.append(RuleDef(name, EventRuleSpec.model_validate(res["spec"])))
        elif res["kind"] == DERIVED_EVENT:
            derived.append(DerivedDef(name, DerivedEventSpec.model_validate(res["spec"])))
    return rules, derived


def run_timeline(
    rules: Sequence[RuleDef], derived: Sequence[DerivedDef], steps: Sequence[Mapping[str, Any]]
) -> list[list[Event]]:
    """Run ``steps``; raise ``AssertionError`` at the first step whose outputs differ."""
    statuses: dict[str, dict[str, Any]] = {}
    core = RulesCore(rules, derived, statuses.get, started=T0)
    outputs: list[list[Event]] = []
    last = float("-inf")
    for index, step in enumerate(steps):
        unknown = set(step) - _STEP_KEYS
        assert not unknown, f"step {index}: unknown keys {sorted(unknown)}"
        at = parse_duration(step["at"])
        assert at >= last, f"step {index}: 'at' goes back in time"
        last = at
        now = T0 + at
        got = core.advance(now)
        for key, doc in (step.get("status") or {}).items():
            statuses[key] = dict(doc)
            got += core.on_status(key, now)
        if "event" in step:
            ev = Event(
                index + 1,
                now,
                step["event"],
                step.get("severity", "info"),
                "",
                "",
                dict(step.get("attributes") or {}),
            )
            got += core.feed(ev)
        _compare(index, step, got)
        outputs.append(got)
    return outputs


def _compare(index: int, step: Mapping[str, Any], got: list[Event]) -> None:
    want = step.get("emits") or []
    seen = [f"{e.topic} at {rfc3339(e.time)} {e.attributes}" for e in got]
    where = f"step {index} (at {step['at']})"
    assert len(got) == len(want), f"{where}: expected {len(want)} event(s), got {seen}"
    for ev, exp in zip(got, want, strict=True):
        assert ev.topic == exp["topic"], f"{where}: expected {exp['topic']}, got {seen}"
        if "at" in exp:
            assert ev.time == T0 + parse_duration(exp["at"]), (
                f"{where}: {ev.topic} expected at {exp['at']}, got {rfc3339(ev.time)}"
            )
        for key, value in (exp.get("attributes") or {}).items():
            assert key in ev.attributes and ev.attributes[key] == value, (
                f"{where}: {ev.topic} attribute {key}: expected {value!r}, "
                f"got {ev.attributes.get(key)!r} in {ev.attributes}"
            )
        for key in ("severity", "message", "reason"):
            if key in exp:
                assert getattr(ev, key) == exp[key], (
                    f"{where}: {ev.topic} {key}: expected {exp[key]!r}, got {getattr(ev, key)!r}"
                )
