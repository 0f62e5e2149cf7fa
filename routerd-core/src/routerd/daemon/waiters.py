"""The bound on open long-polls (DESIGN.md §4), without the HTTP stack.

Its own module so that a daemon can build its runtime (and start its
protocol engine) before falcon and waitress are imported.
"""

from __future__ import annotations

import threading


class WaiterSlots:
    """A bounded count of open long-polls, observable in status."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                self.rejected += 1
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active -= 1

    def to_dict(self) -> dict[str, int]:
        with self._lock:
            return {"active": self.active, "max": self.limit, "rejected": self.rejected}
