"""pytest plugin of routerd (entry point ``pytest11``): fixtures for daemon tests.

``routerd_daemon`` starts real daemon processes in temporary runtime and
state dirs and stops them at teardown, failing the test if one does not stop
in time. The network-namespace lab fixtures live in
:mod:`routerd.testing.lab_fixtures`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import tempfile

import pytest

from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import daemon_factory
from routerd.testing.lab_fixtures import dhcp4_pair  # noqa: F401
from routerd.testing.lab_fixtures import dhcp6_pair  # noqa: F401
from routerd.testing.lab_fixtures import lab  # noqa: F401


@pytest.fixture
def routerd_daemon(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Factory: ``routerd_daemon(kind, config, resource, netns=None, env=None)``.

    Unix socket paths are limited to 107 bytes, so the dirs live in a short
    temporary directory rather than under pytest's deep ``tmp_path``.
    """
    with tempfile.TemporaryDirectory(prefix="rd-") as short:
        base = Path(short)
        (base / "logs").symlink_to(tmp_path)
        with daemon_factory(base) as factory:
            yield factory
