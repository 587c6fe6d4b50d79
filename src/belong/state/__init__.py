"""The world state: an indexed, in-memory snapshot of a platform that every pipeline component reads.

=================  ===============================================================================
module             what it holds
=================  ===============================================================================
``world``          :class:`WorldState` (tables, relations, heat, derived values, ``apply(event)``)
``ids``            dense ids and the per-entity column tables (``state.communities.name[i]``)
``relation``       :class:`Relation`: a sparse 0/1 relation with incremental edits
``heat``           time decay and segmented heat (trending)
``timeline``       time-stamped facts (join / leave / report events, community activity)
``build``          bulk building: :func:`from_world`, :func:`from_store`, :func:`from_interactions`
``cut``            the one point-in-time cut :func:`as_of`, and :func:`with_memberships`
=================  ===============================================================================
"""

from belong.state.build import from_interactions, from_store, from_world
from belong.state.cut import as_of, with_memberships
from belong.state.heat import DAY_US, HEAT_HALF_LIFE_DAYS
from belong.state.ids import IdMap
from belong.state.relation import Relation
from belong.state.timeline import ActivityLog, PairEvents
from belong.state.world import CommunityFlags, CommunityTerms, Profile, WorldState

__all__ = [
    "DAY_US", "HEAT_HALF_LIFE_DAYS", "ActivityLog", "CommunityFlags", "CommunityTerms", "IdMap", "PairEvents",
    "Profile", "Relation", "WorldState", "as_of", "from_interactions", "from_store", "from_world",
    "with_memberships",
]
