"""Dense indices for external ids, and the per-entity column tables built on them.

Every entity kind of a :class:`~belong.state.world.WorldState` is a table: its ids (``ids[i]``, ``index[id]``)
and one list per attribute, indexed by the same dense index (``state.communities.name[i]``). Tables only grow:
an index, once given, names the same entity for the life of the state.
"""

from __future__ import annotations

from collections.abc import Iterable

from belong.domain import Community, User
from belong.errors import UnknownIdError


class IdMap:
    """External id <-> dense index, growable."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = [str(i) for i in ids]
        self.index: dict[str, int] = {s: i for i, s in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, ident: str, kind: str) -> int:
        """The index of ``ident``; :class:`UnknownIdError` (naming ``kind``) when it is not known."""
        try:
            return self.index[ident]
        except KeyError:
            raise UnknownIdError(kind, ident) from None

    def _new(self, ident: str) -> int:
        i = self.index[ident] = len(self.ids)
        self.ids.append(ident)
        return i


class Users(IdMap):
    """Users: declared language, age group, interests; creation time and status."""

    def __init__(self) -> None:
        super().__init__()
        self.locale: list[str] = []
        self.age_group: list[str] = []
        self.interests: list[tuple[str, ...]] = []
        self.created: list[int] = []
        self.status: list[str] = []
        #: bumped whenever a known user's attributes change (new users only append): what arrays derived from
        #: these lists are rebuilt on (:meth:`belong.state.WorldState.user_locales`)
        self.rev = 0

    def put(self, user: User) -> int:
        """Add ``user`` or update its attributes (the creation time of a known user is kept)."""
        i = self.index.get(user.id)
        if i is not None:
            self.rev += 1
        if i is None:
            i = self._new(user.id)
            self.locale.append(user.locale)
            self.age_group.append(str(user.age_group))
            self.interests.append(tuple(user.interests))
            self.created.append(user.created_at_us)
            self.status.append(str(user.status))
        else:
            self.locale[i], self.age_group[i] = user.locale, str(user.age_group)
            self.interests[i], self.status[i] = tuple(user.interests), str(user.status)
        return i


class Communities(IdMap):
    """Communities: what they are (name, description, tags, language) and who may see and join them."""

    def __init__(self) -> None:
        super().__init__()
        self.name: list[str] = []
        self.description: list[str] = []
        self.tags: list[tuple[str, ...]] = []
        self.locale: list[str] = []
        self.age_restricted: list[bool] = []
        self.discoverable: list[bool] = []
        self.invite_only: list[bool] = []
        self.status: list[str] = []
        self.created: list[int] = []

    def _columns(self) -> tuple[list, ...]:
        return (self.name, self.description, self.tags, self.locale, self.age_restricted, self.discoverable,
                self.invite_only, self.status, self.created)

    def put(self, c: Community) -> int:
        """Add ``c`` or replace every attribute of the known community."""
        values = (c.name, c.description, tuple(c.tags), c.locale, c.is_age_restricted, c.discoverable,
                  c.invite_only, str(c.status), c.created_at_us)
        i = self.index.get(c.id)
        if i is None:
            i = self._new(c.id)
            for col, v in zip(self._columns(), values, strict=True):
                col.append(v)
        else:
            for col, v in zip(self._columns(), values, strict=True):
                col[i] = v
        return i


class Contents(IdMap):
    """Content items: the community they belong to, kind, text, creation time and status."""

    def __init__(self) -> None:
        super().__init__()
        self.community: list[int] = []
        self.kind: list[str] = []
        self.text: list[str] = []
        self.created: list[int] = []
        self.status: list[str] = []

    def put(self, ident: str, community: int, kind: str, created: int, text: str, status: str) -> tuple[int, bool]:
        """Add an item (a known id is left as it is); returns its index and whether it is new."""
        i = self.index.get(ident)
        if i is not None:
            return i, False
        i = self._new(ident)
        self.community.append(community)
        self.kind.append(kind)
        self.created.append(created)
        self.text.append(text)
        self.status.append(status)
        return i, True
