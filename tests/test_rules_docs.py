"""Every example in docs/rules.md validates, and does what its timeline says."""

from __future__ import annotations

from pathlib import Path
import re
from typing import Any

import pytest
from routerd.config import validate_router
from routerd.errors import ConfigError
from routerd.plugins import load_plugins
from routerd.rules import DERIVED_EVENT
from routerd.rules import EVENT_RULE
from routerd.rules.spec import OPERATORS
from routerd.testing.rules import defs_from_resources
from routerd.testing.rules import run_timeline
import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, Any]]:
    """(``resources`` | ``timeline``, parsed YAML) for every yaml block, in order."""
    out = []
    for lang, info, body in FENCE.findall(DOC.read_text()):
        if lang != "yaml":
            continue
        kind = "timeline" if info.strip() == "timeline" else "resources"
        out.append((kind, yaml.safe_load(body)))
    return out


def validate(resources: list[dict[str, Any]]) -> None:
    """Validate as a Router config, as ``routerd validate`` does (ConfigError lists all)."""
    plugins = load_plugins(allow={"healthcheck", "dhcpv4", "dhcpv6"})
    router = {
        "apiVersion": "routerd.net/v1alpha1",
        "kind": "Router",
        "metadata": {"name": "docs"},
        "spec": {"resources": resources},
    }
    config = validate_router(router, plugins)
    assert {r.kind for r in config.resources} & {EVENT_RULE, DERIVED_EVENT}


def examples() -> list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(resources, timeline) pairs: a timeline runs the resources written above it."""
    pairs = []
    pending: list[dict[str, Any]] = []
    for kind, data in blocks():
        if kind == "resources":
            assert isinstance(data, list), "a resource example is a list of resources"
            pending = data
        else:
            assert pending, "a timeline needs an example above it"
            pairs.append((pending, data))
    return pairs


def test_every_resource_example_validates() -> None:
    found = [data for kind, data in blocks() if kind == "resources"]
    assert len(found) >= 12
    for resources in found:
        validate(resources)


def test_a_broken_example_is_refused_with_every_problem() -> None:
    resources = [dict(r) for r in examples()[-1][0]]  # the last DerivedEvent example
    derived = dict(resources[-1])
    derived["spec"] = {**derived["spec"], "hysteresis": "soon"}
    resources[-1] = derived
    resources.pop(1)  # its HealthCheck/internet: now a reference to nothing
    resources.append({**derived, "spec": {**derived["spec"], "hysteresis": 0}})
    resources[-1]["metadata"] = {"name": "again"}
    with pytest.raises(ConfigError) as err:
        validate(resources)
    assert [str(p) for p in err.value.problems] == [
        "DerivedEvent/wan-ready: spec.hysteresis: Value error, 'soon' is not a duration "
        "(expected e.g. 10, 0.5, 500ms, 10s, 5m, 1h, 1d)",
        "DerivedEvent/again: spec.inputs[1].value: ${HealthCheck/internet.status.phase}: "
        "no resource HealthCheck/internet in this config",
        "DerivedEvent/again: spec.retractWhen.inputs[0].value: "
        "${HealthCheck/internet.status.phase}: no resource HealthCheck/internet in this config",
    ]


@pytest.mark.parametrize("index", range(len(examples())))
def test_example_runs_as_its_timeline_says(index: int) -> None:
    resources, timeline = examples()[index]
    rules, derived = defs_from_resources(resources)
    run_timeline(rules, derived, timeline)


def test_every_operator_and_derived_feature_has_a_run_example() -> None:
    operators: set[str] = set()
    features: set[str] = set()
    for resources, _ in examples():
        rules, derived = defs_from_resources(resources)
        operators |= {r.spec.pattern.operator for r in rules}
        for d in derived:
            s = d.spec.model_dump(by_alias=True, exclude_unset=True)
            features |= set(s)
    assert operators == set(OPERATORS)
    assert {"hysteresis", "retractWhen", "emitInitial", "emitWhen"} <= features


def test_a_wrong_expectation_fails() -> None:
    """The runner really checks: the window example with a wrong count fails."""
    resources, timeline = examples()[0]
    rules, derived = defs_from_resources(resources)
    broken = [dict(step) for step in timeline]
    broken[-1]["emits"] = [{"topic": "routerd.rules.wan.flapping", "attributes": {"count": 4}}]
    with pytest.raises(AssertionError, match="attribute count: expected 4, got 3"):
        run_timeline(rules, derived, broken)
    broken[-1]["emits"] = []
    with pytest.raises(AssertionError, match="expected 0 event"):
        run_timeline(rules, derived, broken)
