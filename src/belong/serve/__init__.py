"""The serving API: ``belong serve`` (an ASGI app on uvicorn) and ``belong bench serve``.

* :mod:`~belong.serve.app` — routes, error mapping, :func:`~belong.serve.app.create_app` and :func:`~belong.serve.app.serve`.
* :mod:`~belong.serve.engine` — the recommendation hot path: candidate cache, rules, features, degradation.
* :mod:`~belong.serve.versions` — versioned models (fitted pipelines over a state snapshot) and atomic hot swap.
* :mod:`~belong.serve.cache` — per-user candidate cache with TTL and event-driven invalidation.
* :mod:`~belong.serve.feature_reader` — the online feature reader with a time budget and a circuit breaker.
* :mod:`~belong.serve.auth`, :mod:`~belong.serve.metrics`, :mod:`~belong.serve.settings`, :mod:`~belong.bench.serve`.
"""
