"""routerd observers: what passes through the router (docs/observe.md)."""
