"""``EventRule`` and ``DerivedEvent`` as kinds routerd serve runs itself."""

from __future__ import annotations

from routerd.kinds import ServeKind
from routerd.rules import DERIVED_EVENT
from routerd.rules import ENGINE_KIND
from routerd.rules import EVENT_RULE
from routerd.rules import RULES_API_VERSION
from routerd.rules.checks import check_rules
from routerd.rules.spec import DerivedEventSpec
from routerd.rules.spec import EventRuleSpec

SERVE_KINDS = {
    EVENT_RULE: ServeKind(
        ENGINE_KIND,
        EVENT_RULE,
        EventRuleSpec,
        RULES_API_VERSION,
        check_rules,
        "virtual events from patterns over the event stream",
    ),
    DERIVED_EVENT: ServeKind(
        ENGINE_KIND,
        DERIVED_EVENT,
        DerivedEventSpec,
        RULES_API_VERSION,
        check_rules,
        "virtual events asserted and retracted from resource status",
    ),
}
