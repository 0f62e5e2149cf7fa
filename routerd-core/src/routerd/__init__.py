"""routerd core: the plugin contract, the daemon runtime and the local API.

Plugins import :data:`hookimpl` and :class:`DaemonKind` from here. Both are
resolved lazily so that ``import routerd.client`` (what routerctl needs on its
common path) does not pay for pluggy and pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import pluggy

    from routerd.kinds import DaemonKind

    hookimpl: pluggy.HookimplMarker

__version__ = "0.1.0"
__all__ = ["DaemonKind", "__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("routerd")
        globals()["hookimpl"] = marker
        return marker
    if name == "DaemonKind":
        from routerd.kinds import DaemonKind

        return DaemonKind
    raise AttributeError(f"module 'routerd' has no attribute {name!r}")
