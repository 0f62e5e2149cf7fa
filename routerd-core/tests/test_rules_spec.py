"""EventRule / DerivedEvent validation: every problem named, with its field."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from routerd.config import ResourceConfig
from routerd.config import SpecModel
from routerd.rules import RULES_API_VERSION
from routerd.rules.checks import check_rules
from routerd.rules.fields import parse_template
from routerd.rules.spec import DerivedEventSpec
from routerd.rules.spec import EventRuleSpec


def problems(model: type[pydantic.BaseModel], spec: dict[str, Any]) -> list[str]:
    try:
        model.model_validate(spec)
    except pydantic.ValidationError as exc:
        return [
            ".".join(str(p) for p in e["loc"]) + ": " + e["msg"]
            for e in exc.errors(include_url=False)
        ]
    return []


def test_every_event_rule_problem_is_named() -> None:
    found = problems(
        EventRuleSpec,
        {
            "pattern": {
                "window": {"match": {"topic": "Routerd..x"}, "threshold": 0, "within": "often"}
            },
            "correlateBy": ["attributes.", "severity"],
            "emit": {"topic": "routerd.rules.*", "attributes": {"resource.name": "x"}},
        },
    )
    assert found == [
        "pattern.window.match.topic.0: Value error, topic pattern 'Routerd..x': segment 'Routerd' "
        "must be lower-case [a-z0-9_-], '*' (one segment) or '**' (any number)",
        "pattern.window.threshold: Input should be greater than or equal to 1",
        "pattern.window.within: Value error, 'often' is not a duration "
        "(expected e.g. 10, 0.5, 500ms, 10s, 5m, 1h, 1d)",
        "correlateBy.0: Value error, 'attributes.' is not an event field (expected "
        "attributes.<key> or one of resource.name, resource.kind, daemon.kind)",
        "correlateBy.1: Value error, 'severity' is not an event field (expected "
        "attributes.<key> or one of resource.name, resource.kind, daemon.kind)",
        "emit.topic: Value error, topic 'routerd.rules.*' must be dotted lower-case segments [a-z0-9_-]",
        "emit.attributes: Value error, resource.name: set by routerd on every virtual event",
    ]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ({"often": {}}, "unknown operator 'often' (expected one of any_of, all_of, sequence"),
        ({}, "exactly one operator is expected (found: none"),
        ({"count": {"match": "a.b", "every": 2}, "window": {}}, "found: count, window"),
        ({"absence": {"trigger": "a.b", "expected": "a.c", "within": 0}}, "greater than 0"),
        ({"sequence": ["a.b"]}, "at least 2 items"),
        (
            {
                "window": {
                    "match": {"topic": "a.b", "where": {"bogus": 1}},
                    "threshold": 2,
                    "within": 1,
                }
            },
            "'bogus' is not an event field",
        ),
    ],
)
def test_pattern_problems(pattern: dict[str, Any], message: str) -> None:
    found = problems(EventRuleSpec, {"pattern": pattern, "emit": {"topic": "a.b"}})
    assert any(message in p for p in found), found


def test_every_derived_event_problem_is_named() -> None:
    found = problems(
        DerivedEventSpec,
        {
            "topic": "wan.ready",
            "inputs": [
                {"value": "${HealthCheck/internet.status.bogus}", "equals": "Healthy"},
                {"value": "HealthCheck/internet.phase", "equals": "Healthy"},
                {"value": "${HealthCheck/internet.status.phase}"},
                {"value": "${HealthCheck/internet.status.phase}", "equals": 1, "in": [1]},
                {"any_of": [], "value": "${HealthCheck/x.status.phase}"},
            ],
            "emitWhen": "most_true",
            "hysteresis": {"assert": "soon"},
        },
    )
    assert [p.split(":", 1)[0] for p in found] == [
        "inputs.0.value",
        "inputs.1.value",
        "inputs.2",
        "inputs.3",
        "inputs.4.any_of",
        "emitWhen",
        "hysteresis.assert",
    ]
    assert "status.bogus does not exist" in found[0]
    assert "is not a status reference" in found[1]
    assert "exactly one test" in found[2] and "exactly one test" in found[3]


def resource(kind: str, name: str, spec: SpecModel | None = None) -> ResourceConfig:
    if spec is None:
        spec = EventRuleSpec.model_validate(
            {"pattern": {"any_of": ["a.b"]}, "emit": {"topic": "a.b"}}
        )
    return ResourceConfig(RULES_API_VERSION, kind, name, spec, "rules")


def test_whole_config_checks_references_cycles_and_templates() -> None:
    def dv(*refs: str) -> DerivedEventSpec:
        return DerivedEventSpec.model_validate(
            {
                "topic": "x.y",
                "inputs": [{"value": r, "equals": "Asserted"} for r in refs[:1]]
                + [{"all_of": [{"value": r, "not_empty": True} for r in refs[1:]]}]
                * (len(refs) > 1),
            }
        )

    rule = EventRuleSpec.model_validate(
        {
            "pattern": {"count": {"match": "a.b", "every": 2}},
            "emit": {
                "topic": "a.c",
                "message": "${count} ${correlation} ${nope}",
                "attributes": {"x": "${attributes.x}", "y": "${resource.name}${bad.var}"},
            },
        }
    )
    found = [
        str(p)
        for p in check_rules(
            [
                resource("HealthCheck", "internet"),
                resource("EventRule", "r", rule),
                resource("DerivedEvent", "a", dv("${DerivedEvent/b.status.phase}")),
                resource("DerivedEvent", "b", dv("${DerivedEvent/a.status.phase}")),
                resource(
                    "DerivedEvent",
                    "c",
                    dv(
                        "${DerivedEvent/c.status.phase}",
                        "${HealthCheck/internet.status.phase}",
                        "${HealthCheck/gone.status.observed.x}",
                    ),
                ),
            ]
        )
    ]
    assert found == [
        "EventRule/r: spec.emit.message: ${correlation} cannot resolve: the rule has no correlateBy",
        "EventRule/r: spec.emit.message: template variable ${nope} cannot resolve (expected "
        "attributes.<key> or one of resource.name, resource.kind, daemon.kind, topic, severity, "
        "reason, time, count, correlation, rule)",
        "EventRule/r: spec.emit.attributes.y: template variable ${bad.var} cannot resolve (expected "
        "attributes.<key> or one of resource.name, resource.kind, daemon.kind, topic, severity, "
        "reason, time, count, correlation, rule)",
        "DerivedEvent/c: spec.inputs[0].value: ${DerivedEvent/c.status.phase} reads this "
        "DerivedEvent itself",
        "DerivedEvent/c: spec.inputs[1].allOf[1].value: ${HealthCheck/gone.status.observed.x}: "
        "no resource HealthCheck/gone in this config",
        "DerivedEvent/a: spec.inputs: DerivedEvents read each other in a cycle: "
        "DerivedEvent/a -> DerivedEvent/b -> DerivedEvent/a",
    ]


def test_template_syntax_errors_are_spec_errors() -> None:
    found = problems(
        EventRuleSpec,
        {"pattern": {"any_of": ["a.b"]}, "emit": {"topic": "a.b", "message": "${count"}},
    )
    assert found == ["emit.message: Value error, template '${count': '${' without a closing '}'"]
    with pytest.raises(ValueError, match="empty variable"):
        parse_template("x ${ } y")


def test_the_api_shows_what_was_set_not_the_empty_alternatives() -> None:
    rule = EventRuleSpec.model_validate(
        {"pattern": {"count": {"match": "a.b", "every": 2}}, "emit": {"topic": "a.c"}}
    )
    assert rule.to_wire()["pattern"] == {
        "count": {"match": {"topic": ["a.b"], "where": {}}, "every": 2}
    }
    derived = DerivedEventSpec.model_validate(
        {"topic": "a.b", "inputs": [{"value": "${X/y.status.phase}", "in": ["A", "B"]}]}
    )
    assert derived.to_wire()["inputs"] == [{"value": "${X/y.status.phase}", "in": ["A", "B"]}]
