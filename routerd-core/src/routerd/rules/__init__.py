"""Virtual events: ``EventRule`` (patterns over the event stream) and ``DerivedEvent``
(level-triggered from resource status). See docs/rules.md.

The engines here are sans-I/O: they take events and status snapshots with their
time and return the events to publish; ``routerd serve`` (``routerd.serve.rules``)
feeds them from the SQLite store and writes what they return back into it.

Modules: :mod:`.spec` (the resource spec models), :mod:`.fields` (event field
paths and ``${...}`` templates), :mod:`.operators` (one state machine per
EventRule operator), :mod:`.eventrule` (the EventRule engine: dispatch,
correlation, timers), :mod:`.statusref` (``${Kind/name.status.<path>}``),
:mod:`.derived` (the DerivedEvent engine), :mod:`.checks` (validation against
the whole config).
"""

from __future__ import annotations

#: ``apiVersion`` of both kinds.
RULES_API_VERSION = "rules.routerd.net/v1alpha1"
EVENT_RULE = "EventRule"
DERIVED_EVENT = "DerivedEvent"
#: ``daemon.kind`` of every virtual event, and the engine name in the config
#: (``ResourceConfig.daemon_kind``): these resources run inside routerd serve.
ENGINE_KIND = "rules"
#: Attribute carrying how many rules an event went through (sources have none = 0).
CHAIN_DEPTH = "chainDepth"
#: An event at this depth is not consumed by any rule: a chain of rules is bounded.
MAX_CHAIN_DEPTH = 8
#: Correlation keys one rule holds; the least recently seen is evicted beyond it.
MAX_KEYS = 4096
