"""The randomness the protocol cores use, injected (style rule 15)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["RandomLike"]


class RandomLike(Protocol):
    """The slice of :class:`random.Random` the cores use."""

    def getrandbits(self, k: int, /) -> int:
        """Return ``k`` random bits (magic numbers, Host-Uniq, identifiers)."""
        ...

    def uniform(self, a: float, b: float, /) -> float:
        """Return a float in ``[a, b]`` (redial jitter)."""
        ...
