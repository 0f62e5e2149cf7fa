from __future__ import annotations

from functools import cache
import time

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
from routerd.durations import format_duration
from routerd.durations import parse_duration
from routerd.topics import MAX_PATTERN_LENGTH
from routerd.topics import MAX_PATTERN_SEGMENTS
from routerd.topics import TopicFilter
from routerd.topics import TopicPatternError
from routerd.topics import compile_glob
from routerd.topics import matches_any
from routerd.topics import topic_matches


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("routerd.dhcpv4.client.lease.bound", "routerd.dhcpv4.client.lease.bound", True),
        ("routerd.dhcpv4.client.lease.*", "routerd.dhcpv4.client.lease.bound", True),
        ("routerd.dhcpv4.client.lease.*", "routerd.dhcpv4.client.lease", False),
        ("routerd.*", "routerd.dhcpv4.client", False),
        ("routerd.**", "routerd.dhcpv4.client.lease.bound", True),
        ("routerd.**", "routerd", True),  # ** matches zero segments
        ("routerd.**.bound", "routerd.dhcpv4.client.lease.bound", True),
        ("routerd.**.bound", "routerd.bound", True),
        ("routerd.**.bound", "routerd.dhcpv4.client.lease.renewed", False),
        ("**", "anything.at.all", True),
        ("*.daemon.*.*", "routerd.daemon.lifecycle.started", True),
        ("routerd.healthcheck.state.healthy", "routerd.healthcheck.state.unhealthy", False),
        ("**.**.**", "a", True),
        ("**.*.**", "a", True),
        ("**.*.**.*", "a", False),
        ("a.**.b.**.c", "a.x.b.y.b.c", True),
        ("a.**.b.*", "a.b.b.b", True),
        ("a.**.b.*", "a.b.x.c", False),
        ("*", "a.b", False),
    ],
)
def test_topic_globs(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "a..b",
        "Routerd.x",
        "a.b c",
        "a.*x",
        "a.b.",
        "a" * (MAX_PATTERN_LENGTH + 1),
        ".".join(["**"] * (MAX_PATTERN_SEGMENTS + 1)),
        ".".join(["a"] * (MAX_PATTERN_SEGMENTS + 1)),
    ],
)
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(TopicPatternError):
        compile_glob(pattern)


def test_bounds_are_inclusive_and_repeated_globstars_collapse() -> None:
    assert compile_glob("a" * MAX_PATTERN_LENGTH).literal
    assert compile_glob(".".join(["**"] * MAX_PATTERN_SEGMENTS)).segments == ("**",)
    assert compile_glob("a.**.**.*.**.**.b").segments == ("a", "**", "*", "**", "b")


def _reference(pattern: str, topic: str) -> bool:
    """The definition, memoized: DP over (glob segment, topic segment)."""
    pat, parts = pattern.split("."), topic.split(".")

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(parts)
        if pat[i] == "**":
            return match(i + 1, j) or (j < len(parts) and match(i, j + 1))
        return j < len(parts) and pat[i] in ("*", parts[j]) and match(i + 1, j + 1)

    return match(0, 0)


@settings(max_examples=300, deadline=None)
@given(
    pattern=st.lists(st.sampled_from(["a", "b", "*", "**"]), min_size=1, max_size=9).map(".".join),
    topic=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=9).map(".".join),
)
def test_matcher_agrees_with_the_definition(pattern: str, topic: str) -> None:
    assert topic_matches(pattern, topic) is _reference(pattern, topic)


def test_pathological_globs_cost_linear_time() -> None:
    # A backtracking matcher tries every split for every '**': 26 of them
    # against a few hundred events held a daemon's event log for 12 s.
    glob = compile_glob(".".join(["**"] * (MAX_PATTERN_SEGMENTS - 1)) + ".zzz")
    mixed = compile_glob(".".join(["**", "*"] * (MAX_PATTERN_SEGMENTS // 2 - 1)) + ".**.zzz")
    topic = ".".join(["routerd", "dhcpv6", "client", "prefix", "x", "y", "z", "renewed"])
    t0 = time.monotonic()
    for _ in range(1000):
        assert not glob.matches(topic)
        assert not mixed.matches(topic)
    assert time.monotonic() - t0 < 1.0


def test_filter_is_an_or_of_globs() -> None:
    flt = TopicFilter.of(["a.*", "**.z"])
    assert flt.matches("a.b") and flt.matches("x.y.z") and not flt.matches("b.a")
    assert TopicFilter.of([]).matches("any.thing")


def test_matches_any_is_or_and_empty_matches_all() -> None:
    assert matches_any([], "x.y")
    assert matches_any(["a.*", "x.*"], "x.y")
    assert not matches_any(["a.*", "b.*"], "x.y")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (10, 10.0),
        (0.5, 0.5),
        ("10", 10.0),
        ("500ms", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        (" 2.5s ", 2.5),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", "ten", "-1", "1w", "1.2.3s", True, None, [], float("nan"), float("inf"), -3]
)
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration() -> None:
    assert format_duration(0.25) == "250ms"
    assert format_duration(150) == "2m30s"
    assert format_duration(3600) == "1h"
