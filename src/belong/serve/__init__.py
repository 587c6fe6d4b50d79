"""The serving API: ``belong serve`` (an ASGI app on uvicorn).

* :mod:`~belong.serve.app` — :func:`~belong.serve.app.create_app` and :func:`~belong.serve.app.serve`.
* :mod:`~belong.serve.routes`, :mod:`~belong.serve.errors`, :mod:`~belong.serve.params`, :mod:`~belong.serve.schemas`,
  :mod:`~belong.serve.auth` — the HTTP layer.
* :mod:`~belong.serve.service` — one process's state: event log, versions, engine; writes and folds events.
* :mod:`~belong.serve.engine` — the recommendation hot path as named stages over a per-request context.
* :mod:`~belong.serve.versions` — versioned models (fitted pipelines over a state snapshot) and atomic hot swap.
* :mod:`~belong.serve.cache` — per-user candidate cache with TTL and event-driven invalidation.
* :mod:`~belong.serve.feature_reader` (with :mod:`~belong.serve.rowcache`, :mod:`~belong.serve.tracking`) — online
  features under a time budget, kept exact in process.
* :mod:`~belong.serve.similar`, :mod:`~belong.serve.metrics`, :mod:`~belong.serve.settings`.
"""
