"""Static entity attributes (age group, locale, tags, creation time) read once from the entity catalogue.

The event log keeps no history of catalogue attributes (entities are upserted, last write wins), so these are the
current values; only the time-relative ones (account age, community age, item age) depend on the as-of time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from belong.eventlog.base import EventStore
from belong.schema import COMMUNITY_SCHEMA, CONTENT_SCHEMA, USER_SCHEMA, conform


@dataclass(frozen=True, slots=True)
class UserAttrs:
    age_group: str
    locale: str
    interests: tuple[str, ...]
    created_at_us: int


@dataclass(frozen=True, slots=True)
class CommunityAttrs:
    locale: str
    tags: tuple[str, ...]
    age_restricted: bool
    created_at_us: int


@dataclass(frozen=True, slots=True)
class ContentAttrs:
    community_id: str
    kind: str
    created_at_us: int


@dataclass(slots=True)
class Catalog:
    """Entity attributes by id. Ids that are absent read as the declared defaults."""

    users: dict[str, UserAttrs] = field(default_factory=dict)
    communities: dict[str, CommunityAttrs] = field(default_factory=dict)
    content: dict[str, ContentAttrs] = field(default_factory=dict)

    @classmethod
    def from_tables(
        cls, users: pa.Table | None = None, communities: pa.Table | None = None, content: pa.Table | None = None
    ) -> Catalog:
        """Build from tables in the schemas of :mod:`belong.schema` (missing nullable columns are allowed)."""
        out = cls()
        if users is not None and users.num_rows:
            for r in conform(users, USER_SCHEMA).to_pylist():
                out.users[r["id"]] = UserAttrs(
                    r["age_group"], r["locale"], tuple(r["interests"] or ()), r["created_at_us"]
                )
        if communities is not None and communities.num_rows:
            for r in conform(communities, COMMUNITY_SCHEMA).to_pylist():
                out.communities[r["id"]] = CommunityAttrs(
                    r["locale"], tuple(r["tags"] or ()), bool(r["is_age_restricted"]), r["created_at_us"]
                )
        if content is not None and content.num_rows:
            for r in conform(content, CONTENT_SCHEMA).to_pylist():
                out.content[r["id"]] = ContentAttrs(r["community_id"], r["kind"], r["created_at_us"])
        return out

    @classmethod
    def from_store(cls, store: EventStore) -> Catalog:
        return cls.from_tables(store.users(), store.communities(), store.content())
