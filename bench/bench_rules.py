"""EventRules in routerd serve: throughput through 100 rules, and delivery latency.

Side by side in one run:

1. Throughput, in process, on the same synthetic events (100 topics in 10
   groups, 10 resources, 100 events per second of event time; a rule takes
   1-10 % of them, the ``count`` rules all):
   - the store alone: ``EventStore.submit(Batch)`` of 1000 events, one batch in
     flight, as a follower does (the store's ingestion rate);
   - the rules alone: ``RulesCore.feed`` with 100 EventRules of the eight
     operators (no I/O);
   - the store beside one busy Python thread (a loop, no I/O): what any
     CPU-bound thread of serve costs the writer through the GIL;
   - the rules consumer alone over the same events already stored: reads,
     the 100 rules and its own commits (virtual events, position, state);
   - both: the same batches submitted while the rules consumer
     (``RulesRunner``) reads them back, feeds the 100 rules and commits its
     virtual events, position and rule state; timed until it has consumed the
     last event. The backlog (events stored, not yet consumed) is sampled
     after every batch: the consumer keeps up with ingestion when its rate
     matches the store's in the same run and the backlog stays bounded (a
     page or two) instead of growing with the number of events.
2. Latency through a real ``routerd serve`` (one health-check daemon, the 100
   rules plus one ``any_of`` on the probe topic): two long-polls on the main
   API, one on the probe topic and one on the virtual event's; a ``renew`` on
   the daemon's socket makes one probe. Latency = the virtual event's answer
   minus the source event's answer (the source stored → the virtual event
   visible), and minus the source event's own time.
"""

from __future__ import annotations

from pathlib import Path
import queue
import random
import threading
import time
from typing import Any

import common
from routerd.client import UnixClient
from routerd.errors import ClientError
from routerd.model import Event
from routerd.model import Scalar
from routerd.rules.core import RulesCore
from routerd.rules.eventrule import RuleDef
from routerd.rules.spec import EventRuleSpec
from routerd.serve.rules import RulesRunner
from routerd.serve.store import Batch
from routerd.serve.store import EventStore
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import ServeProcess
from routerd.timefmt import parse_rfc3339

NAME = "rules"
GROUPS = ("probe", "lease", "link", "state", "command", "prefix", "session", "route", "dns", "flow")
WHATS = ("ok", "failed", "up", "down", "bound", "renewed", "expired", "added", "removed", "changed")
TOPICS = [f"routerd.bench.{g}.{w}" for g in GROUPS for w in WHATS]
RESOURCES = [f"r{i}" for i in range(10)]
OPERATORS = ("any_of", "all_of", "sequence", "window", "absence", "throttle", "debounce", "count")
RULES_API = "rules.routerd.net/v1alpha1"
LATENCY_TOPIC = "routerd.rules.bench.latency"


def rule_spec(i: int) -> dict[str, Any]:
    """Rule ``i`` of the mixed hundred: the operators in turn, over varied topics and globs."""
    op = OPERATORS[i % len(OPERATORS)]
    t = [TOPICS[(i + k * 7) % len(TOPICS)] for k in range(3)]
    group = f"routerd.bench.{GROUPS[i % len(GROUPS)]}.*"
    patterns: dict[str, dict[str, Any]] = {
        "any_of": {"of": t[:2]},
        "all_of": {"of": t[:2], "within": "10s"},
        "sequence": {"steps": t, "within": "30s"},
        "window": {"match": group, "threshold": 5, "within": "10s"},
        "absence": {"trigger": t[0], "expected": t[1], "within": "5s"},
        "throttle": {"match": t[0], "limit": 2, "per": "5s"},
        "debounce": {"match": group, "quiet": "2s"},
        "count": {"match": "routerd.bench.**", "every": 100},
    }
    pattern = patterns[op]
    spec: dict[str, Any] = {
        "pattern": {op: pattern},
        "emit": {"topic": f"routerd.rules.bench.r{i}", "attributes": {"n": "${count}"}},
    }
    if i % 2:
        spec["correlateBy"] = ["resource.name"]
    return spec


def rule_defs(count: int = 100) -> list[RuleDef]:
    return [RuleDef(f"r{i}", EventRuleSpec.model_validate(rule_spec(i))) for i in range(count)]


def events(count: int, t0: float, seed: int = 7) -> list[Event]:
    rnd = random.Random(seed)
    out = []
    for i in range(1, count + 1):
        name = rnd.choice(RESOURCES)
        attrs: dict[str, Scalar] = {
            "resource.kind": "Bench",
            "resource.name": name,
            "daemon.kind": "bench",
            "sequence": i,
        }
        out.append(Event(i, t0 + i * 0.01, rnd.choice(TOPICS), "info", "R", f"m{i}", attrs))
    return out


def batches(evs: list[Event], size: int = 1000) -> list[Batch]:
    return [
        Batch("bench/src", 0, evs[min(i + size, len(evs)) - 1].cursor, evs[i : i + size])
        for i in range(0, len(evs), size)
    ]


def store_alone(path: Path, evs: list[Event]) -> float:
    store = EventStore(path)
    store.start()
    t0 = time.perf_counter()
    for b in batches(evs):
        commit = store.submit(b)
        commit.wait()
        if not commit.ok:
            raise RuntimeError("the store dropped a batch")
    took = time.perf_counter() - t0
    store.close()
    return took


def store_beside_busy(path: Path, evs: list[Event]) -> float:
    """The store's ingestion while another thread runs Python (shares the GIL)."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    busy = threading.Thread(target=spin, daemon=True)
    busy.start()
    try:
        return store_alone(path, evs)
    finally:
        stop.set()
        busy.join(5)


def rules_alone(evs: list[Event]) -> tuple[float, int]:
    core = RulesCore(rule_defs(), [], lambda key: None)
    t0 = time.perf_counter()
    out = 0
    for ev in evs:
        out += len(core.feed(ev))
    return time.perf_counter() - t0, out


def started_runner(store: EventStore) -> RulesRunner:
    """The rules consumer with the 100 rules, once it has made its first commit."""
    from routerd.config import ResourceConfig
    from routerd.config import RouterConfig

    config = RouterConfig(
        "bench",
        tuple(ResourceConfig(RULES_API, "EventRule", d.name, d.spec, "rules") for d in rule_defs()),
    )
    # settle: timers by event time only (the synthetic times are in the past).
    runner = RulesRunner(store, settle=1e9)
    runner.configure(config)
    runner.start()
    deadline = time.monotonic() + 30
    while runner.commits == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the rules consumer did not start")
        time.sleep(0.01)
    return runner


def wait_consumed(runner: RulesRunner, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while runner.consumed_committed < count:  # it skips the virtual events it stored
        if time.monotonic() > deadline or not runner.is_alive():
            raise RuntimeError(f"the rules consumer committed {runner.consumed} of {count}")
        time.sleep(0.002)


def consumer_alone(path: Path, evs: list[Event], timeout: float) -> float:
    """The consumer over a stored backlog: position at the head, then the events stored."""
    store = EventStore(path)
    store.start()
    first = started_runner(store)  # a fresh database: its position is the head (empty)
    first.stop()
    first.join(10)
    for b in batches(evs):
        if not store.submit(b).wait(60):
            raise RuntimeError("the store did not commit a batch")
    t0 = time.perf_counter()
    runner = started_runner(store)
    wait_consumed(runner, len(evs), timeout)
    took = time.perf_counter() - t0
    runner.stop()
    runner.join(10)
    store.close()
    return took


def store_and_rules(path: Path, evs: list[Event], timeout: float) -> dict[str, Any]:
    store = EventStore(path)
    store.start()
    runner = started_runner(store)
    t0 = time.perf_counter()
    backlog: list[int] = []  # stored, not consumed yet: after each batch
    stored = 0
    for b in batches(evs):
        commit = store.submit(b)
        commit.wait()
        if not commit.ok:
            raise RuntimeError("the store dropped a batch")
        stored += len(b.events)
        backlog.append(stored - runner.consumed)
    submitted = time.perf_counter() - t0
    wait_consumed(runner, len(evs), timeout)
    consumed = time.perf_counter() - t0
    snapshot = runner.snapshot()
    runner.stop()
    runner.join(10)
    store.close()
    half = backlog[len(backlog) // 2 - 1] if len(backlog) > 1 else backlog[-1]
    return {
        "submitted_s": submitted,
        "consumed_s": consumed,
        "backlog_max": max(backlog),
        "backlog_half": half,
        "backlog_end": backlog[-1],
        **snapshot,
    }


def throughput(result: dict[str, Any], base: Path, smoke: bool) -> dict[str, Any]:
    n = 5_000 if smoke else 100_000
    evs = events(n, time.time() - 7200)
    store_s = store_alone(base / "alone.db", evs)
    busy_s = store_beside_busy(base / "busy.db", evs)
    engine_s, virtual = rules_alone(evs)
    consumer_s = consumer_alone(base / "consumer.db", evs, 60 if smoke else 600)
    both = store_and_rules(base / "both.db", evs, 60 if smoke else 600)
    out = {
        "events": n,
        "rules": 100,
        "store_alone_eps": n / store_s,
        "store_beside_busy_eps": n / busy_s,
        "rules_alone_eps": n / engine_s,
        "consumer_alone_eps": n / consumer_s,
        "virtual_events": virtual,
        "store_and_rules_eps": n / both["consumed_s"],
        "store_while_rules_eps": n / both["submitted_s"],
        "runner": both,
    }
    common.emit_table(
        result,
        f"Throughput: {n:,} events, 100 EventRules of 8 operators ({virtual:,} virtual events)",
        ["what", "events/s", "x store alone"],
        [
            ["store alone: submit(Batch of 1000), one in flight", out["store_alone_eps"], 1.0],
            [
                "store beside one busy Python thread",
                out["store_beside_busy_eps"],
                common.ratio(out["store_beside_busy_eps"], out["store_alone_eps"]),
            ],
            [
                "rules alone: RulesCore.feed, no I/O",
                out["rules_alone_eps"],
                common.ratio(out["rules_alone_eps"], out["store_alone_eps"]),
            ],
            [
                "rules consumer alone: a stored backlog read, ruled, committed",
                out["consumer_alone_eps"],
                common.ratio(out["consumer_alone_eps"], out["store_alone_eps"]),
            ],
            [
                "store + rules consumer: stored and through the 100 rules",
                out["store_and_rules_eps"],
                common.ratio(out["store_and_rules_eps"], out["store_alone_eps"]),
            ],
            [
                "  the store's ingestion meanwhile",
                out["store_while_rules_eps"],
                common.ratio(out["store_while_rules_eps"], out["store_alone_eps"]),
            ],
        ],
    )
    common.emit_table(
        result,
        "Backlog of the rules consumer (events stored, not yet consumed)",
        ["at", "events"],
        [
            ["half of the ingestion", both["backlog_half"]],
            ["end of the ingestion", both["backlog_end"]],
            ["largest, sampled after every batch of 1000", both["backlog_max"]],
            [
                "seconds from the end of ingestion to all consumed",
                both["consumed_s"] - both["submitted_s"],
            ],
        ],
    )
    return out


# -- 2. latency through routerd serve -------------------------------------------------
class Follower(threading.Thread):
    """A long-poll loop on the main API; puts (arrival wall time, event) per event."""

    def __init__(self, serve: ServeProcess, topic: str, since: str) -> None:
        super().__init__(daemon=True)
        self.serve, self.topic, self.since = serve, topic, since
        self.got: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        client = self.serve.client(timeout=40)
        while not self.stop_flag.is_set():
            try:
                body = client.get(
                    "/api/control.routerd.net/v1alpha1/events",
                    since=self.since,
                    wait="500ms",
                    topic=self.topic,
                ).json()
            except ClientError:
                if self.stop_flag.is_set():
                    return
                raise
            stamp = time.time()
            for item in body["items"]:
                self.got.put((stamp, item))
            self.since = body["cursor"]


def latency(result: dict[str, Any], base: Path, port: int, smoke: bool) -> dict[str, Any]:
    rounds = 5 if smoke else 200
    rules = [
        {
            "apiVersion": RULES_API,
            "kind": "EventRule",
            "metadata": {"name": f"r{i}"},
            "spec": rule_spec(i),
        }
        for i in range(99)
    ]
    rules.append(
        {
            "apiVersion": RULES_API,
            "kind": "EventRule",
            "metadata": {"name": "latency"},
            "spec": {
                "pattern": {"any_of": ["routerd.healthcheck.probe.*"]},
                "emit": {"topic": LATENCY_TOPIC},
            },
        }
    )
    check = resource("HealthCheck", "hc", {**common.healthcheck_spec(port), "interval": "1h"})
    config = write_config(base / "router.yaml", router_config(check, *rules, name="bench"))
    serve = ServeProcess(
        config,
        base / "run",
        base / "state",
        base / "serve.log",
        env={"ROUTERD_PLUGINS": "healthcheck"},
    )
    source_lat: list[float] = []
    event_lat: list[float] = []
    try:
        serve.start(timeout=60)
        serve.wait_for_phase("EventRule", "latency", "Installed", timeout=30)
        head = serve.events(limit=1)["cursor"]
        followers = {
            "source": Follower(serve, "routerd.healthcheck.probe.*", head),
            "virtual": Follower(serve, LATENCY_TOPIC, head),
        }
        for f in followers.values():
            f.start()
        daemon = UnixClient(str(serve.runtime_dir / "healthcheck" / "hc.sock"), timeout=30)
        for _ in range(rounds + 2):  # the first two warm up
            if daemon.post("/v1/commands/renew").status != 200:
                raise RuntimeError("renew failed")
            t_src, src = followers["source"].got.get(timeout=30)
            t_virt, virt = followers["virtual"].got.get(timeout=30)
            source_lat.append(t_virt - t_src)
            event_lat.append(t_virt - parse_rfc3339(src["time"]))
            if virt["time"] != src["time"]:
                raise RuntimeError("the virtual event should carry its source's time")
            time.sleep(0.02)
        for f in followers.values():
            f.stop_flag.set()
        for f in followers.values():
            f.join(10)
        status = serve.status()["rules"]
    finally:
        try:
            serve.stop(15.0)
        except AssertionError as exc:
            print(f"warning: {exc}")
            serve.kill()
    out = {
        "rounds": rounds,
        "stored_to_visible": common.summary_ms(source_lat[2:]),
        "event_time_to_visible": common.summary_ms(event_lat[2:]),
        "rules_status": status,
    }
    common.emit_table(
        result,
        f"Latency through routerd serve with 100 EventRules ({rounds} probes, main API long-polls)",
        ["from -> virtual event on the long-poll", "p50 ms", "p99 ms", "max ms"],
        [
            [
                "source event on the long-poll (stored)",
                out["stored_to_visible"]["p50_ms"],
                out["stored_to_visible"]["p99_ms"],
                out["stored_to_visible"]["max_ms"],
            ],
            [
                "source event's own time (in the daemon)",
                out["event_time_to_visible"]["p50_ms"],
                out["event_time_to_visible"]["p99_ms"],
                out["event_time_to_visible"]["max_ms"],
            ],
        ],
    )
    return out


def main(smoke: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with common.temp_dir("rdb-rules-") as base, common.tcp_listener() as port:
        (base / "tp").mkdir()
        (base / "lat").mkdir()
        result["throughput"] = throughput(result, base / "tp", smoke)
        result["latency"] = latency(result, base / "lat", port, smoke)
    return result


if __name__ == "__main__":
    common.run_standalone(NAME, main)
