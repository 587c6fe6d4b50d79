"""Forgetting a user: the durable tombstone and what a store does with it (the platform's account-deletion hook).

``EventStore.forget(user_id)`` in one transaction records a tombstone, deletes every event the user did or that was
aimed at them (``actor`` is the user, or ``target`` is the user with ``target_kind = 'user'``) and their entity row.
From then on the store drops, inside the same transaction as the insert, every appended event naming a forgotten
user (as actor or user target) and every upserted row of one: a replayed, late or re-ingested event never brings
them back (counted in ``AppendResult.forgotten``, neither accepted nor a duplicate). A forgotten id stays
forgotten: a platform that reuses ids must give a new account a new id.

The tombstone is not the id: it is ``HMAC-SHA256(store salt, id)`` in hex, the salt a random secret made once per
store (table ``belong_meta``), so the id's bytes are in no table, index or file of the store afterwards. SQLite
deletes with ``secure_delete`` (freed bytes are zeroed) and truncates the WAL after the delete; PostgreSQL runs
``VACUUM`` on the changed tables. Older ``belong train`` artifacts still hold the id until they are deleted; the
next one trained holds no trace (it reads the log).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

SALT_KEY = "tombstone_salt"


def tombstone(salt: str, user_id: str) -> str:
    """The tombstone of ``user_id`` in a store whose salt is ``salt`` (hex; never the id itself)."""
    return hmac.new(bytes.fromhex(salt), user_id.encode(), hashlib.sha256).hexdigest()


def users_named(table: pa.Table) -> set[str]:
    """Every user id an event table names: the actors, and the targets of events aimed at a user."""
    out = set(pc.unique(table.column("actor")).to_pylist())
    aimed = pc.filter(table.column("target"), pc.equal(table.column("target_kind"), "user"))
    out.update(pc.unique(aimed).to_pylist())
    return out


def keep_mask(table: pa.Table, gone: set[str]) -> pa.Array:
    """True for the events that name no user of ``gone``."""
    values = pa.array(sorted(gone), pa.string())
    by_actor = pc.is_in(table.column("actor"), value_set=values)
    by_target = pc.and_(pc.equal(table.column("target_kind"), "user"),
                        pc.is_in(table.column("target"), value_set=values))
    return pc.invert(pc.or_(by_actor, by_target))


#: the other users a forgotten user's deleted events named (their derived data, e.g. feature rows, mention them)
RELATED_SQL = (
    "SELECT DISTINCT CASE WHEN actor = {m} THEN target ELSE actor END FROM events "
    "WHERE target_kind = 'user' AND (actor = {m} OR target = {m})"
)


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """What ``forget`` removed from the store: events and entity rows (0 and 0 when already forgotten), and the
    other users those events named (``related``: whose derived rows may mention the forgotten one)."""

    events: int
    users: int
    already: bool = False
    related: tuple[str, ...] = ()
