"""DerivedEvent engine: one test per behaviour, on a fake clock (times passed in)."""

from __future__ import annotations

import json
from typing import Any

from routerd.rules.core import RulesCore
from routerd.rules.derived import DerivedDef
from routerd.rules.derived import DerivedEventEngine
from routerd.rules.spec import DerivedEventSpec

T0 = 1_767_225_600.0
PD = "${DHCPv6PrefixDelegation/wan-pd.status.phase}"
HC = "${HealthCheck/internet.status.phase}"


def derived(name: str = "wan-ready", **spec: Any) -> DerivedDef:
    spec.setdefault("topic", "routerd.derived.wan.ready")
    spec.setdefault(
        "inputs",
        [{"value": PD, "equals": "Applied"}, {"value": HC, "equals": "Healthy"}],
    )
    return DerivedDef(name, DerivedEventSpec.model_validate(spec))


class World:
    """Resource statuses, and an engine evaluated on each change (as serve does)."""

    def __init__(self, *defs: DerivedDef) -> None:
        self.status: dict[str, dict[str, Any]] = {}
        self.engine = DerivedEventEngine(defs)

    def set(self, t: float, key: str, **doc: Any) -> list[str]:
        self.status[key] = doc
        out = self.engine.on_status(key, self.status.get, T0 + t)
        return [f"{e.topic.rsplit('.', 1)[1]}@{e.time - T0:g}" for e in out]

    def tick(self, t: float) -> list[str]:
        return [f"{e.topic.rsplit('.', 1)[1]}@{e.time - T0:g}" for e in self.engine.advance(T0 + t)]


def test_asserts_when_all_inputs_hold_and_retracts_when_one_fails() -> None:
    w = World(derived())
    assert w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied") == []
    assert w.engine.phase("wan-ready") == "Retracted"
    assert w.set(1, "HealthCheck/internet", phase="Healthy") == ["asserted@1"]
    assert w.engine.phase("wan-ready") == "Asserted"
    assert w.set(2, "HealthCheck/internet", phase="Healthy") == []  # no change, no event
    assert w.set(3, "HealthCheck/internet", phase="Unhealthy") == ["retracted@3"]
    assert w.set(4, "HealthCheck/internet", phase="Healthy") == ["asserted@4"]


def test_published_events_carry_state_inputs_and_what_is_false() -> None:
    spec = {
        "inputs": [
            {"name": "prefix", "value": PD, "equals": "Applied"},
            {"name": "internet", "value": HC, "equals": "Healthy"},
        ],
        "retractedSeverity": "warning",
        "attributes": {"site": "home"},
    }
    w = World(derived(**spec))
    w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    w.set(1, "HealthCheck/internet", phase="Healthy")
    w.status["HealthCheck/internet"] = {"phase": "Unhealthy"}
    (ev,) = w.engine.on_status("HealthCheck/internet", w.status.get, T0 + 2)
    assert ev.topic == "routerd.derived.wan.ready.retracted"
    assert ev.severity == "warning" and ev.reason == "Retracted"
    a = ev.attributes
    assert (a["state"], a["previousState"], a["trueInputs"], a["inputs"]) == (
        "Retracted",
        "Asserted",
        1,
        2,
    )
    assert (a["input.prefix"], a["input.internet"], a["site"]) == ("Applied", "Unhealthy", "home")
    assert (a["resource.kind"], a["resource.name"], a["daemon.kind"]) == (
        "DerivedEvent",
        "wan-ready",
        "rules",
    )
    assert "false: ${HealthCheck/internet.status.phase} == 'Healthy'" in ev.message


def test_any_true_and_its_default_retract_all_false() -> None:
    w = World(derived(emitWhen="any_true"))
    assert w.set(0, "HealthCheck/internet", phase="Healthy") == ["asserted@0"]
    assert w.set(1, "DHCPv6PrefixDelegation/wan-pd", phase="Pending") == []
    assert w.set(2, "HealthCheck/internet", phase="Unhealthy") == ["retracted@2"]


def test_retract_when_all_false_latches_between_the_two() -> None:
    w = World(derived(retractWhen="all_false"))
    w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    assert w.set(1, "HealthCheck/internet", phase="Healthy") == ["asserted@1"]
    assert w.set(2, "HealthCheck/internet", phase="Unhealthy") == []  # one still true: held
    assert w.set(3, "DHCPv6PrefixDelegation/wan-pd", phase="Pending") == ["retracted@3"]


def test_retract_when_with_inputs_of_its_own() -> None:
    # Asserted when both hold; retracted only when the health check is Unhealthy
    # (a Pending check after a restart does not retract).
    w = World(
        derived(retractWhen={"inputs": [{"value": HC, "equals": "Unhealthy"}], "when": "any_true"})
    )
    w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    assert w.set(1, "HealthCheck/internet", phase="Healthy") == ["asserted@1"]
    assert w.set(2, "HealthCheck/internet", phase="Pending") == []
    assert w.engine.phase("wan-ready") == "Asserted"
    assert w.set(3, "HealthCheck/internet", phase="Unhealthy") == ["retracted@3"]


def test_hysteresis_waits_and_a_flip_back_cancels() -> None:
    w = World(derived(hysteresis={"assert": "10s", "retract": "30s"}))
    w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    assert w.set(1, "HealthCheck/internet", phase="Healthy") == []
    assert w.engine.phase("wan-ready") == "Pending"
    pending = w.engine.status("wan-ready")["pendingTransition"]
    assert pending["to"] == "Asserted" and pending["at"].startswith("2026-01-01T00:00:11")
    assert w.engine.next_deadline() == T0 + 11
    assert w.tick(10.9) == []
    assert w.tick(11) == ["asserted@11"]
    # Unhealthy for 20 s (< 30 s retract hysteresis), then healthy again: nothing published.
    assert w.set(20, "HealthCheck/internet", phase="Unhealthy") == []
    assert w.engine.phase("wan-ready") == "Pending"
    assert w.set(40, "HealthCheck/internet", phase="Healthy") == []
    assert w.engine.phase("wan-ready") == "Asserted"
    assert w.engine.status("wan-ready")["cancelledTransitions"] == 1
    assert w.tick(100) == []
    # Held long enough: retracted at the deadline, whenever the clock notices.
    w.set(200, "HealthCheck/internet", phase="Unhealthy")
    assert w.set(300, "HealthCheck/internet", phase="Unhealthy") == ["retracted@230"]


def test_emit_initial_publishes_the_starting_state() -> None:
    quiet = World(derived())
    assert quiet.set(0, "HealthCheck/internet", phase="Pending") == []
    loud = World(derived(emitInitial=True))
    assert loud.set(0, "HealthCheck/internet", phase="Pending") == ["retracted@0"]
    assert loud.set(1, "HealthCheck/internet", phase="Pending") == []
    # Starting true: asserted in both cases (that is a transition from Retracted).
    both = World(derived(emitInitial=True, emitWhen="any_true"))
    assert both.set(0, "HealthCheck/internet", phase="Healthy") == ["asserted@0"]


def test_conditions_nested_in_not_empty_and_status_paths() -> None:
    spec = {
        "inputs": [
            {
                "any_of": [
                    {
                        "value": "${DHCPv6PrefixDelegation/wan-pd.status.observed.prefixes.0}",
                        "not_empty": True,
                    },
                    {
                        "all_of": [
                            {
                                "value": "${HealthCheck/internet.status.conditions.TargetReachable}",
                                "equals": True,
                            },
                            {"value": HC, "in": ["Healthy", "Unhealthy"]},
                        ]
                    },
                ]
            }
        ]
    }
    w = World(derived(**spec))
    assert (
        w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied", observed={"prefixes": []}) == []
    )
    reachable = {"type": "TargetReachable", "status": "True"}
    assert w.set(1, "HealthCheck/internet", phase="Healthy", conditions=[reachable]) == [
        "asserted@1"
    ]
    assert w.set(2, "HealthCheck/internet", phase="Pending", conditions=[reachable]) == [
        "retracted@2"
    ]
    prefixes = {"prefixes": ["2001:db8:100::/60"]}
    assert w.set(3, "DHCPv6PrefixDelegation/wan-pd", phase="Applied", observed=prefixes) == [
        "asserted@3"
    ]


def test_only_derived_events_reading_a_resource_are_evaluated() -> None:
    w = World(derived())
    assert w.set(0, "HealthCheck/other", phase="Healthy") == []
    assert w.engine.status("wan-ready")["state"] is None  # never evaluated
    assert w.engine.depends_on("HealthCheck/internet") == ["wan-ready"]
    assert w.engine.keys() == {"HealthCheck/internet", "DHCPv6PrefixDelegation/wan-pd"}


def test_state_survives_a_restart_without_publishing_again() -> None:
    w = World(derived(hysteresis="10s"))
    w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    w.set(1, "HealthCheck/internet", phase="Healthy")
    assert w.tick(20) == ["asserted@11"]
    w.set(30, "HealthCheck/internet", phase="Unhealthy")  # pending retract, due at 40
    saved = json.loads(json.dumps(w.engine.dump("wan-ready")))
    again = World(derived(hysteresis="10s"))
    again.status = w.status
    again.engine.load("wan-ready", saved)
    assert again.engine.phase("wan-ready") == "Pending"
    assert again.set(35, "HealthCheck/internet", phase="Unhealthy") == []
    assert again.tick(41) == ["retracted@40"]


def test_a_derived_event_can_read_another_and_rules_see_both() -> None:
    wan = derived("wan-ready")
    lan = derived(
        "all-ready",
        topic="routerd.derived.all.ready",
        inputs=[{"value": "${DerivedEvent/wan-ready.status.phase}", "equals": "Asserted"}],
    )
    status: dict[str, dict[str, Any]] = {
        "DHCPv6PrefixDelegation/wan-pd": {"phase": "Applied"},
        "HealthCheck/internet": {"phase": "Healthy"},
    }
    core = RulesCore([], [wan, lan], status.get)
    out = core.on_status("HealthCheck/internet", T0)
    assert [e.topic for e in out] == [
        "routerd.derived.wan.ready.asserted",
        "routerd.derived.all.ready.asserted",
    ]
    assert core.resource_status("DerivedEvent", "all-ready")["phase"] == "Asserted"


# -- stale inputs: a status serve cannot keep current is unknown, not true -------------
DOWN = {"reason": "DaemonNotRunning", "message": "the daemon is Stopped"}


def test_a_stale_input_retracts_with_input_stale_and_asserts_again_when_current() -> None:
    w = World(derived())
    w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    assert w.set(1, "HealthCheck/internet", phase="Healthy") == ["asserted@1"]
    # The last reported phase is still Healthy, but nobody can vouch for it now.
    w.status["HealthCheck/internet"] = {"phase": "Healthy", "stale": DOWN}
    (ev,) = w.engine.on_status("HealthCheck/internet", w.status.get, T0 + 5)
    assert (ev.topic, ev.reason) == ("routerd.derived.wan.ready.retracted", "InputStale")
    assert (ev.attributes["trueInputs"], ev.attributes["unknownInputs"]) == (1, 1)
    assert "DaemonNotRunning" in ev.message
    status = w.engine.status("wan-ready")
    assert w.engine.phase("wan-ready") == "Retracted" and status["reason"] == "InputStale"
    view = status["inputs"][1]
    assert view["ok"] is None and view["stale"].startswith("HealthCheck/internet: Daemon")
    assert view["got"] is None  # the stale value is not shown as the current one
    # Still stale: nothing asserts, nothing more is published.
    assert w.set(6, "DHCPv6PrefixDelegation/wan-pd", phase="Applied") == []
    assert w.set(7, "HealthCheck/internet", phase="Healthy") == ["asserted@7"]
    assert w.engine.status("wan-ready")["reason"] == "Asserted"


def test_stale_inputs_combine_as_three_valued_logic() -> None:
    inputs = [{"value": PD, "equals": "Applied"}, {"value": HC, "equals": "Healthy"}]
    anyone = World(derived(inputs=inputs, emitWhen="any_true"))
    assert anyone.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied") == ["asserted@0"]
    # One true input is enough for any_true, whatever the other's staleness.
    assert anyone.set(1, "HealthCheck/internet", phase="Unhealthy", stale=DOWN) == []
    assert anyone.engine.phase("wan-ready") == "Asserted"
    both = World(derived())
    both.set(0, "HealthCheck/internet", phase="Healthy")
    # A false input decides all_true although the other is unknown: an ordinary retraction.
    both.set(1, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    both.status["HealthCheck/internet"] = {"phase": "Healthy", "stale": DOWN}
    both.status["DHCPv6PrefixDelegation/wan-pd"] = {"phase": "Error"}
    (ev,) = both.engine.on_status(None, both.status.get, T0 + 2)
    assert ev.reason == "Retracted"
    # Unknown never asserts, even where every known input holds.
    both.status["DHCPv6PrefixDelegation/wan-pd"] = {"phase": "Applied"}
    assert both.engine.on_status(None, both.status.get, T0 + 3) == []
    # Never reported and stale (no row at all) is unknown too.
    nothing = World(derived(inputs=[{"value": HC, "not_empty": False}]))
    assert nothing.set(0, "HealthCheck/internet", stale=DOWN) == []
    assert nothing.engine.status("wan-ready")["inputs"][0]["ok"] is None


def test_stale_retracts_through_the_hysteresis_and_whatever_retract_when_says() -> None:
    w = World(
        derived(
            hysteresis={"retract": "30s"},
            # Only a positive Unhealthy retracts: a Pending check after a restart does not.
            retractWhen={"inputs": [{"value": HC, "equals": "Unhealthy"}]},
        )
    )
    w.set(0, "DHCPv6PrefixDelegation/wan-pd", phase="Applied")
    assert w.set(1, "HealthCheck/internet", phase="Healthy") == ["asserted@1"]
    assert w.set(2, "HealthCheck/internet", phase="Pending") == []  # the middle ground
    assert w.set(10, "HealthCheck/internet", phase="Healthy", stale=DOWN) == []
    pending = w.engine.status("wan-ready")["pendingTransition"]
    assert (pending["to"], pending["reason"]) == ("Retracted", "InputStale")
    # Current again within the hysteresis: cancelled, nothing published.
    assert w.set(20, "HealthCheck/internet", phase="Healthy") == []
    assert w.engine.phase("wan-ready") == "Asserted"
    assert w.set(30, "HealthCheck/internet", phase="Healthy", stale=DOWN) == []
    assert w.tick(61) == ["retracted@60"]
    state = w.engine.dump("wan-ready")
    assert state["reason"] == "InputStale"
    # The reason survives a restart (state dumped and loaded).
    again = DerivedEventEngine(
        [
            derived(
                hysteresis={"retract": "30s"},
                retractWhen={"inputs": [{"value": HC, "equals": "Unhealthy"}]},
            )
        ]
    )
    again.load("wan-ready", json.loads(json.dumps(state)))
    assert again.reason("wan-ready") == "InputStale"
