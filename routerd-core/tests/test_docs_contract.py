"""Docs stay true to the code: every hook and every public name is documented."""

from __future__ import annotations

import inspect
from pathlib import Path

import routerd
from routerd import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_hook_is_documented_with_its_signature() -> None:
    text = (DOCS / "plugin-hooks.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("routerd_")]
    assert hooks, "no hookspecs found"
    for name in hooks:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"{name}({params})" in text, f"{name}({params}) is not in docs/plugin-hooks.md"


def test_every_hookspec_has_a_contract_docstring() -> None:
    for name in dir(hookspecs):
        if name.startswith("routerd_"):
            doc = inspect.getdoc(getattr(hookspecs, name)) or ""
            assert ":param" in doc and "Called" in doc and "versionadded" in doc, name


def test_public_surface_is_frozen() -> None:
    assert set(routerd.__all__) == {"PLUGIN_API", "DaemonKind", "__version__", "hookimpl"}
    for name in routerd.__all__:
        assert getattr(routerd, name) is not None
