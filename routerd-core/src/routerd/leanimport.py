"""Packages imported without their ``__init__``: pyroute2's ``IPRoute``, dpkt's codecs.

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

from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
import importlib.abc
import importlib.machinery
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


@contextlib.contextmanager
def bare_package(name: str) -> Iterator[None]:
    """Import submodules of package ``name`` inside the block without running its ``__init__``.

    ``import dpkt`` imports all ~70 protocol modules of dpkt (30 ms of a
    daemon's cold start) and wires them together (``_mod_init``); a DHCP
    codec that builds frames needs four. Inside the block ``name`` is an
    empty package object, so ``import dpkt.dhcp`` imports that module only
    (a name of the package's own ``__init__`` is an AttributeError there).
    At the end the empty package leaves ``sys.modules`` again while the
    submodules stay: a later ``import dpkt`` anywhere in the process (another
    plugin decoding packets) runs the real ``__init__`` in full, which takes
    the already imported submodules as they are, and the package then has
    every submodule as an attribute, as after a plain import. Code that
    imported in the block keeps its reference to the empty package: use
    submodule attributes (``dpkt.dpkt.Packet``), not the package's
    re-exports.

    When the package is already imported, the block imports as usual.
    """
    with _lock:
        if name in sys.modules:
            yield
            return
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            yield  # not installed as a package: a plain import reports it
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            yield
        finally:
            if sys.modules.get(name) is module:
                del sys.modules[name]
                sys.meta_path.insert(0, _LinkSubmodules(name))


class _LinkSubmodules(importlib.abc.MetaPathFinder):
    """The next real import of a package left bare: link its loaded submodules afterwards.

    The import system sets ``package.sub`` when it loads ``package.sub``;
    the submodules loaded under the bare package were set on that object,
    not on the real package an ``__init__`` later builds.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _LinkingLoader(spec.loader, fullname)
        return spec


class _LinkingLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, name: str) -> None:
        self.loader = loader
        self.name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        prefix = f"{self.name}."
        for key, sub in list(sys.modules.items()):
            rest = key[len(prefix) :] if key.startswith(prefix) else ""
            if rest and "." not in rest and rest not in module.__dict__:
                setattr(module, rest, sub)
