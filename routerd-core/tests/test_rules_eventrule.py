"""EventRule engine: one test per operator, correlation, guards, replay == live.

The engine is sans-I/O: the "clock" is the time of the events fed and the
``now`` given to ``advance``, so every test here runs on a fake clock.
"""

from __future__ import annotations

import json
import random
from typing import Any

from routerd.model import Event
from routerd.rules import MAX_CHAIN_DEPTH
from routerd.rules import MAX_KEYS
from routerd.rules.core import RulesCore
from routerd.rules.eventrule import EventRuleEngine
from routerd.rules.eventrule import RuleDef
from routerd.rules.spec import EventRuleSpec

T0 = 1_767_225_600.0
UNHEALTHY = "routerd.healthcheck.state.unhealthy"
HEALTHY = "routerd.healthcheck.state.healthy"


def rule(name: str = "r", **spec: Any) -> RuleDef:
    spec.setdefault("emit", {"topic": f"test.{name}.fired"})
    return RuleDef(name, EventRuleSpec.model_validate(spec))


def ev(t: float, topic: str, name: str = "internet", **attrs: Any) -> Event:
    base = {"resource.kind": "HealthCheck", "resource.name": name, "daemon.kind": "healthcheck"}
    return Event(0, T0 + t, topic, "info", "", "", {**base, **attrs})


def run(engine: EventRuleEngine, *events: Event) -> list[Event]:
    out: list[Event] = []
    for e in events:
        out += engine.feed(e)
    return out


def at(events: list[Event]) -> list[float]:
    return [round(e.time - T0, 6) for e in events]


def test_any_of_fires_for_each_event_matching_one_of_its_globs() -> None:
    eng = EventRuleEngine(
        [
            rule(
                pattern={
                    "any_of": [
                        "routerd.healthcheck.state.*",
                        {"topic": "routerd.resource.**", "where": {"attributes.phase": "Error"}},
                    ]
                },
                emit={"topic": "test.r.fired", "attributes": {"was": "${topic}"}},
            )
        ]
    )
    out = run(
        eng,
        ev(0, UNHEALTHY),
        ev(1, "routerd.healthcheck.probe.failed"),
        ev(2, "routerd.resource.phase.changed", phase="Healthy"),
        ev(3, "routerd.resource.phase.changed", phase="Error"),
        ev(4, HEALTHY),
    )
    assert [e.attributes["was"] for e in out] == [
        UNHEALTHY,
        "routerd.resource.phase.changed",
        HEALTHY,
    ]
    assert at(out) == [0, 3, 4]
    assert all(e.attributes["count"] == 1 for e in out)


def test_all_of_needs_every_match_per_key_within_the_window() -> None:
    eng = EventRuleEngine(
        [
            rule(
                pattern={
                    "all_of": {
                        "of": [UNHEALTHY, "routerd.dhcpv4.client.lease.expired"],
                        "within": "1m",
                    }
                },
                correlateBy=["resource.name"],
            )
        ]
    )
    out = run(
        eng,
        ev(0, UNHEALTHY, "a"),
        ev(10, "routerd.dhcpv4.client.lease.expired", "b"),  # other key: no
        ev(70, "routerd.dhcpv4.client.lease.expired", "a"),  # 70 s after: too late
        ev(100, UNHEALTHY, "a"),  # within 1m of the expiry at 70
    )
    assert at(out) == [100]
    assert out[0].attributes["correlation"] == "a"
    assert out[0].attributes["count"] == 2
    # Fired: the key starts over.
    assert run(eng, ev(101, UNHEALTHY, "a")) == []


def test_sequence_in_order_and_strict_breaks_on_another_step() -> None:
    steps = ["x.a", "x.b", "x.c"]
    loose = EventRuleEngine([rule(pattern={"sequence": {"steps": steps, "within": "1m"}})])
    strict = EventRuleEngine([rule(pattern={"sequence": {"steps": steps, "strict": True}})])
    seq = [ev(0, "x.a"), ev(1, "x.c"), ev(2, "x.b"), ev(3, "x.c")]
    assert at(run(loose, *seq)) == [3]
    # Strict: the "x.c" at 1 s came before "x.b", so the attempt broke.
    assert run(strict, *seq) == []
    assert at(run(strict, ev(4, "x.a"), ev(5, "x.b"), ev(6, "x.c"))) == [6]
    # Within: the whole sequence must fit in one minute.
    assert run(loose, ev(10, "x.a"), ev(20, "x.b"), ev(80, "x.c")) == []
    assert at(run(loose, ev(90, "x.a"), ev(91, "x.b"), ev(92, "x.c"))) == [92]


def test_window_fires_at_threshold_within_a_sliding_window_of_event_time() -> None:
    eng = EventRuleEngine(
        [
            rule(
                pattern={"window": {"match": UNHEALTHY, "threshold": 3, "within": "5m"}},
                correlateBy=["resource.name"],
                emit={
                    "topic": "routerd.rules.wan.flapping",
                    "message": "${resource.name} went unhealthy ${count} times",
                },
            )
        ]
    )
    # 0, 200, 400: the first has left the window (5 min) by the third.
    assert run(eng, ev(0, UNHEALTHY), ev(200, UNHEALTHY), ev(400, UNHEALTHY)) == []
    out = run(eng, ev(450, UNHEALTHY))
    assert at(out) == [450] and out[0].attributes["count"] == 3
    assert out[0].message == "internet went unhealthy 3 times"
    # Fired: the window starts empty again.
    assert run(eng, ev(460, UNHEALTHY), ev(470, UNHEALTHY)) == []
    # A late event (stored after newer ones) counts where its time puts it.
    assert at(run(eng, ev(465, UNHEALTHY))) == [465]


def test_absence_fires_at_the_deadline_unless_expected_comes_first() -> None:
    eng = EventRuleEngine(
        [
            rule(
                pattern={
                    "absence": {
                        "trigger": "routerd.dhcpv4.client.lease.bound",
                        "expected": "routerd.dhcpv4.client.lease.renewed",
                        "within": "60s",
                    }
                },
                correlateBy=["resource.name"],
            )
        ]
    )
    assert run(eng, ev(0, "routerd.dhcpv4.client.lease.bound", "wan")) == []
    assert eng.next_deadline() == T0 + 60
    assert eng.advance(T0 + 60) == []  # the expected event may still carry time 60
    out = eng.advance(T0 + 60.001)
    assert at(out) == [60]  # the virtual event has the deadline's time, not the clock's
    assert out[0].attributes["correlation"] == "wan"
    # Expected in time (even exactly at the deadline) cancels.
    run(eng, ev(100, "routerd.dhcpv4.client.lease.bound", "wan"))
    assert run(eng, ev(160, "routerd.dhcpv4.client.lease.renewed", "wan")) == []
    assert eng.advance(T0 + 1000) == [] and eng.next_deadline() is None
    # The next event's time also moves the clock: a backlog fires the timer in order.
    run(eng, ev(2000, "routerd.dhcpv4.client.lease.bound", "wan"))
    out = run(eng, ev(2100, "routerd.dhcpv4.client.lease.renewed", "wan"))
    assert at(out) == [2060]


def test_absence_with_one_topic_as_trigger_and_expected_is_a_watchdog() -> None:
    beat = "routerd.healthcheck.probe.succeeded"
    eng = EventRuleEngine(
        [rule(pattern={"absence": {"trigger": beat, "expected": beat, "within": "30s"}})]
    )
    assert run(eng, *(ev(t, beat) for t in (0, 20, 40, 60))) == []
    assert at(eng.advance(T0 + 200)) == [90]


def test_throttle_passes_limit_per_sliding_period() -> None:
    eng = EventRuleEngine(
        [rule(pattern={"throttle": {"match": UNHEALTHY, "limit": 2, "per": "10s"}})]
    )
    out = run(eng, *(ev(t, UNHEALTHY) for t in (0, 1, 2, 3, 4, 9.5, 10.5)))
    # 0 and 1 pass; 2..9.5 are suppressed; 10.5 passes (0 has left the 10 s window).
    assert at(out) == [0, 1, 10.5]
    assert out[2].attributes["count"] == 5  # itself and the 4 suppressed before it
    assert eng.status("r")["suppressed"] == 4


def test_debounce_publishes_the_last_event_once_quiet() -> None:
    eng = EventRuleEngine(
        [
            rule(
                pattern={"debounce": {"match": "routerd.dhcpv4.client.link.*", "quiet": "5s"}},
                emit={"topic": "test.r.fired", "attributes": {"last": "${topic}"}},
            )
        ]
    )
    burst = ["down", "up", "down", "up"]
    assert run(eng, *(ev(i, f"routerd.dhcpv4.client.link.{w}") for i, w in enumerate(burst))) == []
    assert eng.advance(T0 + 7.9) == []
    out = eng.advance(T0 + 8.1)
    assert at(out) == [8]
    assert out[0].attributes["count"] == 4
    assert out[0].attributes["last"] == "routerd.dhcpv4.client.link.up"


def test_count_fires_every_nth() -> None:
    eng = EventRuleEngine([rule(pattern={"count": {"match": HEALTHY, "every": 3}})])
    out = run(eng, *(ev(t, HEALTHY) for t in range(7)))
    assert at(out) == [2, 5]
    assert [e.attributes["count"] for e in out] == [3, 6]


def test_correlation_map_is_bounded_least_recently_seen_evicted() -> None:
    spec = {
        "pattern": {"window": {"match": UNHEALTHY, "threshold": 2, "within": "1h"}},
        "correlateBy": ["attributes.target"],
    }
    eng = EventRuleEngine([rule(**spec)])
    run(eng, *(ev(i, UNHEALTHY, target=f"t{i}") for i in range(MAX_KEYS + 904)))
    status = eng.status("r")
    assert status["keys"] == MAX_KEYS == status["maxKeys"]
    assert status["evictions"] == 904
    assert any("904 correlation keys evicted" in w for w in status["warnings"])
    # The oldest keys went; a recently seen one is still there and completes.
    assert run(eng, ev(5000, UNHEALTHY, target="t0")) == []
    last = f"t{MAX_KEYS + 903}"
    assert [e.attributes["correlation"] for e in run(eng, ev(5001, UNHEALTHY, target=last))] == [
        last
    ]


def test_missing_correlation_key_is_skipped_and_warned() -> None:
    eng = EventRuleEngine(
        [
            rule(
                pattern={"count": {"match": UNHEALTHY, "every": 1}},
                correlateBy=["attributes.target"],
            )
        ]
    )
    assert run(eng, ev(0, UNHEALTHY), ev(1, UNHEALTHY)) == []
    assert len(run(eng, ev(2, UNHEALTHY, target="a"))) == 1
    status = eng.status("r")
    assert status["missingCorrelationKey"] == 2
    assert status["warnings"] == ["2 matching events had no attributes.target to correlate by"]


def test_templates_keep_types_and_count_what_does_not_resolve() -> None:
    eng = EventRuleEngine(
        [
            rule(
                pattern={"count": {"match": UNHEALTHY, "every": 2}},
                correlateBy=["resource.name", "attributes.target"],
                emit={
                    "topic": "test.r.fired",
                    "severity": "warning",
                    "reason": "Flapping",
                    "message": "${resource.name}: ${count} x ${attributes.nope}",
                    "attributes": {
                        "n": "${count}",
                        "key": "${correlation}",
                        "target": "${attributes.target}",
                        "literal": "$${count}",
                        "fixed": 7,
                        "missing": "${attributes.nope}",
                    },
                },
            )
        ]
    )
    (out,) = run(eng, ev(0, UNHEALTHY, target="192.0.2.1"), ev(1, UNHEALTHY, target="192.0.2.1"))
    a = out.attributes
    assert (a["n"], a["key"], a["target"], a["literal"], a["fixed"], a["missing"]) == (
        2,
        "internet/192.0.2.1",
        "192.0.2.1",
        "${count}",
        7,
        None,
    )
    assert (out.severity, out.reason, out.message) == ("warning", "Flapping", "internet: 2 x ")
    assert (a["resource.kind"], a["resource.name"], a["daemon.kind"], a["chainDepth"]) == (
        "EventRule",
        "r",
        "rules",
        1,
    )
    assert eng.status("r")["unresolvedTemplates"] == 2


def test_a_rule_never_consumes_its_own_output() -> None:
    # Its pattern matches its own emit topic; fed back (as serve does), it is ignored.
    core = RulesCore(
        [rule("echo", pattern={"any_of": ["routerd.**"]}, emit={"topic": "routerd.rules.echo"})],
        [],
        lambda key: None,
    )
    out = core.feed(ev(0, UNHEALTHY))
    assert [e.topic for e in out] == ["routerd.rules.echo"]
    assert core.events.status("echo")["fireCount"] == 1


def test_a_chain_of_rules_is_bounded_by_depth() -> None:
    # Two rules feeding each other: a cycle, cut at MAX_CHAIN_DEPTH.
    core = RulesCore(
        [
            rule("ping", pattern={"any_of": ["test.pong", UNHEALTHY]}, emit={"topic": "test.ping"}),
            rule("pong", pattern={"any_of": ["test.ping"]}, emit={"topic": "test.pong"}),
        ],
        [],
        lambda key: None,
    )
    out = core.feed(ev(0, UNHEALTHY))
    assert len(out) == MAX_CHAIN_DEPTH
    assert [e.attributes["chainDepth"] for e in out] == list(range(1, MAX_CHAIN_DEPTH + 1))
    stuck = core.events.status("ping" if out[-1].topic == "test.pong" else "pong")
    assert stuck["chainDepthExceeded"] == 1
    assert any("chain depth" in w for w in stuck["warnings"])


# -- replay == live, and restart ------------------------------------------------------
MIXED = [
    rule("any", pattern={"any_of": ["a.*"]}),
    rule(
        "all",
        pattern={"all_of": {"of": ["a.x", "b.y"], "within": "20s"}},
        correlateBy=["attributes.k"],
    ),
    rule(
        "seq",
        pattern={"sequence": {"steps": ["a.x", "a.y", "b.x"], "within": "30s", "strict": True}},
    ),
    rule(
        "win",
        pattern={"window": {"match": "*.x", "threshold": 3, "within": "15s"}},
        correlateBy=["attributes.k"],
    ),
    rule(
        "abs",
        pattern={"absence": {"trigger": "a.x", "expected": "b.y", "within": "12s"}},
        correlateBy=["attributes.k"],
    ),
    rule("thr", pattern={"throttle": {"match": "b.*", "limit": 2, "per": "10s"}}),
    rule(
        "deb", pattern={"debounce": {"match": "a.y", "quiet": "4s"}}, correlateBy=["attributes.k"]
    ),
    rule("cnt", pattern={"count": {"match": "**", "every": 5}}),
]


def stream(seed: int, n: int = 400) -> list[Event]:
    rnd = random.Random(seed)
    t = 0.0
    out = []
    for _ in range(n):
        t += rnd.choice([0.1, 0.5, 1, 2, 3, 7, 13])
        out.append(ev(t, rnd.choice(["a.x", "a.y", "b.x", "b.y"]), k=rnd.choice("pq")))
    return out


def key(events: list[Event]) -> list[str]:
    return [json.dumps([e.time, e.topic, e.attributes], sort_keys=True) for e in events]


def test_a_backlog_gives_the_same_virtual_events_as_live_delivery() -> None:
    events = stream(1)
    end = events[-1].time + 100
    backlog = EventRuleEngine(MIXED)
    replayed: list[Event] = []
    for e in events:
        replayed += backlog.feed(e)
    replayed += backlog.advance(end)

    live = EventRuleEngine(MIXED)
    delivered: list[Event] = []
    clock = events[0].time
    for e in events:
        # Live: the wall clock ticks every 250 ms (less no grace) until the event is stored.
        while clock + 0.25 < e.time:
            clock += 0.25
            delivered += live.advance(clock)
        delivered += live.feed(e)
    delivered += live.advance(end)
    assert len(replayed) > 50, "the stream should exercise the operators"
    assert {e.attributes["resource.name"] for e in replayed} == {r.name for r in MIXED}
    assert key(delivered) == key(replayed)


def test_state_dumped_and_loaded_mid_stream_gives_the_same_outputs() -> None:
    events = stream(2)
    end = events[-1].time + 100
    whole = EventRuleEngine(MIXED)
    expected: list[Event] = []
    for e in events:
        expected += whole.feed(e)
    expected += whole.advance(end)

    first = EventRuleEngine(MIXED)
    got: list[Event] = []
    half = len(events) // 2
    for e in events[:half]:
        got += first.feed(e)
    dirty = first.take_dirty()
    assert dirty == {r.name for r in MIXED}
    saved = {name: json.loads(json.dumps(first.dump(name))) for name in dirty}
    second = EventRuleEngine(MIXED)  # a restart: only what was stored survives
    for name, data in saved.items():
        second.load(name, data)
    for e in events[half:]:
        got += second.feed(e)
    got += second.advance(end)
    assert key(got) == key(expected)
    assert second.status("cnt")["fireCount"] == whole.status("cnt")["fireCount"] > 0
