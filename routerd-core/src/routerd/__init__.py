"""routerd core: the plugin contract, the daemon runtime and the local API.

The public plugin API is :mod:`routerd.plugin` (every name a plugin may use,
versioned by :data:`PLUGIN_API`); :data:`hookimpl` and :class:`DaemonKind`
are also here. Both are resolved lazily so that ``import routerd.client``
(what routerctl needs on its common path) does not pay for pluggy and pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    import pluggy

    from routerd.kinds import DaemonKind

    hookimpl: pluggy.HookimplMarker

__version__ = "0.1.0"
#: Version of the public plugin API (routerd.plugin, the hooks, the testing API):
#: MAJOR.MINOR. MINOR grows when something is added, MAJOR when anything is
#: removed or changes meaning (docs/plugin-hooks.md, "Compatibility").
PLUGIN_API = "1.0"
__all__ = ["PLUGIN_API", "DaemonKind", "__version__", "hookimpl"]


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
