"""The consumer engine: poller -> in-flight registry -> handler pool -> acker, with a
heartbeat watching the registry, wired per queue by :class:`Consumer`."""
