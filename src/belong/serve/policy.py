"""One safety policy for every route that returns people or communities.

The recommendation surfaces apply their pipeline's filters (the ``safety_rules`` policy of
:mod:`belong.ranking.rules`: blocks both ways, pending requests, teen/adult strangers, inactive, invite-only,
undiscoverable and age-restricted communities). The other routes that return people or communities — the similar
routes — ask this module, which applies *the same filters of the same surface's pipeline*, so no route can show
what the surface would hide:

* :func:`allowed`: the items of a list that the viewer may see (order kept).
* :func:`visible_community`: whether a community may be named to a viewer at all (an anonymous viewer: no member,
  unknown age). A community the caller may not see answers exactly as an unknown id (404).

The viewer of ``/v1/users/{id}/similar`` is that user; of ``/v1/communities/{id}/similar`` an anonymous one
(unknown age: no age-restricted community; no invite-only or undiscoverable one).
"""

from __future__ import annotations

from collections.abc import Iterable

from belong.domain import EntityStatus, Surface
from belong.errors import UnknownIdError
from belong.pipeline.types import Merged, NewUser, Request
from belong.serve.versions import ModelVersion

#: the anonymous viewer's id: not a valid id (ids are printable), so it never names a real user
ANONYMOUS = "\x00anonymous"


def viewer(surface: Surface, user_id: str | None = None) -> Request:
    """The request a viewer's rules are read from (``None``: the anonymous viewer, unknown age, no history)."""
    if user_id is None:
        return Request(ANONYMOUS, surface, new_user=NewUser())
    return Request(user_id, surface)


def allowed(model: ModelVersion, request: Request, items: Iterable[int]) -> list[int]:
    """The ``items`` the surface's filters keep for ``request`` (in order)."""
    cands = [Merged(int(i)) for i in items]
    state = model.state
    for f in model.pipelines[request.surface].filters:
        if not cands:
            break
        cands = f.apply(request, state, cands).kept
    return [m.item for m in cands]


def visible_community(model: ModelVersion, community_id: str) -> int:
    """The community's index if an anonymous viewer may see it; else :class:`UnknownIdError` (as unknown)."""
    c = model.state.communities.index.get(community_id)
    if c is None or not allowed(model, viewer(Surface.COMMUNITIES), [c]):
        raise UnknownIdError("community", community_id)
    return c


def visible_user(model: ModelVersion, user_id: str) -> int:
    """The user's index if active; a deleted or banned user answers as unknown."""
    st = model.state
    u = st.users.index.get(user_id)
    if u is None or st.users.status[u] != EntityStatus.ACTIVE.value:
        raise UnknownIdError("user", user_id)
    return u
