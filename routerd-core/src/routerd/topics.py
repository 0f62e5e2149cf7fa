"""Topic globs: dotted lower-case topics, ``*`` one segment, ``**`` any number (also zero).

A glob is compiled once (checked, bounded, consecutive ``**`` collapsed) and
matched with the two-pointer wildcard algorithm: it remembers only the last
``**`` and resumes from there, so a match costs at most
O(segments of the glob x segments of the topic) whatever the glob. A naive
recursive matcher tries every split point for every ``**`` and is exponential
in their number (26 of them held a daemon's event log for 12 s).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
import re

_SEGMENT = re.compile(r"^[a-z0-9_-]+$")

#: Bounds on one glob. Real topics have 4 to 7 segments and under 80 characters;
#: the bounds leave room for any of them and refuse what is only a cost.
MAX_PATTERN_LENGTH = 256
MAX_PATTERN_SEGMENTS = 32


class TopicPatternError(ValueError):
    """A topic glob that cannot match anything well-formed, or is over a bound."""


def validate_topic(topic: str) -> None:
    """Raise ``ValueError`` unless ``topic`` is dotted lower-case segments."""
    if not topic or any(not _SEGMENT.match(seg) for seg in topic.split(".")):
        raise ValueError(f"topic {topic!r} must be dotted lower-case segments [a-z0-9_-]")


@dataclass(frozen=True)
class TopicGlob:
    """One checked glob; :meth:`matches` runs in O(len(segments) x topic segments)."""

    pattern: str
    segments: tuple[str, ...]  # consecutive '**' collapsed into one

    @property
    def literal(self) -> bool:
        return "*" not in self.pattern

    def matches(self, topic: str) -> bool:
        if self.literal:
            return topic == self.pattern
        pat = self.segments
        parts = topic.split(".")
        pi = ti = 0
        star = -1  # index of the last '**' seen in pat
        resume = 0  # topic index that '**' is currently taken to end at
        while ti < len(parts):
            seg = pat[pi] if pi < len(pat) else None
            if seg == "**":
                star, resume = pi, ti
                pi += 1
            elif seg is not None and (seg == "*" or seg == parts[ti]):
                pi += 1
                ti += 1
            elif star >= 0:
                # Let the last '**' absorb one more segment. Earlier '**' never
                # need revisiting: whatever they could absorb, the last one can.
                resume += 1
                pi, ti = star + 1, resume
            else:
                return False
        return all(seg == "**" for seg in pat[pi:])


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> TopicGlob:
    """Check a glob and compile it; raises :class:`TopicPatternError`."""
    if not pattern:
        raise TopicPatternError("empty topic pattern")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise TopicPatternError(
            f"topic pattern is {len(pattern)} characters long; at most {MAX_PATTERN_LENGTH}"
        )
    raw = pattern.split(".")
    if len(raw) > MAX_PATTERN_SEGMENTS:
        raise TopicPatternError(
            f"topic pattern has {len(raw)} segments; at most {MAX_PATTERN_SEGMENTS}"
        )
    segments: list[str] = []
    for seg in raw:
        if seg == "**" and segments and segments[-1] == "**":
            continue  # '**.**' matches exactly what '**' matches
        if seg not in ("*", "**") and not _SEGMENT.match(seg):
            raise TopicPatternError(
                f"topic pattern {pattern!r}: segment {seg!r} must be lower-case "
                "[a-z0-9_-], '*' (one segment) or '**' (any number)"
            )
        segments.append(seg)
    return TopicGlob(pattern, tuple(segments))


@dataclass(frozen=True)
class TopicFilter:
    """An OR of globs, compiled once per request; no globs matches every topic."""

    globs: tuple[TopicGlob, ...] = ()

    @classmethod
    def of(cls, patterns: Iterable[str]) -> TopicFilter:
        return cls(tuple(compile_glob(p) for p in patterns))

    def matches(self, topic: str) -> bool:
        return not self.globs or any(g.matches(topic) for g in self.globs)


def topic_matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches the glob ``pattern``."""
    return compile_glob(pattern).matches(topic)


def matches_any(patterns: tuple[str, ...] | list[str], topic: str) -> bool:
    """OR of :func:`topic_matches`; an empty pattern list matches every topic."""
    return not patterns or any(topic_matches(p, topic) for p in patterns)
