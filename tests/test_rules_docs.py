"""Every example in docs/rules.md validates, and does what its timeline says."""

from __future__ import annotations

from pathlib import Path
import re
from typing import Any

import pytest
from routerd.config import ResourceConfig
from routerd.config import validate_router
from routerd.errors import ConfigError
from routerd.plugins import load_plugins
from routerd.rules import DERIVED_EVENT
from routerd.rules import EVENT_RULE
from routerd.rules import RULES_API_VERSION
from routerd.rules.checks import check_rules
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
    """Validate as a Router config: plugin kinds by their plugins, rules by their models
    and against the whole config; raises ConfigError with every problem."""
    plugins = load_plugins(allow={"healthcheck", "dhcpv4", "dhcpv6"})
    rule_kinds = (EVENT_RULE, DERIVED_EVENT)
    others = [r for r in resources if r["kind"] not in rule_kinds]
    router = {
        "apiVersion": "routerd.net/v1alpha1",
        "kind": "Router",
        "metadata": {"name": "docs"},
        "spec": {"resources": others},
    }
    configs = list(validate_router(router, plugins).resources)
    rules, derived = defs_from_resources(resources)
    for d in [*rules, *derived]:
        kind = EVENT_RULE if d in rules else DERIVED_EVENT
        configs.append(ResourceConfig(RULES_API_VERSION, kind, d.name, d.spec, "rules"))
    for res in resources:
        if res["kind"] in rule_kinds:
            assert res["apiVersion"] == RULES_API_VERSION
    problems = check_rules(configs)
    if problems:
        raise ConfigError(problems)


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
