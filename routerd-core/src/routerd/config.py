"""Router configuration: YAML loading and validation against plugin spec models.

Validation collects every problem, each naming the resource, the field and
what was expected, so ``routerd validate`` can print them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
import datetime
import os
from pathlib import Path
import re
import stat
from typing import TYPE_CHECKING
from typing import Annotated
from typing import Any
from typing import NoReturn

import pydantic
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import PlainSerializer
from pydantic import WithJsonSchema
from pydantic.alias_generators import to_camel
import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.events import CollectionEndEvent
from yaml.events import CollectionStartEvent
from yaml.events import DocumentEndEvent
from yaml.events import MappingStartEvent
from yaml.events import ScalarEvent
from yaml.events import StreamEndEvent
from yaml.nodes import MappingNode
from yaml.nodes import Node
from yaml.nodes import ScalarNode
from yaml.nodes import SequenceNode
from yaml.parser import ParserError
from yaml.reader import ReaderError
from yaml.resolver import Resolver
from yaml.scanner import ScannerError

from routerd.durations import MAX_DURATION
from routerd.durations import parse_duration
from routerd.errors import ConfigError
from routerd.errors import ConfigProblem
from routerd.kinds import ServeKind
from routerd.kinds import serve_kinds
from routerd.secrets import redact_spec

if TYPE_CHECKING:
    from routerd.kinds import DaemonKind
    from routerd.plugins import PluginSet

ROUTER_API_VERSION = "routerd.net/v1alpha1"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Bounds on config input (docs/configuration.md, "Limits"). A router's config
# is a few kB: 256 resources of a few fields each are ~40 kB and ~10,000 YAML
# values, ~8 levels deep. Each bound is far above that and far below what
# would cost seconds or memory to load.
#: Largest config file read; one byte more is refused without parsing.
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of YAML collections, aliases expanded (a DHCPv6 downstream field is at 8).
MAX_DEPTH = 32
#: Most YAML values after expanding aliases and merge keys ("billion laughs" stops here).
MAX_NODES = 100_000
#: Most resources in one Router: each is a daemon process.
MAX_RESOURCES = 256
#: Longest string any spec field takes (plugins bound most fields tighter).
MAX_STRING = 4096
# One problem is one line: where (resource, field) and what, each cut to these.
_MAX_WHERE = 100
_MAX_PROBLEM = 300


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
                {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$", "maxLength": 32},
            ],
            "description": "seconds, or a number with a unit: ms, s, m, h, d; at most 365d",
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
        # Config types are what they say: `healthyThreshold: true` is not 1,
        # `port: "80"` and `count: 2.0` are not ints, `!!binary` is not a str.
        # (A float field still takes an int: `interval: 10`.)
        strict=True,
        str_max_length=MAX_STRING,
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
    #: The ``spec`` as the file had it, before validation (None: not known):
    #: what routerd serve hands a forked daemon (:func:`resource_from_item`),
    #: which validates it again with its own plugin code instead of reading
    #: the file again.
    raw_spec: Any = field(default=None, compare=False, repr=False)

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


def _one_line(text: str, limit: int) -> str:
    """``text`` as one printable line of at most ``limit`` characters.

    Config text reaches the terminal through problems (a kind, a key, a
    name): a line break would forge a second problem line, an escape
    sequence would drive the terminal.
    """
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _fail(problems: list[ConfigProblem]) -> NoReturn:
    """Raise :class:`ConfigError` with every problem cut to one line."""
    raise ConfigError(
        [
            ConfigProblem(
                _one_line(p.resource, _MAX_WHERE),
                _one_line(p.field, _MAX_WHERE),
                _one_line(p.problem, _MAX_PROBLEM),
            )
            for p in problems
        ]
    )


def _loc_to_field(loc: Iterable[int | str]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_TYPE_NAMES = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (bytes, "binary data"),
    (list, "a list"),
    (dict, "a mapping"),
    (datetime.date, "a date"),
    (type(None), "null"),
)


def _type_name(value: object) -> str:
    return next((name for t, name in _TYPE_NAMES if isinstance(value, t)), type(value).__name__)


def validate_spec(
    dk: DaemonKind | ServeKind, spec: object, where: str
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
            elif err["type"].endswith("_type"):
                # The type, never the value: the value may be a secret.
                msg = f"{msg}, got {_type_name(err.get('input'))}"
            problems.append(ConfigProblem(where, _loc_to_field(err["loc"]), msg))
        return None, problems


# -- reading and loading ------------------------------------------------------
_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_config_text(path: str | Path) -> str:
    """The text of a config file; raises :class:`ConfigError` with one problem.

    Symlinks are followed (a loop is ELOOP from open). Only a regular file of
    at most :data:`MAX_CONFIG_BYTES` is read, as UTF-8 (a BOM is dropped).
    """
    name = str(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer
        # (forever); this way it opens at once and fstat refuses it.
        # O_NOCTTY: a terminal named as config must not become ours.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        _fail([ConfigProblem("", "", f"cannot read {name}: {exc.strerror or exc}")])
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = next((kind for test, kind in _NOT_REGULAR if test(mode)), "unknown type")
            _fail([ConfigProblem("", "", f"{name}: not a regular file ({what})")])
        chunks: list[bytes] = []
        size = 0
        # Read to EOF rather than trust st_size: a file may grow, and some
        # (procfs) report 0. One byte past the limit is enough to refuse.
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        _fail([ConfigProblem("", "", f"cannot read {name}: {exc.strerror or exc}")])
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        limit = f"{MAX_CONFIG_BYTES >> 20} MiB"
        _fail([ConfigProblem("", "", f"{name}: larger than {limit}; not a router config")])
    try:
        return b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail(
            [ConfigProblem("", "", f"{name}: not UTF-8 text (invalid byte at offset {exc.start})")]
        )


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


def _tag_name(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return str(node.tag).removeprefix("tag:yaml.org,2002:")


class _StrictConstructor(SafeConstructor):
    """SafeConstructor that refuses what a config cannot mean.

    Mapping keys are strings (``1:``, ``~:`` and YAML 1.1's ``on:`` are not)
    and appear once (PyYAML keeps the last silently); a scalar that does not
    construct (a 5000-digit int, the date 2001-02-30) is a problem at its
    line, not a ValueError from deep inside PyYAML.
    """

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            why = str(exc).split(";")[0]
            raise ConstructorError(
                None, None, f"not a valid {_tag_name(node)}: {why}", node.start_mark
            ) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, ScalarNode) and key.tag == _STR:
                if key.value in seen:
                    raise ConstructorError(
                        None, None, f"duplicate key {key.value!r}", key.start_mark
                    )
                seen.add(key.value)
        # Merge keys (``<<: *base``) bring keys of their own: check after merging.
        self.flatten_mapping(node)
        for key, _ in node.value:
            if not (isinstance(key, ScalarNode) and key.tag == _STR):
                shown = f" {key.value[:40]!r}" if isinstance(key, ScalarNode) else ""
                raise ConstructorError(
                    None,
                    None,
                    f"mapping keys must be strings, not {_tag_name(key)}{shown}",
                    key.start_mark,
                )
        return super().construct_mapping(node, deep)


class _Composer:
    """PyYAML's composer without recursion, bounding depth and expanded size.

    Aliases share one node, so a few hundred bytes of anchors describe 9**9
    values that anything walking the result (or merging keys) expands:
    every alias counts with the size of what it names.
    """

    def __init__(self) -> None:
        self.resolver: Any = Resolver()  # its stubs are untyped
        self.anchors: dict[str, Node] = {}
        self.weight: dict[int, tuple[int, int]] = {}  # id(node) -> (values expanded, height)
        self.stack: list[tuple[Node, list[Node]]] = []
        self.total = 0

    # Events are Any: libyaml's carry their own Mark type, which PyYAML's
    # stubs do not let a Node hold, though both behave the same.
    def compose(self, events: Iterable[Any]) -> Node | None:
        stream = iter(events)
        next(stream)  # StreamStart
        if isinstance(next(stream), StreamEndEvent):
            return None
        root: Node | None = None
        for event in stream:
            if isinstance(event, DocumentEndEvent):
                break
            if isinstance(event, CollectionEndEvent):
                node = self._close(event)
            elif isinstance(event, AliasEvent):
                node = self._alias(event)
            else:
                node = self._node(event)
            if self.total > MAX_NODES:
                self._error(f"more than {MAX_NODES} YAML values (aliases expanded)", event)
            if isinstance(event, CollectionStartEvent):
                if len(self.stack) >= MAX_DEPTH:
                    self._error(f"nested deeper than {MAX_DEPTH} levels", event)
                self.stack.append((node, []))
                continue
            if len(self.stack) + self.weight[id(node)][1] > MAX_DEPTH:
                self._error(f"nested deeper than {MAX_DEPTH} levels", event)
            if self.stack:
                self.stack[-1][1].append(node)
            else:
                root = node
        end = next(stream)
        if not isinstance(end, StreamEndEvent):
            raise ComposerError(
                "expected a single document in the stream",
                None,
                "but found another document",
                end.start_mark,
            )
        return root

    @staticmethod
    def _error(problem: str, event: Any) -> NoReturn:
        raise ComposerError(None, None, problem, event.start_mark)

    def _close(self, event: Any) -> Node:
        node, children = self.stack.pop()
        node.end_mark = event.end_mark
        if isinstance(node, MappingNode):
            node.value = list(zip(children[::2], children[1::2], strict=True))
        else:
            node.value = children
        size = 1 + sum(self.weight[id(child)][0] for child in children)
        height = 1 + max((self.weight[id(child)][1] for child in children), default=0)
        self.weight[id(node)] = (size, height)
        return node

    def _alias(self, event: Any) -> Node:
        node = self.anchors.get(str(event.anchor))
        if node is None:
            self._error(f"found undefined alias {event.anchor!r}", event)
        if id(node) not in self.weight:
            self._error("an alias refers to a collection that contains itself", event)
        self.total += self.weight[id(node)][0]
        return node

    def _node(self, event: Any) -> Node:
        self.total += 1
        node: Node
        start: Any = event.start_mark
        end: Any = event.end_mark
        if isinstance(event, ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolver.resolve(ScalarNode, event.value, event.implicit)
            node = ScalarNode(tag, event.value, start, end, event.style)
            self.weight[id(node)] = (1, 1)
        else:
            assert isinstance(event, CollectionStartEvent)
            kind = MappingNode if isinstance(event, MappingStartEvent) else SequenceNode
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolver.resolve(kind, None, event.implicit)
            node = kind(tag, [], start, None, flow_style=event.flow_style)
        if event.anchor is not None:
            if event.anchor in self.anchors:
                self._error(f"found duplicate anchor {event.anchor!r}", event)
            self.anchors[event.anchor] = node
        return node


# libyaml parses ~20x faster than pure Python (1 MiB of `1,` in 0.3 s, not
# 6 s); composing and constructing stay ours either way.
_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_problem(exc: Exception, source: str) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = ", ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        kind = "YAML syntax error" if isinstance(exc, ScannerError | ParserError) else "YAML error"
        return f"{source}: {kind}{where}: {what}"
    if isinstance(exc, ReaderError):
        return f"{source}: YAML syntax error at offset {exc.position}: {exc.reason}"
    if isinstance(exc, RecursionError | MemoryError):
        return f"{source}: YAML too deep or too large to load"
    return f"{source}: YAML error: {exc}"


def parse_yaml(text: str, source: str = "<config>") -> Any:
    """One YAML document, within :data:`MAX_DEPTH` and :data:`MAX_NODES`.

    Raises :class:`ConfigError` with one problem (where in the file, what)
    for anything it cannot load; nothing else escapes.
    """
    try:
        node = _Composer().compose(yaml.parse(text, Loader=_Parser))
        if node is None:
            return None
        return _StrictConstructor().construct_document(node)
    except (yaml.YAMLError, RecursionError, MemoryError, ValueError, OverflowError) as exc:
        _fail([ConfigProblem("", "", _yaml_problem(exc, source))])


def _sorted_keys(keys: Iterable[Any]) -> list[str]:
    return sorted(str(k) for k in keys)


def validate_router(data: Any, plugins: PluginSet, path: Path | None = None) -> RouterConfig:
    """Validate a parsed Router document; raises :class:`ConfigError` with every problem."""
    problems: list[ConfigProblem] = []
    if not isinstance(data, dict):
        _fail([ConfigProblem("", "", "the config must be a Router mapping")])
    if data.get("apiVersion") != ROUTER_API_VERSION:
        problems.append(ConfigProblem("Router", "apiVersion", f"must be {ROUTER_API_VERSION!r}"))
    if data.get("kind") != "Router":
        problems.append(ConfigProblem("Router", "kind", "must be 'Router'"))
    extra = set(data) - {"apiVersion", "kind", "metadata", "spec"}
    for key in _sorted_keys(extra):
        problems.append(ConfigProblem("Router", key, "unknown field"))
    metadata = data.get("metadata")
    if metadata is None:  # absent or `metadata:` with nothing under it
        metadata = {}
    router_name: Any = "router"
    if not isinstance(metadata, dict):
        problems.append(ConfigProblem("Router", "metadata", "must be a mapping"))
    else:
        router_name = metadata.get("name", "router")
        if not isinstance(router_name, str) or not 1 <= len(router_name) <= 63:
            problems.append(
                ConfigProblem("Router", "metadata.name", "must be a string of 1-63 characters")
            )
    spec = data.get("spec")
    items: list[Any] = []
    if not isinstance(spec, dict):
        problems.append(ConfigProblem("Router", "spec", "must be a mapping with 'resources'"))
    else:
        for key in _sorted_keys(set(spec) - {"resources"}):
            problems.append(ConfigProblem("Router", f"spec.{key}", "unknown field"))
        raw = spec.get("resources", [])
        if not isinstance(raw, list):
            problems.append(ConfigProblem("Router", "spec.resources", "must be a list"))
        elif len(raw) > MAX_RESOURCES:
            problems.append(
                ConfigProblem(
                    "Router",
                    "spec.resources",
                    f"{len(raw)} resources; at most {MAX_RESOURCES} (one daemon each)",
                )
            )
        else:
            items = raw
    resources: list[ResourceConfig] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        res, item_problems = _validate_resource(index, item, plugins, seen)
        problems.extend(item_problems)
        if res is not None:
            resources.append(res)
    problems.extend(_check_serve_kinds(resources, items))
    if problems:
        _fail(problems)
    return RouterConfig(name=str(router_name), resources=tuple(resources), path=path)


def _check_serve_kinds(resources: list[ResourceConfig], items: list[Any]) -> list[ConfigProblem]:
    """Checks of serve's own kinds against the whole config (references between resources)."""
    used = {r.kind for r in resources}
    checks = []
    for sk in serve_kinds().values():
        if sk.kind in used and sk.check is not None and sk.check not in checks:
            checks.append(sk.check)
    declared = {
        f"{i.get('kind')}/{i['metadata'].get('name')}"
        for i in items
        if isinstance(i, dict) and isinstance(i.get("metadata"), dict)
    }
    return [p for check in checks for p in check(resources, declared)]


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
    for key in _sorted_keys(set(item) - {"apiVersion", "kind", "metadata", "spec"}):
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
    clash = plugins.conflict(kind)
    if clash is not None:  # never served by whichever plugin happened to load first
        return None, [*problems, ConfigProblem(where, "kind", clash)]
    dk = plugins.kind_for_resource_kind(kind) or serve_kinds().get(kind)
    if dk is None:
        known = ", ".join(sorted({*(k.kind for k in plugins.kinds.values()), *serve_kinds()}))
        return None, [
            *problems,
            ConfigProblem(where, "kind", f"unknown kind {kind[:64]!r} (known: {known})"),
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
    raw = item.get("spec")
    raw = {} if raw is None else raw
    return ResourceConfig(dk.api_version, kind, name, model, dk.name, raw), []


def load_config(path: str | Path, plugins: PluginSet) -> RouterConfig:
    """Read and validate a Router config file; raises :class:`ConfigError`.

    Whatever the file holds, the only exception is :class:`ConfigError`,
    whose problems are one line each.
    """
    p = Path(path)
    return validate_router(parse_yaml(read_config_text(p), str(p)), plugins, p)


def load_resource(
    path: str | Path, plugins: PluginSet, name: str, dk: DaemonKind
) -> ResourceConfig:
    """Read the config and validate only resource ``name`` of daemon kind ``dk``.

    What ``routerd daemon`` (and its reload) needs: the other resources of the
    file are serve's business, so a kind this process does not know, or a
    mistake in another resource, does not stop this daemon. Raises
    :class:`ConfigError` (one line per problem) when the file is not a Router
    document, holds no such resource, or the resource does not validate.
    """
    p = Path(path)
    data = parse_yaml(read_config_text(p), str(p))
    spec = data.get("spec") if isinstance(data, dict) else None
    items = spec.get("resources") if isinstance(spec, dict) else None
    if not isinstance(items, list):
        _fail([ConfigProblem("Router", "spec.resources", "must be a list of resources")])
    mine = [
        (index, item)
        for index, item in enumerate(items)
        if isinstance(item, dict)
        and item.get("kind") == dk.kind
        and isinstance(item.get("metadata"), dict)
        and item["metadata"].get("name") == name
    ]
    if not mine:
        _fail([ConfigProblem("", "", f"no resource {dk.kind}/{name} in {p}")])
    seen: set[tuple[str, str]] = set()
    problems: list[ConfigProblem] = []
    found: ResourceConfig | None = None
    for index, item in mine:
        res, item_problems = _validate_resource(index, item, plugins, seen)
        problems.extend(item_problems)
        found = found or res
    if problems or found is None:
        _fail(problems or [ConfigProblem(f"{dk.kind}/{name}", "", "does not validate")])
    return found


def resource_from_item(
    path: str | Path, plugins: PluginSet, name: str, dk: DaemonKind, api_version: str, spec: Any
) -> ResourceConfig:
    """Validate resource ``name`` of ``dk`` from its ``apiVersion`` and raw ``spec``.

    What a daemon forked by routerd serve gets instead of reading ``path``
    (serve has just read and validated the whole file): the same checks as
    :func:`load_resource` on the same values, with this process's plugin
    code, minus 1-4 ms of reading and parsing YAML. Raises
    :class:`ConfigError` like :func:`load_resource`.
    """
    item = {"apiVersion": api_version, "kind": dk.kind, "metadata": {"name": name}, "spec": spec}
    res, problems = _validate_resource(0, item, plugins, set())
    if problems or res is None:
        _fail(problems or [ConfigProblem(f"{dk.kind}/{name}", "", f"does not validate ({path})")])
    return res


def json_schema(plugins: PluginSet) -> dict[str, Any]:
    """A JSON Schema of the Router document with every loaded kind."""
    variants = []
    kinds: list[DaemonKind | ServeKind] = sorted(plugins.kinds.values(), key=lambda k: k.kind)
    kinds += sorted(serve_kinds().values(), key=lambda k: k.kind)  # serve's own, after
    for dk in kinds:
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
