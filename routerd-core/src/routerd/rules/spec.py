"""Spec models of ``kind: EventRule`` and ``kind: DerivedEvent`` (docs/rules.md).

Both are validated like every other resource (camelCase fields, unknown fields
rejected, durations as ``10s``); what needs the whole config (a status
reference to a resource that does not exist) is checked in :mod:`.checks`.
"""

from __future__ import annotations

from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import AfterValidator
from pydantic import BeforeValidator
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator
from pydantic.alias_generators import to_camel

from routerd.config import Duration
from routerd.config import SpecModel
from routerd.durations import parse_duration
from routerd.model import Scalar
from routerd.model import Severity
from routerd.rules import CHAIN_DEPTH
from routerd.rules.fields import CORRELATION_FIELDS
from routerd.rules.fields import EVENT_FIELDS
from routerd.rules.fields import check_field_path
from routerd.rules.fields import parse_template
from routerd.rules.statusref import parse_status_ref
from routerd.topics import compile_glob
from routerd.topics import validate_topic

OPERATORS = (
    "any_of",
    "all_of",
    "sequence",
    "window",
    "absence",
    "throttle",
    "debounce",
    "count",
)
#: Attributes every virtual event carries that ``emit.attributes`` cannot set.
RESERVED_ATTRIBUTES = ("resource.kind", "resource.name", "daemon.kind", CHAIN_DEPTH)
#: Attributes of ``.asserted`` / ``.retracted`` events besides the reserved ones.
DERIVED_ATTRIBUTES = ("state", "previousState", "trueInputs", "unknownInputs", "inputs")


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be a duration greater than 0")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _glob(value: str) -> str:
    compile_glob(value)  # TopicPatternError is a ValueError: it names the bad segment
    return value


def _topic(value: str) -> str:
    validate_topic(value)
    return value


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


TopicGlob = Annotated[str, AfterValidator(_glob)]
Topic = Annotated[str, AfterValidator(_topic)]
EventField = Annotated[str, AfterValidator(check_field_path)]
CorrelationField = Annotated[str, AfterValidator(lambda p: check_field_path(p, CORRELATION_FIELDS))]


def _template(value: Scalar) -> Scalar:
    if isinstance(value, str):
        parse_template(value)
    return value


TemplateValue = Annotated[Scalar, AfterValidator(_template)]


class Match(SpecModel):
    """Which events a step of a pattern takes: topic globs (OR) and field values (AND).

    A plain string is shorthand for ``{topic: <glob>}``.
    """

    topic: Annotated[list[TopicGlob], BeforeValidator(_as_list), Field(min_length=1)]
    #: field path -> a value, or a list of values (any of them).
    where: dict[EventField, Scalar | list[Scalar]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"topic": data} if isinstance(data, str) else data


class AnyOf(SpecModel):
    """Every event matching one of ``of``."""

    of: list[Match] = Field(min_length=1)


class AllOf(SpecModel):
    """Every one of ``of`` seen (per correlation key), within ``within`` when given."""

    of: list[Match] = Field(min_length=2)
    within: PositiveDuration | None = None


class Sequence(SpecModel):
    """``steps`` in this order, the whole within ``within`` when given.

    ``strict``: an event matching any other step in between starts over.
    """

    steps: list[Match] = Field(min_length=2)
    within: PositiveDuration | None = None
    strict: bool = False


class Window(SpecModel):
    """``threshold`` matching events within a sliding ``within``."""

    match: Match
    threshold: int = Field(ge=1)
    within: PositiveDuration


class Absence(SpecModel):
    """``trigger`` starts a timer of ``within``; ``expected`` before it ends cancels it."""

    trigger: Match
    expected: Match
    within: PositiveDuration


class Throttle(SpecModel):
    """At most ``limit`` matching events per sliding ``per``; the rest are suppressed."""

    match: Match
    limit: int = Field(default=1, ge=1)
    per: PositiveDuration


class Debounce(SpecModel):
    """One event once matching events have stopped for ``quiet``."""

    match: Match
    quiet: PositiveDuration


class Count(SpecModel):
    """Every ``every``-th matching event."""

    match: Match
    every: int = Field(ge=1)


def _list_as(key: str) -> Any:
    def convert(value: object) -> object:
        return {key: value} if isinstance(value, list) else value

    return BeforeValidator(convert)


OperatorSpec = AnyOf | AllOf | Sequence | Window | Absence | Throttle | Debounce | Count


class Pattern(SpecModel):
    """Exactly one operator, named by its key: ``pattern: {window: {...}}``.

    ``any_of``, ``all_of`` and ``sequence`` also take a plain list (``of`` / ``steps``).
    """

    any_of: Annotated[AnyOf | None, _list_as("of")] = None
    all_of: Annotated[AllOf | None, _list_as("of")] = None
    sequence: Annotated[Sequence | None, _list_as("steps")] = None
    window: Window | None = None
    absence: Absence | None = None
    throttle: Throttle | None = None
    debounce: Debounce | None = None
    count: Count | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_operator(cls, data: Any) -> Any:
        # Name the problem the user made rather than "unknown field".
        if not isinstance(data, dict):
            raise ValueError(f"must be a mapping with one operator ({', '.join(OPERATORS)})")
        spelled = {name: name for name in OPERATORS} | {to_camel(name): name for name in OPERATORS}
        unknown = [k for k in data if k not in spelled]
        if unknown:
            raise ValueError(
                f"unknown operator {unknown[0]!r} (expected one of {', '.join(OPERATORS)})"
            )
        if len(data) != 1:
            found = ", ".join(str(k) for k in data) or "none"
            raise ValueError(
                f"exactly one operator is expected (found: {found}; one of {', '.join(OPERATORS)})"
            )
        return data

    @property
    def operator(self) -> str:
        return next(name for name in OPERATORS if getattr(self, name) is not None)

    @property
    def spec(self) -> OperatorSpec:
        value: OperatorSpec = getattr(self, self.operator)
        return value


class Emit(SpecModel):
    """The virtual event a rule publishes; strings are ``${...}`` templates."""

    topic: Topic
    severity: Severity = "info"
    reason: str = ""
    message: TemplateValue = ""
    attributes: dict[str, TemplateValue] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _not_reserved(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        clash = sorted(set(value) & set(RESERVED_ATTRIBUTES))
        if clash:
            raise ValueError(f"{', '.join(clash)}: set by routerd on every virtual event")
        return value


class _RuleSpec(SpecModel):
    def to_wire(self) -> dict[str, Any]:
        """The spec as shown by the API: what was set, without the empty alternatives
        (the operators not chosen, tests not used). These kinds hold no secrets."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data


class EventRuleSpec(_RuleSpec):
    """``kind: EventRule``: a pattern over the event stream and the event it emits."""

    pattern: Pattern
    correlate_by: list[CorrelationField] = Field(default_factory=list)
    emit: Emit


# -- DerivedEvent ------------------------------------------------------------------
def _status_ref(value: str) -> str:
    parse_status_ref(value)
    return value


StatusRef = Annotated[str, AfterValidator(_status_ref)]


class Input(SpecModel):
    """One condition: a status value tested with ``equals``, ``in`` or ``notEmpty``,
    or a nested ``anyOf`` / ``allOf`` of conditions."""

    name: str | None = None
    value: StatusRef | None = None
    equals: Scalar = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_empty: bool | None = None
    any_of: list[Input] | None = Field(default=None, min_length=1)
    all_of: list[Input] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> Input:
        tests = [t for t in ("equals", "in_", "not_empty") if t in self.model_fields_set]
        nested = [n for n in ("any_of", "all_of") if getattr(self, n) is not None]
        if nested:
            if self.value is not None or tests or len(nested) > 1:
                raise ValueError("a condition is either value + a test, or anyOf, or allOf")
            return self
        if self.value is None:
            raise ValueError("a condition needs 'value' (${Kind/name.status.<path>}) and a test")
        if len(tests) != 1:
            raise ValueError("a value needs exactly one test: equals, in or notEmpty")
        return self

    def refs(self) -> list[str]:
        """Every status reference in this condition (nested ones included)."""
        if self.value is not None:
            return [self.value]
        return [r for sub in (self.any_of or self.all_of or ()) for r in sub.refs()]


class RetractWhen(SpecModel):
    """Retract on conditions of their own (combined by ``when``)."""

    inputs: list[Input] = Field(min_length=1)
    when: Literal["all_true", "any_true"] = "any_true"


def _hysteresis(value: object) -> object:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        seconds = parse_duration(value)  # one problem for a bad duration, not one per direction
        return {"assert": seconds, "retract": seconds}
    return value


class Hysteresis(SpecModel):
    """How long a new outcome must hold before it is published."""

    assert_: Duration = Field(default=0.0, alias="assert")
    retract: Duration = 0.0


class DerivedEventSpec(_RuleSpec):
    """``kind: DerivedEvent``: ``<topic>.asserted`` / ``.retracted`` from resource status."""

    topic: Topic
    inputs: list[Input] = Field(min_length=1)
    emit_when: Literal["all_true", "any_true"] = "all_true"
    #: Default: the complement of ``emitWhen`` (``any_false`` for ``all_true``).
    retract_when: Literal["any_false", "all_false"] | RetractWhen | None = None
    hysteresis: Annotated[Hysteresis, BeforeValidator(_hysteresis)] = Field(
        default_factory=Hysteresis
    )
    emit_initial: bool = False
    asserted_severity: Severity = "info"
    retracted_severity: Severity = "info"
    attributes: dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _not_reserved(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        clash = sorted(set(value) & {*RESERVED_ATTRIBUTES, *DERIVED_ATTRIBUTES})
        if clash:
            raise ValueError(f"{', '.join(clash)}: set by routerd on every derived event")
        return value

    def refs(self) -> list[str]:
        out = [r for i in self.inputs for r in i.refs()]
        if isinstance(self.retract_when, RetractWhen):
            out += [r for i in self.retract_when.inputs for r in i.refs()]
        return out


__all__ = [
    "EVENT_FIELDS",
    "OPERATORS",
    "DerivedEventSpec",
    "EventRuleSpec",
    "Input",
    "Match",
    "OperatorSpec",
    "Pattern",
]
