"""A small hand-made world with every edge case the filters and sources must handle: what the conformance suites
(and a user's own component tests) run on."""

from __future__ import annotations

import itertools

from belong.datasets import World
from belong.domain import (
    AgeGroup,
    Community,
    ContentItem,
    ContentKind,
    EntityStatus,
    Event,
    EventType,
    TargetKind,
    User,
)
from belong.schema import communities_to_table, content_to_table, events_to_table, users_to_table

DAY = 86_400_000_000
T0 = 1_700_000_000_000_000  # 2023-11-14
NOW = T0 + 60 * DAY


def _users() -> list[User]:
    base = [
        User(id="alice", created_at_us=T0, age_group=AgeGroup.ADULT, locale="en", interests=("gaming", "rust")),
        User(id="bob", created_at_us=T0, age_group=AgeGroup.ADULT, locale="en", interests=("rust",)),
        User(id="carol", created_at_us=T0, age_group=AgeGroup.TEEN, locale="en", interests=("gaming",)),
        User(id="dave", created_at_us=T0, age_group=AgeGroup.ADULT, locale="de", interests=("python",)),
        User(id="erin", created_at_us=T0, age_group=AgeGroup.UNKNOWN, locale="en"),
        User(id="frank", created_at_us=T0, age_group=AgeGroup.ADULT, locale="en", status=EntityStatus.BANNED,
             interests=("rust",)),
        User(id="grace", created_at_us=T0, age_group=AgeGroup.ADULT, locale="en", interests=("gaming", "rust")),
        User(id="heidi", created_at_us=T0, age_group=AgeGroup.ADULT, locale="de", interests=("python", "rust")),
    ]
    extra = [User(id=f"u{i}", created_at_us=T0, age_group=AgeGroup.ADULT, locale=("en", "de")[i % 2],
                  interests=(("gaming",), ("rust",), ("python",), ())[i % 4]) for i in range(24)]
    return base + extra


def _communities() -> list[Community]:
    return [
        Community(id="rust", name="Rust Lang", created_at_us=T0, tags=("rust", "programming"), locale="en",
                  description="Systems programming with Rust"),
        Community(id="gaming", name="Gamers United", created_at_us=T0, tags=("gaming",), locale="en"),
        Community(id="python", name="Python DE", created_at_us=T0, tags=("python", "programming"), locale="de"),
        Community(id="zig", name="Zig Users", created_at_us=T0, tags=("zig", "programming"), locale="en"),
        Community(id="speedrun", name="Speedrunners", created_at_us=T0, tags=("gaming", "speedrun"), locale="en"),
        Community(id="adults", name="After Dark", created_at_us=T0, tags=("gaming",), is_age_restricted=True),
        Community(id="hidden", name="Hidden Den", created_at_us=T0, tags=("rust",), discoverable=False),
        Community(id="club", name="Invite Club", created_at_us=T0, tags=("rust",), invite_only=True),
        Community(id="gone", name="Deleted Place", created_at_us=T0, tags=("gaming",), status=EntityStatus.DELETED),
        Community(id="newgame", name="Fresh Gaming Guild", created_at_us=NOW - 2 * DAY, tags=("gaming", "indie"),
                  locale="en", description="A brand-new place for indie gaming"),
    ]


def _events() -> list[Event]:
    n = itertools.count()
    ev: list[Event] = []

    def add(t: int, etype: EventType, actor: str, target: str, kind: TargetKind, value: float = 1.0) -> None:
        ev.append(Event(event_id=f"e{next(n)}", ts_us=T0 + t * DAY, type=etype, actor=actor, target=target,
                        target_kind=kind, value=value))

    C, U, X = TargetKind.COMMUNITY, TargetKind.USER, TargetKind.CONTENT
    joins = {
        "alice": ["rust", "zig"], "bob": ["rust", "gaming", "speedrun", "club"], "carol": ["gaming", "speedrun"],
        "dave": ["python", "zig"], "erin": ["gaming"], "frank": ["rust", "gaming"], "grace": ["rust", "gaming",
        "adults", "hidden", "gone", "speedrun"], "heidi": ["python", "rust"],
    }
    for i in range(24):
        joins[f"u{i}"] = [["rust", "gaming"], ["gaming", "speedrun"], ["python", "zig"],
                          ["rust", "zig", "python"]][i % 4]
    for day, (u, cs) in enumerate(joins.items()):
        for c in cs:
            add(day % 50, EventType.JOIN, u, c, C)
    add(51, EventType.JOIN, "alice", "python", C)
    add(52, EventType.LEAVE, "alice", "python", C)  # join minus leave: not a member
    friends = [("alice", "bob"), ("alice", "grace"), ("alice", "frank"), ("bob", "carol"), ("grace", "carol"),
               ("bob", "heidi"), ("grace", "heidi"), ("carol", "erin"), ("dave", "heidi"), ("alice", "dave"),
               ("bob", "u1"), ("grace", "u1"), ("bob", "u5")]
    for a, b in friends:
        add(10, EventType.FRIEND_ACCEPT, a, b, U)
    add(53, EventType.FRIEND_REMOVE, "dave", "alice", U)  # friendship ended (either side may remove)
    add(20, EventType.BLOCK, "alice", "u5", U)  # alice blocked u5
    add(20, EventType.BLOCK, "erin", "alice", U)  # erin blocked alice
    add(20, EventType.BLOCK, "alice", "speedrun", C)
    for day in range(40, 60):
        add(day, EventType.MESSAGE, "u0", "gaming", C, 3.0)
        add(day, EventType.MESSAGE, "u3", "python", C, 2.0)
        add(day, EventType.VIEW, "bob", "post-rust-1", X)
    add(59, EventType.MESSAGE, "dave", "python", C, 5.0)
    add(59, EventType.REACTION, "grace", "post-game-1", X)
    add(59, EventType.VIEW, "carol", "post-adult", X)
    add(60, EventType.MESSAGE, "u1", "newgame", C)
    return ev


def _content() -> list[ContentItem]:
    return [
        ContentItem(id="post-rust-1", community_id="rust", kind=ContentKind.POST, created_at_us=NOW - DAY,
                    text="Rust 2.0 release notes"),
        ContentItem(id="post-rust-2", community_id="rust", kind=ContentKind.POST, created_at_us=NOW - 3 * DAY,
                    text="Borrow checker tips"),
        ContentItem(id="post-game-1", community_id="gaming", kind=ContentKind.POST, created_at_us=NOW - DAY,
                    text="Game night on Friday"),
        ContentItem(id="post-adult", community_id="adults", kind=ContentKind.POST, created_at_us=NOW - DAY,
                    text="After dark stream"),
        ContentItem(id="post-gone", community_id="rust", kind=ContentKind.POST, created_at_us=NOW - DAY,
                    text="removed", status=EntityStatus.DELETED),
        ContentItem(id="chan-zig", community_id="zig", kind=ContentKind.CHANNEL, created_at_us=NOW - 10 * DAY,
                    text="general"),
    ]


def toy_world() -> World:
    return World(users=users_to_table(_users()), communities=communities_to_table(_communities()),
                 content=content_to_table(_content()), events=events_to_table(_events()), meta={"name": "toy"})
