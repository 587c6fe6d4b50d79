"""Cuts of a state: the one point-in-time cut (:func:`as_of`) and a copy with other memberships
(:func:`with_memberships`).

:func:`as_of` is what both offline evaluation on a time split of a whole world and the ranker's time-based
validation cut use: the world as it was just before ``T``, rebuilt by :mod:`belong.state.build` from the data the
state was made of (only events before ``T``: memberships, friendships, blocks, pending requests, engagement, heat;
``now`` is ``T``; the registered entities keep their indices and their creation times are clipped to ``T``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.state.build import from_interactions, from_world
from belong.state.heat import DAY_US, HEAT_HALF_LIFE_DAYS
from belong.state.relation import Relation
from belong.state.world import WorldState


def as_of(source: WorldState | Interactions | object, ts_us: int, *, user_ids: Iterable[str] = (),
          community_ids: Iterable[str] = (), half_life_days: float = HEAT_HALF_LIFE_DAYS) -> WorldState:
    """The world just before ``ts_us`` (see the module docstring).

    ``source``: a :class:`WorldState` (rebuilt from its own source, every one of its ids registered first, so the
    cut's indices are the state's), a ``World``, or :class:`Interactions` (rows before ``ts_us``, same id maps).
    ``user_ids`` / ``community_ids`` register ids first for a ``World`` (offline evaluation: the training data's
    id maps, so that the pipeline's indices are the harness's)."""
    ts_us = int(ts_us)
    if isinstance(source, WorldState):
        if source.source is None:
            raise ValidationError("state", "the state no longer holds the data it was built from (released); "
                                  "rebuild it to cut it in time")
        state = source
        half_life_days = state.half_life_us / DAY_US
        if isinstance(state.source, Interactions):
            return as_of(state.source, ts_us, half_life_days=half_life_days)
        cut = from_world(state.source, before_us=ts_us, now_us=ts_us, user_ids=state.users.ids,
                         community_ids=state.communities.ids, content_ids=state.content.ids,
                         half_life_days=half_life_days)
        _same_attributes(cut, state)
    elif isinstance(source, Interactions):
        keep = (source.ts_us < ts_us) if source.ts_us is not None else np.ones(len(source), bool)
        return from_interactions(source.subset(keep), now_us=ts_us, half_life_days=half_life_days)
    else:
        cut = from_world(source, before_us=ts_us, now_us=ts_us, user_ids=user_ids, community_ids=community_ids,
                         half_life_days=half_life_days)
    for created in (cut.users.created, cut.communities.created):
        for i, t in enumerate(created):
            if t > ts_us:
                created[i] = ts_us
    cut.c_rev += 1
    return cut


def _same_attributes(cut: WorldState, state: WorldState) -> None:
    """Entity attributes are not events: the cut keeps the state's own (a ban or a rename made since it was built
    included), creation times aside."""
    if (cut.n_users, cut.n_communities) != (state.n_users, state.n_communities):
        raise ValidationError("state", "the state has ids its source does not (events applied since it was built); "
                              "rebuild it to cut it in time")
    for mine, theirs in ((cut.users, state.users), (cut.communities, state.communities)):
        for name, col in vars(theirs).items():
            if isinstance(col, list) and name not in ("ids", "created"):
                setattr(mine, name, list(col))


def with_memberships(state: WorldState, memberships: sp.csr_matrix) -> WorldState:
    """A shallow copy of ``state`` whose memberships are ``memberships`` (everything else shared, read-only): the
    random validation cut of the ranker's training lists."""
    cut = copy.copy(state)
    cut.members = Relation(memberships)
    cut._cache = {}
    cut.version = state.version + 1_000_000  # never equal to a key computed on the full state
    return cut
