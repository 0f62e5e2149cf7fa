"""Topic globs: dotted lower-case topics, ``*`` one segment, ``**`` any number (also zero)."""

from __future__ import annotations

from functools import lru_cache
import re

_SEGMENT = re.compile(r"^[a-z0-9_-]+$")


class TopicPatternError(ValueError):
    """A topic glob that cannot match anything well-formed."""


def validate_topic(topic: str) -> None:
    """Raise ``ValueError`` unless ``topic`` is dotted lower-case segments."""
    if not topic or any(not _SEGMENT.match(seg) for seg in topic.split(".")):
        raise ValueError(f"topic {topic!r} must be dotted lower-case segments [a-z0-9_-]")


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> tuple[str, ...]:
    """Check a glob and return its segments; raises :class:`TopicPatternError`."""
    if not pattern:
        raise TopicPatternError("empty topic pattern")
    segments = tuple(pattern.split("."))
    for seg in segments:
        if seg in ("*", "**"):
            continue
        if not _SEGMENT.match(seg):
            raise TopicPatternError(
                f"topic pattern {pattern!r}: segment {seg!r} must be lower-case "
                "[a-z0-9_-], '*' (one segment) or '**' (any number)"
            )
    return segments


def _match(pat: tuple[str, ...], pi: int, parts: list[str], ti: int) -> bool:
    while pi < len(pat):
        seg = pat[pi]
        if seg == "**":
            # '**' absorbs zero or more segments: try every split point.
            return any(_match(pat, pi + 1, parts, k) for k in range(ti, len(parts) + 1))
        if ti >= len(parts) or (seg != "*" and seg != parts[ti]):
            return False
        pi += 1
        ti += 1
    return ti == len(parts)


def topic_matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches the glob ``pattern``."""
    return _match(compile_glob(pattern), 0, topic.split("."), 0)


def matches_any(patterns: tuple[str, ...] | list[str], topic: str) -> bool:
    """OR of :func:`topic_matches`; an empty pattern list matches every topic."""
    return not patterns or any(topic_matches(p, topic) for p in patterns)
