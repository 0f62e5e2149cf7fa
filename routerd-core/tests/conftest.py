"""Fixtures for routerd-core's unit tests: fake plugins with real entry points."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import importlib
from pathlib import Path
import sys
import textwrap

import pytest


@pytest.fixture
def fake_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str, str], None]]:
    """Install a fake distribution with one ``routerd`` entry point.

    ``fake_plugins(dist_name, module_name, module_source)``: the module is
    importable and the distribution is found by importlib.metadata, exactly
    as a pip-installed plugin would be.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    added: list[str] = []

    def install(dist: str, module: str, source: str) -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-9.9.9.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 9.9.9\n")
        (info / "entry_points.txt").write_text(f"[routerd]\n{module} = {module}\n")
        added.append(module)
        importlib.invalidate_caches()

    yield install
    for module in added:
        sys.modules.pop(module, None)
