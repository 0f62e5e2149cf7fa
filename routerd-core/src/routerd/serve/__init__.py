"""``routerd serve``: supervision, event ingestion, the SQLite store and the control API."""
