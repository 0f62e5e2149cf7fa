"""pyroute2's ``IPRoute`` without importing the whole pyroute2 package.

``import pyroute2`` (and so any ``pyroute2.x.y``, whose parent package is
executed first) imports 163 modules: NDB, IPDB, nftables, WireGuard, 802.11,
plan9 and more, 270 ms on this machine without bytecode. A daemon needs
``pyroute2.iproute.linux`` (99 modules, 130 ms). This registers the
``pyroute2`` package in ``sys.modules`` without running its ``__init__`` so
that submodules import on their own; the first access to a name the
package itself defines (``from pyroute2 import NDB``, anywhere in the
process) runs the real ``__init__`` then, so nothing else breaks.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

_lock = threading.RLock()


def _lean_package(name: str) -> None:
    """Put package ``name`` in ``sys.modules`` without executing it (PEP 562 completes it)."""
    with _lock:
        if name in sys.modules:
            return
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return  # not installed as a package: a plain import reports it
        module = importlib.util.module_from_spec(spec)
        done = False

        def complete(attr: str) -> Any:
            nonlocal done
            if not attr.startswith("__") and _is_submodule(name, attr):
                # ``from pyroute2 import config`` asks for the attribute first
                # and imports the submodule when it is missing: let it.
                raise AttributeError(attr)
            with _lock:
                if not done:
                    done = True
                    delattr(module, "__getattr__")
                    assert spec.loader is not None
                    spec.loader.exec_module(module)
            try:
                return module.__dict__[attr]
            except KeyError:
                raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

        setattr(module, "__getattr__", complete)  # noqa: B010 (PEP 562, on a module object)
        sys.modules[name] = module


def _is_submodule(package: str, attr: str) -> bool:
    try:
        return importlib.util.find_spec(f"{package}.{attr}") is not None
    except (ImportError, ValueError):
        return False


def iproute_class() -> type[Any]:
    """``pyroute2.iproute.linux.IPRoute``, importing only what it needs."""
    _lean_package("pyroute2")
    from pyroute2.iproute.linux import IPRoute

    return IPRoute  # type: ignore[no-any-return]


def preload() -> list[ModuleType]:
    """Import what :func:`iproute_class` needs (the fork server calls this)."""
    iproute_class()
    return [sys.modules["pyroute2.iproute.linux"]]
