"""Features: declarations, as-of computation, point-in-time training sets, online store, materialisation.

* :mod:`~belong.features.registry` — every feature declared once (entity, type, default, freshness).
* :mod:`~belong.features.state` — the one implementation of entity features, folded from the log as of a time.
* :mod:`~belong.features.pairs` / :mod:`~belong.features.assemble` — pair features and model rows from entity rows.
* :mod:`~belong.features.online` — Redis and in-process online stores (one round trip per request).
* :mod:`~belong.features.materialize` — log -> online store (``belong features materialize``).
* :mod:`~belong.features.training` — point-in-time training sets with labels per surface.
"""

from __future__ import annotations

from belong.features.assemble import candidate_features, hydrate, source_values
from belong.features.catalog import Catalog
from belong.features.materialize import MaterializeReport, materialize
from belong.features.online import (
    MATERIALIZED_AT,
    InProcessFeatureStore,
    OnlineFeatureStore,
    RedisFeatureStore,
    open_feature_store,
    stale_features,
)
from belong.features.registry import DECLARED, SURFACE_FEATURES, FeatureSpec, get_spec, specs_for
from belong.features.state import EventCursor, FeatureState
from belong.features.training import build_training_set

__all__ = [
    "DECLARED",
    "MATERIALIZED_AT",
    "SURFACE_FEATURES",
    "Catalog",
    "EventCursor",
    "FeatureSpec",
    "FeatureState",
    "InProcessFeatureStore",
    "MaterializeReport",
    "OnlineFeatureStore",
    "RedisFeatureStore",
    "build_training_set",
    "candidate_features",
    "get_spec",
    "hydrate",
    "materialize",
    "open_feature_store",
    "source_values",
    "specs_for",
    "stale_features",
]
