"""docs/events.md lists exactly the topics the shipped code can emit."""

from __future__ import annotations

from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[1]
TOPIC = re.compile(r"""["'`](routerd\.[a-z0-9_-]+(?:\.[a-z0-9_-]+){2,})["'`]""")
#: Sphinx cross-references (:func:`routerd.daemon.listen.bind_listener`) name
#: code, not topics, though they look alike.
XREF = re.compile(r":(?:func|meth|class|mod|attr|data|exc):$")
SOURCES = [ROOT / "routerd-core" / "src", *sorted((ROOT / "plugins").glob("*/src"))]


def code_topics() -> set[str]:
    found: set[str] = set()
    for base in SOURCES:
        for path in base.rglob("*.py"):
            if "testing" in path.parts:
                continue
            text = path.read_text()
            found.update(
                m.group(1)
                for m in TOPIC.finditer(text)
                if not XREF.search(text, max(0, m.start() - 8), m.start())
            )
    return found


def doc_topics() -> set[str]:
    text = (ROOT / "docs" / "events.md").read_text()
    return {m.group(1) for m in TOPIC.finditer(text)}


def test_code_topics_are_found() -> None:
    topics = code_topics()
    assert "routerd.daemon.lifecycle.started" in topics
    assert "routerd.healthcheck.state.unhealthy" in topics


def test_every_emitted_topic_is_documented() -> None:
    missing = code_topics() - doc_topics()
    assert not missing, f"topics emitted but not in docs/events.md: {sorted(missing)}"


def test_every_documented_topic_is_emitted() -> None:
    stale = doc_topics() - code_topics()
    assert not stale, f"topics in docs/events.md that no code emits: {sorted(stale)}"


def test_virtual_event_attributes_and_reasons_are_documented() -> None:
    """Virtual events' topics come from the config; what routerd puts in them is listed."""
    from routerd.rules.derived import INPUT_STALE
    from routerd.rules.operators import DEFAULT_REASONS
    from routerd.rules.spec import DERIVED_ATTRIBUTES
    from routerd.rules.spec import RESERVED_ATTRIBUTES

    text = (ROOT / "docs" / "events.md").read_text()
    section = text.split("## Virtual events", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Za-z.<>]+)", section))
    wanted = {
        *RESERVED_ATTRIBUTES,
        *DERIVED_ATTRIBUTES,
        "count",
        "correlation",
        "input.<name>",
        *DEFAULT_REASONS.values(),
        "Asserted",
        "Retracted",
        INPUT_STALE,
    }
    assert not wanted - named, f"not in docs/events.md's virtual events: {sorted(wanted - named)}"
