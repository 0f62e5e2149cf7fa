"""Router configuration: YAML loading and validation against plugin spec models.

Validation collects every problem, each naming the resource, the field and
what was expected, so ``routerd validate`` can print them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
import re
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any

import pydantic
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import PlainSerializer
from pydantic import WithJsonSchema
from pydantic.alias_generators import to_camel
import yaml

from routerd.durations import parse_duration
from routerd.errors import ConfigError
from routerd.errors import ConfigProblem
from routerd.secrets import redact_spec

if TYPE_CHECKING:
    from routerd.kinds import DaemonKind
    from routerd.plugins import PluginSet

ROUTER_API_VERSION = "routerd.net/v1alpha1"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _duration(value: object) -> float:
    return parse_duration(value)


#: A duration field: ``10``, ``0.5``, ``"500ms"``, ``"10s"``, ``"5m"``, ``"1h"``, ``"1d"``.
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(lambda v: v, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$"},
            ],
            "description": "seconds, or a number with a unit: ms, s, m, h, d",
        }
    ),
]


class SpecModel(pydantic.BaseModel):
    """Base of every resource spec model: camelCase fields, unknown fields rejected.

    Mark a field secret with ``Annotated[str, routerd.secrets.Secret()]`` (or
    ``SecretURL()`` for URL credentials): :meth:`to_wire`, status, events, the
    store and daemon logs then show it redacted (see :mod:`routerd.secrets`).
    """

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The spec as JSON, with every secret field redacted (``***``)."""
        return redact_spec(self)


@dataclass(frozen=True)
class ResourceConfig:
    """One validated resource of the Router config."""

    api_version: str
    kind: str
    name: str
    spec: SpecModel
    daemon_kind: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class RouterConfig:
    """A validated Router config."""

    name: str
    resources: tuple[ResourceConfig, ...]
    path: Path | None = None

    def find(self, name: str, daemon_kind: str | None = None) -> ResourceConfig | None:
        for res in self.resources:
            if res.name == name and (daemon_kind is None or res.daemon_kind == daemon_kind):
                return res
        return None


def _loc_to_field(loc: Iterable[int | str]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_spec(
    dk: DaemonKind, spec: object, where: str
) -> tuple[SpecModel | None, list[ConfigProblem]]:
    """Validate one spec against its kind's model; returns the model or the problems."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return None, [ConfigProblem(where, "spec", "must be a mapping")]
    try:
        return dk.spec_model.model_validate(spec), []
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            elif err["type"] == "missing":
                msg = "required field is missing"
            problems.append(ConfigProblem(where, _loc_to_field(err["loc"]), msg))
        return None, problems


def parse_yaml(text: str, source: str = "<config>") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            [ConfigProblem("", "", f"{source}: YAML syntax error{where}: {problem}")]
        ) from None


def validate_router(data: Any, plugins: PluginSet, path: Path | None = None) -> RouterConfig:
    """Validate a parsed Router document; raises :class:`ConfigError` with every problem."""
    problems: list[ConfigProblem] = []
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", "", "the config must be a Router mapping")])
    if data.get("apiVersion") != ROUTER_API_VERSION:
        problems.append(ConfigProblem("Router", "apiVersion", f"must be {ROUTER_API_VERSION!r}"))
    if data.get("kind") != "Router":
        problems.append(ConfigProblem("Router", "kind", "must be 'Router'"))
    extra = set(data) - {"apiVersion", "kind", "metadata", "spec"}
    for key in sorted(extra):
        problems.append(ConfigProblem("Router", key, "unknown field"))
    metadata = data.get("metadata") or {}
    router_name = metadata.get("name", "router") if isinstance(metadata, dict) else "router"
    spec = data.get("spec")
    items: list[Any] = []
    if not isinstance(spec, dict):
        problems.append(ConfigProblem("Router", "spec", "must be a mapping with 'resources'"))
    else:
        for key in sorted(set(spec) - {"resources"}):
            problems.append(ConfigProblem("Router", f"spec.{key}", "unknown field"))
        raw = spec.get("resources", [])
        if not isinstance(raw, list):
            problems.append(ConfigProblem("Router", "spec.resources", "must be a list"))
        else:
            items = raw
    resources: list[ResourceConfig] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        res, item_problems = _validate_resource(index, item, plugins, seen)
        problems.extend(item_problems)
        if res is not None:
            resources.append(res)
    if problems:
        raise ConfigError(problems)
    return RouterConfig(name=str(router_name), resources=tuple(resources), path=path)


def _validate_resource(
    index: int, item: Any, plugins: PluginSet, seen: set[tuple[str, str]]
) -> tuple[ResourceConfig | None, list[ConfigProblem]]:
    where = f"spec.resources[{index}]"
    if not isinstance(item, dict):
        return None, [ConfigProblem(where, "", "must be a mapping")]
    problems: list[ConfigProblem] = []
    kind = item.get("kind")
    meta = item.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(kind, str) and isinstance(name, str):
        where = f"{kind}/{name}"
    for key in sorted(set(item) - {"apiVersion", "kind", "metadata", "spec"}):
        problems.append(ConfigProblem(where, key, "unknown field"))
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(
            ConfigProblem(
                where,
                "metadata.name",
                "required: lower-case letters, digits and '-', at most 63",
            )
        )
    if not isinstance(kind, str):
        return None, [*problems, ConfigProblem(where, "kind", "required")]
    dk = plugins.kind_for_resource_kind(kind)
    if dk is None:
        known = ", ".join(sorted(k.kind for k in plugins.kinds.values())) or "none loaded"
        return None, [
            *problems,
            ConfigProblem(where, "kind", f"unknown kind {kind!r} (known: {known})"),
        ]
    api_version = item.get("apiVersion")
    if api_version != dk.api_version:
        problems.append(
            ConfigProblem(where, "apiVersion", f"must be {dk.api_version!r} for {kind}")
        )
    if isinstance(name, str):
        if (kind, name) in seen:
            problems.append(
                ConfigProblem(where, "metadata.name", "duplicate resource name for this kind")
            )
        seen.add((kind, name))
    model, spec_problems = validate_spec(dk, item.get("spec"), where)
    problems.extend(spec_problems)
    if problems or model is None or not isinstance(name, str):
        return None, problems
    return ResourceConfig(dk.api_version, kind, name, model, dk.name), []


def load_config(path: str | Path, plugins: PluginSet) -> RouterConfig:
    """Read and validate a Router config file; raises :class:`ConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem("", "", f"cannot read {p}: {exc}")]) from None
    return validate_router(parse_yaml(text, str(p)), plugins, p)


def json_schema(plugins: PluginSet) -> dict[str, Any]:
    """A JSON Schema of the Router document with every loaded kind."""
    variants = []
    for dk in sorted(plugins.kinds.values(), key=lambda k: k.kind):
        variants.append(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["apiVersion", "kind", "metadata"],
                "properties": {
                    "apiVersion": {"const": dk.api_version},
                    "kind": {"const": dk.kind},
                    "metadata": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string", "pattern": _NAME.pattern}},
                    },
                    "spec": dk.spec_model.model_json_schema(by_alias=True),
                },
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "routerd Router",
        "type": "object",
        "required": ["apiVersion", "kind", "spec"],
        "properties": {
            "apiVersion": {"const": ROUTER_API_VERSION},
            "kind": {"const": "Router"},
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
            "spec": {
                "type": "object",
                "properties": {"resources": {"type": "array", "items": {"oneOf": variants}}},
            },
        },
    }
