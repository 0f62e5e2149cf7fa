"""No ``threading.Thread`` subclass in routerd shadows an attribute of ``Thread``.

``Thread`` keeps its own state in private attributes (``_stop``, ``_started``,
``_target``, ...). A subclass that assigns ``self._stop = threading.Event()``
replaces the method ``join()`` and ``is_alive()`` call, which is how a
follower of ``routerd serve`` answered a reload with ``500 TypeError:
'Event' object is not callable``. The names are taken from the running
interpreter, so the check follows CPython's internals from version to version.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap
import threading
from types import ModuleType

import pytest

PACKAGES = ("routerd", "routerd_dhcpv4", "routerd_dhcpv6", "routerd_healthcheck", "routerctl")
#: What a subclass is meant to define (the documented extension points).
OVERRIDABLE = frozenset({"run", "__init__", "__repr__"})
_CLASS_BOOKKEEPING = frozenset(
    {"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__annotations__"}
)


def thread_names() -> frozenset[str]:
    """Every name ``Thread`` defines on its class or sets on an instance."""
    names = {n for klass in threading.Thread.__mro__ for n in vars(klass)}
    names |= set(vars(threading.Thread()))
    return frozenset(names)


def settable(name: str) -> bool:
    """Assigning a property with a setter (``self.name = ...``) uses, not shadows, it."""
    attr = inspect.getattr_static(threading.Thread, name, None)
    return isinstance(attr, property) and attr.fset is not None


def assigned_on_self(cls: type) -> set[str]:
    """Names assigned as ``self.<name> = ...`` in any method of ``cls``'s own source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == "self"
                ):
                    found.add(sub.attr)
    return found


def shadowing(cls: type) -> list[str]:
    """The names ``cls`` (not its bases) defines that collide with ``Thread``'s."""
    base = thread_names()
    defined = set(vars(cls)) - _CLASS_BOOKKEEPING - OVERRIDABLE
    clashes = {n for n in defined if n in base}
    clashes |= {n for n in assigned_on_self(cls) if n in base and not settable(n)}
    return sorted(clashes)


def modules() -> list[ModuleType]:
    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if info.name.endswith("__main__"):
                continue
            found.append(importlib.import_module(info.name))
    return found


def thread_subclasses() -> list[type]:
    classes: dict[str, type] = {}
    for module in modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, threading.Thread)
                and obj is not threading.Thread
                and obj.__module__.split(".")[0] in PACKAGES
            ):
                classes[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [classes[k] for k in sorted(classes)]


def test_the_check_catches_a_shadowing_stop_event() -> None:
    class Broken(threading.Thread):
        def __init__(self) -> None:
            super().__init__(daemon=True)
            self._stop = threading.Event()  # type: ignore[assignment]
            self.name = "broken"  # the property's setter: allowed

        def _started(self) -> None: ...  # type: ignore[override]

    assert shadowing(Broken) == ["_started", "_stop"]
    broken = Broken()
    broken.start()
    with pytest.raises(TypeError, match="not callable"):
        broken.join(5)  # what a reload ran into


def test_routerd_thread_subclasses_shadow_nothing() -> None:
    found = thread_subclasses()
    assert any(c.__qualname__ == "Follower" for c in found), "the walk found no subclass"
    problems = {f"{c.__module__}.{c.__qualname__}": shadowing(c) for c in found}
    assert not {k: v for k, v in problems.items() if v}, problems
