"""The runtime every routerd daemon uses (lifecycle, event log, /v1 API, state files)."""
