"""``World``: a whole dataset in the data model (entity tables and the event table), what every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from belong.schema import COMMUNITY_SCHEMA, CONTENT_SCHEMA, EVENT_SCHEMA, USER_SCHEMA


@dataclass
class World:
    """A whole dataset in the data model. ``meta`` carries loader facts, e.g. ``name``, ``counts`` and, for a
    split that comes with the data (LightGCN format), ``given_split_ts_us``: events at or after it are the test
    part."""

    users: pa.Table = field(default_factory=USER_SCHEMA.empty_table)
    communities: pa.Table = field(default_factory=COMMUNITY_SCHEMA.empty_table)
    content: pa.Table = field(default_factory=CONTENT_SCHEMA.empty_table)
    events: pa.Table = field(default_factory=EVENT_SCHEMA.empty_table)
    meta: dict = field(default_factory=dict)
