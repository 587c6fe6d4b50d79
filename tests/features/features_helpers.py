"""Feature-test helpers (a uniquely named module: ``conftest`` names clash across test folders): small event
logs from readable tuples, and a seeded random world."""

from __future__ import annotations

import random

import pyarrow as pa

from belong.domain import parse_community, parse_content, parse_event, parse_user
from belong.features.catalog import Catalog
from belong.schema import communities_to_table, content_to_table, events_to_table, users_to_table

US = 1_000_000
DAY = 86_400 * US
T0 = 1_700_000_000 * US  # 2023-11-14, a round start for the logs below


def log(*rows: tuple) -> pa.Table:
    """Events from ``(ts_us, type, actor, target[, extra dict])`` tuples, in time order (stable), as an Arrow
    table like the store returns; ids are generated."""
    events = []
    for i, row in enumerate(sorted(rows, key=lambda r: r[0])):
        ts, etype, actor, target, *extra = row
        data = {"event_id": f"e{i}", "ts": ts / US, "type": etype, "actor": actor, "target": target}
        if extra:
            data.update(extra[0])
        ev = parse_event(data)
        assert ev.ts_us == ts, "test timestamps must survive the seconds round trip"
        events.append(ev)
    return events_to_table(events)


def impression(ts: int, user: str, item: str, surface: str, request: str = "r", position: int = 0) -> tuple:
    kind = {"communities": "community", "people": "user", "content": "content"}[surface]
    return (ts, "impression", user, item, {"request_id": request, "surface": surface, "position": position,
                                          "propensity": 0.5, "target_kind": kind})


class RandomWorld:
    """A seeded random community world: catalogue, a time-ordered log with ties, and timestamps to query at."""

    def __init__(self, seed: int = 7, n_events: int = 1500) -> None:
        rng = random.Random(seed)
        self.users = [f"u{i}" for i in range(25)]
        self.communities = [f"c{i}" for i in range(8)]
        self.content = [f"x{i}" for i in range(12)]
        self.users_table = users_to_table([
            parse_user({"id": u, "created_at": (T0 - rng.randrange(1, 400) * DAY) / US,
                        "age_group": rng.choice(["teen", "adult", "unknown"]),
                        "locale": rng.choice(["en", "de", "en-GB"]),
                        "interests": rng.sample(["games", "music", "art", "code", "films"], 2)})
            for u in self.users[:20]  # the last five users are not in the catalogue: defaults apply
        ])
        self.communities_table = communities_to_table([
            parse_community({"id": c, "name": c, "created_at": (T0 - 500 * DAY) / US,
                             "locale": rng.choice(["en", "de"]),
                             "tags": rng.sample(["games", "music", "art", "code", "films"], 2),
                             "is_age_restricted": i == 0})
            for i, c in enumerate(self.communities)
        ])
        self.content_table = content_to_table([
            parse_content({"id": x, "community_id": self.communities[i % 8], "kind": "post",
                           "created_at": (T0 - 3 * DAY) / US})
            for i, x in enumerate(self.content)
        ])
        self.catalog = Catalog.from_tables(self.users_table, self.communities_table, self.content_table)
        rows = []
        for _ in range(n_events):
            ts = T0 + rng.randrange(0, 40 * 24) * 3600 * US  # hourly grid over 40 days: many ties
            u = rng.choice(self.users)
            kind = rng.random()
            if kind < 0.3:
                rows.append((ts, rng.choice(["join", "join", "leave"]), u, rng.choice(self.communities)))
            elif kind < 0.5:
                v = rng.choice([x for x in self.users if x != u])
                kind = rng.choice(["friend_accept", "friend_accept", "friend_request", "friend_remove"])
                rows.append((ts, kind, u, v))
            elif kind < 0.75:
                rows.append((ts, rng.choice(["message", "view"]), u, rng.choice(self.communities),
                             {"target_kind": "community"}))
            elif kind < 0.95:
                rows.append((ts, rng.choice(["reaction", "click", "view"]), u, rng.choice(self.content),
                             {"target_kind": "content"}))
            elif rng.random() < 0.5:
                v = rng.choice([x for x in self.users if x != u])
                rows.append((ts, rng.choice(["block", "report"]), u, v))
            else:
                rows.append((ts, rng.choice(["block", "report"]), u, rng.choice(self.communities),
                             {"target_kind": "community"}))
        rows.sort(key=lambda r: r[0])
        self.events = log(*rows)
        self.query_times = sorted({T0 + rng.randrange(0, 42 * 24) * 3600 * US for _ in range(6)})
