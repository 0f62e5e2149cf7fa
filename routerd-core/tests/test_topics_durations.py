from __future__ import annotations

import pytest
from routerd.durations import format_duration
from routerd.durations import parse_duration
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
    ],
)
def test_topic_globs(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize("pattern", ["", "a..b", "Routerd.x", "a.b c", "a.*x", "a.b."])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(TopicPatternError):
        compile_glob(pattern)


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
