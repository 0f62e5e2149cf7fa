"""Validation of EventRule and DerivedEvent against the whole config.

What one spec cannot know on its own: that ``${Kind/name.status...}`` names a
resource of this config, that DerivedEvents do not read each other in a
cycle, and that every ``${...}`` of an EventRule's ``emit`` can resolve.
Every problem is reported, each naming the resource and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from routerd.errors import ConfigProblem
from routerd.rules import DERIVED_EVENT
from routerd.rules import EVENT_RULE
from routerd.rules.fields import check_emit_variable
from routerd.rules.fields import parse_template
from routerd.rules.spec import DerivedEventSpec
from routerd.rules.spec import EventRuleSpec
from routerd.rules.spec import Input
from routerd.rules.spec import RetractWhen
from routerd.rules.statusref import parse_status_ref

if TYPE_CHECKING:
    from routerd.config import ResourceConfig


def check_rules(
    resources: Sequence[ResourceConfig], declared: set[str] | None = None
) -> list[ConfigProblem]:
    """Problems of the EventRules and DerivedEvents among ``resources``.

    ``declared``: ``<Kind>/<name>`` of every resource in the file, also those
    that did not validate (a reference to one of them is not "missing").
    """
    known = {f"{r.kind}/{r.name}" for r in resources} | (declared or set())
    problems: list[ConfigProblem] = []
    graph: dict[str, set[str]] = {}
    for res in resources:
        if res.kind == EVENT_RULE and isinstance(res.spec, EventRuleSpec):
            problems += _check_emit(res.ref, res.spec)
        elif res.kind == DERIVED_EVENT and isinstance(res.spec, DerivedEventSpec):
            deps: set[str] = set()
            for field, cond in _inputs(res.spec):
                assert cond.value is not None
                ref = parse_status_ref(cond.value)
                if ref.key == res.ref:
                    problems.append(
                        ConfigProblem(
                            res.ref, field, f"{cond.value} reads this DerivedEvent itself"
                        )
                    )
                elif ref.key not in known:
                    problems.append(
                        ConfigProblem(
                            res.ref,
                            field,
                            f"{cond.value}: no resource {ref.key} in this config",
                        )
                    )
                elif ref.kind == DERIVED_EVENT:
                    deps.add(ref.key)
            graph[res.ref] = deps
    problems += _cycles(graph)
    return problems


def _check_emit(where: str, spec: EventRuleSpec) -> list[ConfigProblem]:
    correlated = bool(spec.correlate_by)
    fields: list[tuple[str, object]] = [("spec.emit.message", spec.emit.message)]
    fields += [(f"spec.emit.attributes.{k}", v) for k, v in spec.emit.attributes.items()]
    problems = []
    for field, value in fields:
        if not isinstance(value, str):
            continue
        for var in parse_template(value).variables:
            problem = check_emit_variable(var, correlated=correlated)
            if problem:
                problems.append(ConfigProblem(where, field, problem))
    return problems


def _inputs(spec: DerivedEventSpec) -> list[tuple[str, Input]]:
    """Every condition with a value, with its field path."""
    out: list[tuple[str, Input]] = []

    def walk(prefix: str, conds: list[Input]) -> None:
        for i, cond in enumerate(conds):
            here = f"{prefix}[{i}]"
            if cond.any_of is not None:
                walk(f"{here}.anyOf", cond.any_of)
            elif cond.all_of is not None:
                walk(f"{here}.allOf", cond.all_of)
            else:
                out.append((f"{here}.value", cond))

    walk("spec.inputs", spec.inputs)
    if isinstance(spec.retract_when, RetractWhen):
        walk("spec.retractWhen.inputs", spec.retract_when.inputs)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[ConfigProblem]:
    """DerivedEvents that read each other in a circle could flip each other forever."""
    problems = []
    reported: set[frozenset[str]] = set()
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    cycle = frozenset(path)
                    if cycle not in reported:
                        reported.add(cycle)
                        problems.append(
                            ConfigProblem(
                                start,
                                "spec.inputs",
                                "DerivedEvents read each other in a cycle: "
                                + " -> ".join([*path, start]),
                            )
                        )
                elif nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return problems
