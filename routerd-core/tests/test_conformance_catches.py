"""The conformance suite fails broken engines (it passed every one of them before).

A plugin ``flaky`` whose engine misbehaves as its spec says is run through
the real suite (``DaemonConformance``) in a pytest subprocess; each broken
mode must fail exactly the tests that catch it, and the good mode must pass
them all (so the failures are the engine's, not the setup's).
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import subprocess
import sys
import textwrap

import pytest

FLAKY = """
    import time

    # Imported where they are defined (not routerd.plugin), so the same plugin
    # runs against routerd-core before the suite could catch it.
    from routerd import DaemonKind, hookimpl
    from routerd.config import SpecModel
    from routerd.daemon.engine import CommandOutcome, DaemonEngine

    class Spec(SpecModel):
        mode: str = "good"

    class Engine(DaemonEngine):
        def start(self, ctx):
            self.ctx = ctx
            self.mode = ctx.spec.mode
            if self.mode != "stuck-pending":
                ctx.status.set_condition("Working", True, "Started", "")
                ctx.status.set_phase("Up", "Started", "working")

        def command(self, name, args):
            if name == "renew" and self.mode == "renew-raises":
                raise RuntimeError("renew exploded")
            return CommandOutcome("renewed", {"mode": self.mode})

        def stop(self):
            if self.mode == "stop-overruns":
                time.sleep(3)  # the deliberately broken teardown

    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="flaky", kind="Flaky", spec_model=Spec,
                            factory=lambda ctx: Engine()))
"""

SUITE = """
    import os

    import pytest
    from routerd.testing.conformance import ConformanceTarget, DaemonConformance
    from routerd.testing.daemon import resource, router_config


    class TestFlaky(DaemonConformance):
        @pytest.fixture
        def conformance_target(self):
            return ConformanceTarget(
                "flaky",
                router_config(resource("Flaky", "f", {"mode": os.environ["FLAKY_MODE"]})),
                "f",
                env={"ROUTERD_PLUGINS": "flaky"},
                settle_within=3,
            )
"""

#: The suite's tests that catch the three broken engines (plus one that none should fail).
SELECTED = (
    "test_renew",
    "test_stop_command_exits_within_2s_and_removes_socket",
    "test_sigterm_stops_within_2s_with_longpoll_open",
    "test_resource_leaves_pending",
    "test_healthz",
)


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("conformance")
    site = base / "site"
    site.mkdir()
    (site / "flaky.py").write_text(textwrap.dedent(FLAKY))
    info = site / "flaky-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flaky\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[routerd]\nflaky = flaky\n")
    (base / "test_flaky.py").write_text(textwrap.dedent(SUITE))
    (base / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    return base


def outcomes(suite_dir: Path, mode: str) -> dict[str, str]:
    env = {
        **os.environ,
        "FLAKY_MODE": mode,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(suite_dir / "site"), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-q", "test_flaky.py", "-k", " or ".join(SELECTED)],
        cwd=suite_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = dict(
        (name, status)
        for status, name in re.findall(
            r"^(PASSED|FAILED|ERROR|SKIPPED) test_flaky\.py::TestFlaky::(\w+)", proc.stdout, re.M
        )
    )
    assert set(found) == set(SELECTED), proc.stdout[-3000:]
    return found


@pytest.mark.parametrize(
    ("mode", "failing"),
    [
        ("good", set()),
        ("renew-raises", {"test_renew"}),
        (
            "stop-overruns",
            {
                "test_stop_command_exits_within_2s_and_removes_socket",
                "test_sigterm_stops_within_2s_with_longpoll_open",
            },
        ),
        ("stuck-pending", {"test_resource_leaves_pending"}),
    ],
)
def test_the_suite_fails_a_broken_engine(suite_dir: Path, mode: str, failing: set[str]) -> None:
    """Before: renew-raises, stop-overruns and stuck-pending passed every test."""
    got = outcomes(suite_dir, mode)
    assert {name for name, status in got.items() if status != "PASSED"} == failing, got
