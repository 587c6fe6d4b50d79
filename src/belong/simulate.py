"""A simulated Discord-like community world, deterministic per seed, that scales to millions of users.

(One module over 400 lines on purpose: the generative story below reads top to bottom, one function per step.)

The generative story (all vectorised with numpy; users are generated in chunks that stream to a store):

* **Topics.** 16 topics, each with a vocabulary. Users have latent interests ``theta_u ~ Dirichlet(0.2)``;
  communities a topic mixture ``phi_c ~ Dirichlet(0.15)`` (mostly one or two topics). Community names,
  descriptions and tags come from the vocabularies of their main topics, so text-based cold start has signal;
  half of the users list their top topics as ``interests``.
* **Communities.** Popularity is Zipf-like (rank^-1.1 over a random order) so a few communities are huge. 5% are
  age-restricted (teens never join them), 10% invite-only and some undiscoverable (both found less often;
  invite-only communities also grow through invitations from friends who are members).
  Each community has channels (content items) and, in proportion to its popularity, posts and events.
* **Users.** Locales en, pt-BR, de, es, fr, ja, ru, ko; age groups teen 15% / adult 70% / unknown 15%; an
  activity level (log-normal) that scales all their activity. 55% of the accounts predate the window.
* **Joins.** A user draws a topic from ``theta_u`` and then a community from
  ``p(c | topic, locale) ∝ popularity_c · phi_c[topic] · locale_match`` (English communities are open to all,
  other-language communities mostly draw their own locale).
* **Friendships.** Homophilous: a user meets people through shared communities (a random co-member), accepted
  more often with the same locale and a compatible age group; then **triadic closure**: friends of friends.
  Each friendship is a ``friend_request`` followed, for 85%, by a ``friend_accept``; some unanswered requests
  end in a ``block`` or a ``report``. **Acceptance is pair-dependent** (:func:`_decline_and_remove`, a separate
  rng stream ``default_rng([seed, chunk + 1, 1])`` and event ids ``TAG:CHUNK:fROW``, so every other event of a
  seeded world is what it was): a second round of requests, which the receiver declines with chance
  ``1 - a(pair)``, ``a`` logistic in mutual friends, shared communities, locale match, a teen-adult pair and the
  receiver's activity (:data:`ACCEPT_LOGIT`); and some accepted friendships end in a ``friend_remove``
  (poorer fits more often).
* **Activity** over a 180-day window ending 2026-11-01: joins spread over time, 8% of memberships end with a
  ``leave``, ``message`` / ``voice_minutes`` events concentrated in joined communities, ``view`` and
  ``reaction`` events on their content, a few reports of communities.

Determinism: the catalogue comes from ``default_rng([seed, 0])`` and chunk ``i`` from ``default_rng([seed,
i + 1])``, so the same (seed, sizes, chunk size) gives identical tables. A user only befriends users of its own or
earlier chunks, so state carried between chunks is just memberships and friendships (int32 arrays).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from belong.datasets import World
from belong.datasets.tables import community_table, content_table, event_table, list_column, ts_us, user_table
from belong.errors import ValidationError

DAY_US = 86_400 * 1_000_000
TOPICS: dict[str, tuple[str, ...]] = {
    "gaming": ("minecraft", "valorant", "speedrun", "rpg", "esports", "indie games", "fortnite", "retro", "mmo",
               "league", "strategy", "co-op"),
    "anime": ("anime", "manga", "cosplay", "one piece", "studio ghibli", "vtuber", "isekai", "shonen", "fanart",
              "light novels", "seasonal anime", "figures"),
    "music": ("hip hop", "lo-fi", "metal", "jazz", "producers", "guitar", "edm", "k-pop", "vinyl", "indie rock",
              "synthwave", "classical"),
    "programming": ("python", "rust", "javascript", "open source", "web dev", "linux", "devops", "game dev",
                    "algorithms", "machine learning", "code review", "hackathons"),
    "art": ("digital art", "drawing", "pixel art", "3d modeling", "animation", "commissions", "sketchbook",
            "photography", "illustration", "blender", "watercolor", "character design"),
    "fitness": ("running", "lifting", "yoga", "calisthenics", "cycling", "nutrition", "marathon", "bodybuilding",
                "climbing", "home workouts", "swimming", "mobility"),
    "crypto": ("bitcoin", "ethereum", "defi", "nft", "trading", "web3", "altcoins", "mining", "solana", "dao",
               "charts", "wallets"),
    "study": ("study group", "exam prep", "homework help", "math", "physics", "chemistry", "biology",
              "university", "pomodoro", "notes", "history", "essays"),
    "movies": ("film club", "horror", "sci-fi", "marvel", "criticism", "screenwriting", "documentaries",
               "tv series", "netflix", "cinema", "directors", "watch party"),
    "sports": ("football", "basketball", "f1", "tennis", "nba", "premier league", "fantasy league", "baseball",
               "hockey", "mma", "cricket", "world cup"),
    "books": ("book club", "fantasy", "sci-fi novels", "poetry", "writing", "reading challenge", "classics",
              "mystery", "romance", "audiobooks", "worldbuilding", "fan fiction"),
    "tech": ("pc building", "mechanical keyboards", "smartphones", "homelab", "gadgets", "ai tools", "linux",
             "3d printing", "electronics", "raspberry pi", "networking", "hardware"),
    "memes": ("memes", "shitposting", "copypasta", "reaction images", "dank memes", "wholesome", "edits",
              "humor", "clips", "roasts", "tiktok", "brainrot"),
    "cooking": ("recipes", "baking", "vegan", "bbq", "meal prep", "coffee", "ramen", "street food", "spices",
                "sourdough", "desserts", "home cooking"),
    "travel": ("backpacking", "digital nomads", "hiking", "camping", "road trips", "japan travel", "europe",
               "van life", "budget travel", "photography spots", "city guides", "flights"),
    "languages": ("japanese", "spanish", "english practice", "german", "korean", "french", "language exchange",
                  "duolingo", "grammar", "vocabulary", "conversation", "translation"),
}
TOPIC_NAMES = tuple(TOPICS)
LOCALES = ("en", "pt-BR", "de", "es", "fr", "ja", "ru", "ko")
LOCALE_P = np.array([0.45, 0.12, 0.08, 0.10, 0.07, 0.07, 0.06, 0.05])
LANG_NAMES = ("English", "Portuguese", "German", "Spanish", "French", "Japanese", "Russian", "Korean")
AGE_GROUPS = ("teen", "adult", "unknown")
AGE_P = np.array([0.15, 0.70, 0.15])
ADJECTIVES = ("Cozy", "Chill", "Daily", "Global", "Friendly", "Midnight", "The", "Pro", "Casual", "Wholesome",
              "Official", "Underground", "Elite", "Sunny", "Pixel", "Late Night")
NOUNS = ("Hub", "Lounge", "Club", "Guild", "Crew", "Hangout", "Corner", "Collective", "Academy", "Den", "Society",
         "Squad", "Circle", "Cafe", "Network", "HQ")
EVENT_TYPES = ("join", "leave", "message", "voice_minutes", "view", "reaction", "friend_request", "friend_accept",
               "block", "report", "friend_remove")
_T = {t: i for i, t in enumerate(EVENT_TYPES)}
_KIND_PREFIX = {"user": "u", "community": "c", "content": "x"}
_KINDS = tuple(_KIND_PREFIX)
_K = {k: i for i, k in enumerate(_KINDS)}
_TEEN, _ADULT, _UNKNOWN = 0, 1, 2


@dataclass(frozen=True)
class SimConfig:
    """Parameters of a simulated world. Same config ⇒ identical world."""

    n_users: int
    n_communities: int
    seed: int = 0
    chunk_users: int = 50_000
    end_us: int = ts_us(2026, 11, 1)
    days: int = 180
    mean_joins: float = 4.0  # communities joined per user (mean)
    mean_requests: float = 3.0  # friend requests a user sends to people met in communities (mean)
    mean_closure: float = 1.5  # friend requests a user sends to friends of friends (mean)
    zipf_exponent: float = 1.1
    age_restricted_share: float = 0.05
    invite_only_share: float = 0.10
    undiscoverable_share: float = 0.05

    def __post_init__(self) -> None:
        if self.n_users < 1:
            raise ValidationError("users", f"must be >= 1, got {self.n_users}")
        if self.n_communities < 1:
            raise ValidationError("communities", f"must be >= 1, got {self.n_communities}")
        if self.n_users > 50_000_000:
            raise ValidationError("users", "must be at most 50,000,000")
        if self.n_communities > 1_000_000:  # the sampling tables take 1 KiB per community
            raise ValidationError("communities", "must be at most 1,000,000")
        if self.chunk_users < 1:
            raise ValidationError("chunk_users", f"must be >= 1, got {self.chunk_users}")
        if self.days < 1:
            raise ValidationError("days", f"must be >= 1, got {self.days}")

    @property
    def start_us(self) -> int:
        return self.end_us - self.days * DAY_US

    @property
    def tag(self) -> str:
        """Prefix of event ids: worlds with other parameters never collide in one store."""
        return f"sim{self.seed}-{self.n_users}-{self.n_communities}"


# ------------------------------------------------------------------------------------------------- helpers


def _uniform_ts(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray | int) -> np.ndarray:
    """Integer µs uniformly in [lo, hi) (lo where the interval is empty)."""
    span = np.maximum(np.asarray(hi, dtype=np.int64) - lo, 1)
    return lo + (rng.random(len(lo)) * span).astype(np.int64)


def _pick_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return np.minimum((cum < u).sum(axis=1), probs.shape[1] - 1)


def _csr(keys: np.ndarray, values: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, values sorted by key): the values of key k are values[offsets[k]:offsets[k+1]]."""
    order = np.argsort(keys, kind="stable")
    offsets = np.zeros(n_keys + 1, np.int64)
    np.cumsum(np.bincount(keys, minlength=n_keys), out=offsets[1:])
    return offsets, values[order]


def _sample_from_csr(
    rng: np.random.Generator, offsets: np.ndarray, values: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random value of each key's list; returns (values, ok) where ok is False for empty lists."""
    counts = offsets[keys + 1] - offsets[keys]
    ok = counts > 0
    idx = offsets[keys] + (rng.random(len(keys)) * counts).astype(np.int64)
    return values[np.minimum(idx, len(values) - 1)] if len(values) else np.zeros(len(keys), values.dtype), ok


def _ids(prefix: str, idx: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(idx, pa.int64()), pa.string()), "")


# ------------------------------------------------------------------------------------------------- catalogue


@dataclass
class Catalog:
    """Communities and content, plus what the user chunks need to sample from them."""

    communities: pa.Table
    content: pa.Table
    comm_created: np.ndarray  # int64 µs
    restricted: np.ndarray  # bool
    invite_only: np.ndarray  # bool
    cdf: np.ndarray  # (topics * locales, n_communities) row-normalised cumulative weights, offset by row index
    content_offsets: np.ndarray  # content of community c: content_offsets[c]:content_offsets[c+1]
    content_created: np.ndarray  # int64 µs per content item


def _text_columns(
    rng: np.random.Generator, phi: np.ndarray, locale_idx: np.ndarray
) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Names, descriptions and tags (offsets, flat values) from the communities' main topics."""
    vocab = [TOPICS[t] for t in TOPIC_NAMES]
    order = np.argsort(-phi, axis=1)
    main, second = order[:, 0], order[:, 1]
    n = len(phi)
    w = rng.integers(0, 12, size=(n, 5))
    adj = rng.integers(0, len(ADJECTIVES), n)
    noun = rng.integers(0, len(NOUNS), n)
    n_tags = rng.integers(3, 6, n)
    names, descriptions, flat_tags, counts = [], [], [], []
    for i in range(n):
        v1, v2 = vocab[main[i]], vocab[second[i]]
        words = (v1[w[i, 0]], v1[w[i, 1]], v1[w[i, 2]], v2[w[i, 3]], TOPIC_NAMES[main[i]])
        names.append(f"{ADJECTIVES[adj[i]]} {words[0].title()} {NOUNS[noun[i]]}")
        descriptions.append(
            f"{'An' if locale_idx[i] == 0 else 'A'} {LANG_NAMES[locale_idx[i]]}-speaking {TOPIC_NAMES[main[i]]} "
            f"community: {words[0]}, {words[1]} and {words[3]}."
        )
        tags = list(dict.fromkeys((words[4], *words[:4])))[: n_tags[i]]
        flat_tags.extend(tags)
        counts.append(len(tags))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return names, descriptions, offsets, flat_tags


def build_catalog(cfg: SimConfig) -> Catalog:
    rng = np.random.default_rng([cfg.seed, 0])
    m, k, n_loc = cfg.n_communities, len(TOPIC_NAMES), len(LOCALES)
    phi = rng.dirichlet(np.full(k, 0.15), size=m)
    comm_loc = rng.choice(n_loc, size=m, p=0.5 * LOCALE_P + 0.5 * np.eye(n_loc)[0])
    rank = rng.permutation(m) + 1
    popularity = rank.astype(np.float64) ** -cfg.zipf_exponent
    restricted = rng.random(m) < cfg.age_restricted_share
    invite_only = rng.random(m) < cfg.invite_only_share
    discoverable = ~(rng.random(m) < np.where(invite_only, 0.4, cfg.undiscoverable_share))
    popularity = popularity * np.where(invite_only, 0.25, 1.0) * np.where(discoverable, 1.0, 0.3)
    older = rng.random(m) < 0.85
    created = np.where(
        older,
        cfg.start_us - (rng.random(m) * 3 * 365 * DAY_US).astype(np.int64),
        cfg.start_us + (rng.random(m) * 0.8 * cfg.days * DAY_US).astype(np.int64),
    )

    # p(c | topic, user locale) ∝ popularity · phi[c, topic] · locale match; English communities are open to all.
    loc_match = np.where(comm_loc[None, :] == np.arange(n_loc)[:, None], 1.0, 0.03)
    loc_match[:, comm_loc == 0] = np.maximum(loc_match[:, comm_loc == 0], 0.3)
    weights = (phi.T[:, None, :] * loc_match[None, :, :]) * popularity[None, None, :]  # (k, loc, m)
    cdf = np.cumsum(weights.reshape(k * n_loc, m), axis=1)
    cdf /= cdf[:, -1:]
    cdf += np.arange(k * n_loc)[:, None]

    names, descriptions, tag_offsets, tags = _text_columns(rng, phi, comm_loc)
    communities = community_table(
        "simulate", id=_ids("c", np.arange(m)), name=names, created_at_us=created, description=descriptions,
        tags=list_column(tag_offsets, tags), locale=np.array(LOCALES, dtype=object)[comm_loc],
        is_age_restricted=restricted, discoverable=discoverable, invite_only=invite_only,
    )

    # content: 2-6 channels each, plus posts/events in proportion to popularity
    share = popularity / popularity.sum()
    n_channels = rng.integers(2, 7, m)
    n_posts = rng.poisson(np.minimum(share * m * 2.0, 200.0))
    n_items = n_channels + n_posts
    content_offsets = np.concatenate([[0], np.cumsum(n_items)])
    owner = np.repeat(np.arange(m), n_items)
    pos = np.arange(content_offsets[-1]) - np.repeat(content_offsets[:-1], n_items)
    is_channel = pos < np.repeat(n_channels, n_items)
    kinds = np.where(is_channel, "channel", np.where(rng.random(len(owner)) < 0.85, "post", "event"))
    vocab_flat = np.array([w for t in TOPIC_NAMES for w in TOPICS[t]], dtype=object)
    main = np.argmax(phi, axis=1)[owner]
    word = vocab_flat[main * 12 + rng.integers(0, 12, len(owner))]
    text = np.where(
        is_channel,
        np.where(pos == 0, "#general", "#" + pc.replace_substring(pa.array(word), " ", "-").to_numpy(False)),
        np.where(kinds == "post", "Post about " + word, "Event: " + word + " night"),
    )
    c_created = np.where(
        is_channel, created[owner], _uniform_ts(rng, np.maximum(created[owner], cfg.start_us), cfg.end_us)
    )
    content = content_table(
        "simulate", id=_ids("x", np.arange(len(owner))), community_id=_ids("c", owner), kind=kinds,
        created_at_us=c_created, text=text.astype(object),
    )
    return Catalog(communities, content, created, restricted, invite_only, cdf, content_offsets, c_created)


# ------------------------------------------------------------------------------------------------- users & events


@dataclass
class _State:
    """What later chunks need from earlier ones: memberships and accepted friendships (global user indices)."""

    mem_user: list[np.ndarray] = field(default_factory=list)
    mem_comm: list[np.ndarray] = field(default_factory=list)
    edge_a: list[np.ndarray] = field(default_factory=list)
    edge_b: list[np.ndarray] = field(default_factory=list)
    locale: list[np.ndarray] = field(default_factory=list)
    age: list[np.ndarray] = field(default_factory=list)
    created: list[np.ndarray] = field(default_factory=list)
    activity: list[np.ndarray] = field(default_factory=list)
    # the chunk's first-round requests: (sender, receiver, accepted, accept time)
    requests: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = (np.zeros(0, np.int64),) * 2 + (
        np.zeros(0, bool), np.zeros(0, np.int64))


class _Events:
    """Columns of a chunk's events, appended per event type and turned into one Arrow table."""

    def __init__(self) -> None:
        self.parts: list[tuple[int, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]] = []

    def add(self, etype: str, ts: np.ndarray, actor: np.ndarray, kind: str, target: np.ndarray,
            value: np.ndarray | float = 1.0) -> None:
        n = len(ts)
        if n:
            val = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
            self.parts.append((_T[etype], ts, actor, _K[kind], target, val))

    def table(self, cfg: SimConfig, chunk: int, stream: str = "") -> pa.Table:
        """The chunk's events in time order (stores index ``ts_us``: sorted batches insert with locality); ids
        ``TAG:CHUNK:STREAM ROW``, rows numbered within the stream (the friend stream's ids never shift the others)."""
        if not self.parts:
            return World().events
        lengths = [len(p[1]) for p in self.parts]
        ts = np.concatenate([p[1] for p in self.parts])
        order = np.argsort(ts, kind="stable")
        types = np.repeat([p[0] for p in self.parts], lengths)[order]
        kinds = np.repeat([p[3] for p in self.parts], lengths)[order]
        target = np.concatenate([p[4] for p in self.parts])[order]
        prefixes = np.array([_KIND_PREFIX[k] for k in _KINDS], dtype=object)[kinds]
        target_ids = pc.binary_join_element_wise(
            pa.array(prefixes, pa.string()), pc.cast(pa.array(target, pa.int64()), pa.string()), ""
        )
        rows = pc.utf8_lpad(pc.cast(pa.array(np.arange(len(types)), pa.int64()), pa.string()), 8, "0")
        return event_table(
            "simulate",
            event_id=pc.binary_join_element_wise(f"{cfg.tag}:{chunk:05d}:{stream}", rows, ""),
            ts_us=ts[order],
            type=np.array(EVENT_TYPES, dtype=object)[types],
            actor=_ids("u", np.concatenate([p[2] for p in self.parts])[order]),
            target=target_ids,
            target_kind=np.array(_KINDS, dtype=object)[kinds],
            value=np.concatenate([p[5] for p in self.parts])[order],
        )


def _age_ok(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Teens befriend adults rarely (acceptance weight), everyone else freely."""
    mixed = ((a == _TEEN) & (b == _ADULT)) | ((a == _ADULT) & (b == _TEEN))
    return np.where(mixed, 0.15, 1.0)


@dataclass
class _Cohort:
    """The users of one chunk: global ids and latent attributes (arrays indexed by position in the chunk)."""

    uid: np.ndarray
    age: np.ndarray
    loc: np.ndarray
    theta: np.ndarray
    activity: np.ndarray
    created: np.ndarray


@dataclass
class _Memberships:
    """One row per (cohort user, community) joined: ``user`` is the position in the cohort."""

    user: np.ndarray
    comm: np.ndarray
    join_ts: np.ndarray
    end_ts: np.ndarray  # leave time, or the end of the window


def _new_users(cfg: SimConfig, rng: np.random.Generator, lo: int, hi: int) -> tuple[_Cohort, pa.Table]:
    n, k = hi - lo, len(TOPIC_NAMES)
    cohort = _Cohort(
        uid=np.arange(lo, hi, dtype=np.int64),
        age=rng.choice(3, size=n, p=AGE_P).astype(np.int8),
        loc=rng.choice(len(LOCALES), size=n, p=LOCALE_P).astype(np.int8),
        theta=rng.dirichlet(np.full(k, 0.2), size=n),
        activity=rng.lognormal(-0.32, 0.8, n),  # mean 1
        created=np.where(
            rng.random(n) < 0.55,
            cfg.start_us - (rng.random(n) * 2 * 365 * DAY_US).astype(np.int64),
            cfg.start_us + (rng.random(n) * 0.9 * cfg.days * DAY_US).astype(np.int64),
        ),
    )
    n_interests = np.where(rng.random(n) < 0.5, rng.integers(1, 4, n), 0)
    top_topics = np.argsort(-cohort.theta, axis=1)[:, :3]
    listed = np.arange(3)[None, :] < n_interests[:, None]
    interests = list_column(
        np.concatenate([[0], np.cumsum(n_interests)]), np.array(TOPIC_NAMES, dtype=object)[top_topics[listed]]
    )
    users = user_table(
        "simulate", id=_ids("u", cohort.uid), created_at_us=cohort.created,
        age_group=np.array(AGE_GROUPS, dtype=object)[cohort.age], locale=np.array(LOCALES, dtype=object)[cohort.loc],
        interests=interests,
    )
    return cohort, users


def _join(cfg: SimConfig, cat: Catalog, rng: np.random.Generator, users: _Cohort, ev: _Events) -> _Memberships:
    """Topic from theta, then community from p(c | topic, locale); teens redraw age-restricted picks."""
    n_joins = np.minimum(1 + rng.poisson((cfg.mean_joins - 1) * users.activity), 60)
    d_user = np.repeat(np.arange(len(users.uid)), n_joins)
    d_comm = np.empty(len(d_user), np.int64)
    todo = np.arange(len(d_user))
    for _ in range(30):
        u = d_user[todo]
        row = _pick_rows(rng, users.theta[u]) * len(LOCALES) + users.loc[u]
        picks = np.searchsorted(cat.cdf.ravel(), row + rng.random(len(todo)), side="right")
        d_comm[todo] = np.clip(picks - row * cfg.n_communities, 0, cfg.n_communities - 1)
        todo = todo[(users.age[u] == _TEEN) & cat.restricted[d_comm[todo]]]
        if not len(todo):
            break
    keep = np.ones(len(d_user), bool)
    keep[todo] = False  # a teen who kept drawing restricted communities (vanishingly rare) joins fewer
    key = np.unique(d_user[keep] * cfg.n_communities + d_comm[keep])
    user, comm = key // cfg.n_communities, key % cfg.n_communities
    earliest = np.maximum(np.maximum(users.created[user], cat.comm_created[comm]), cfg.start_us)
    join_ts = _uniform_ts(rng, earliest, cfg.end_us)
    ev.add("join", join_ts, users.uid[user], "community", comm)
    leave_ts = _uniform_ts(rng, join_ts + 1, cfg.end_us)
    leaves = (rng.random(len(user)) < 0.08) & (leave_ts < cfg.end_us)
    ev.add("leave", leave_ts[leaves], users.uid[user[leaves]], "community", comm[leaves])
    return _Memberships(user, comm, join_ts, np.where(leaves, leave_ts, cfg.end_us))


def _engage(cat: Catalog, rng: np.random.Generator, users: _Cohort, mem: _Memberships, ev: _Events) -> None:
    """Messages, voice, views and reactions while a member, in proportion to the user's activity level."""
    act = users.activity[mem.user]
    for etype, rate in (("message", 1.2), ("voice_minutes", 0.3)):
        mi = np.repeat(np.arange(len(mem.user)), rng.poisson(rate * act))
        ts = _uniform_ts(rng, mem.join_ts[mi], mem.end_ts[mi])
        if etype == "message":
            value = 1.0 + rng.geometric(0.3, len(mi))
        else:
            value = np.round(rng.lognormal(3, 1, len(mi)), 1) + 0.5
        ev.add(etype, ts, users.uid[mem.user[mi]], "community", mem.comm[mi], value)
    all_items = np.arange(cat.content_offsets[-1])
    for etype, rate in (("view", 1.0), ("reaction", 0.3)):
        mi = np.repeat(np.arange(len(mem.user)), rng.poisson(rate * act))
        item, ok = _sample_from_csr(rng, cat.content_offsets, all_items, mem.comm[mi])
        earliest = np.maximum(mem.join_ts[mi], cat.content_created[item])
        ok &= earliest < mem.end_ts[mi]
        ts = _uniform_ts(rng, earliest, mem.end_ts[mi])
        value = 1.0 + rng.poisson(1.0, len(mi)) if etype == "view" else np.ones(len(mi))
        ev.add(etype, ts[ok], users.uid[mem.user[mi[ok]]], "content", item[ok], value[ok])
    reported = rng.random(len(mem.user)) < 0.003
    ev.add("report", _uniform_ts(rng, mem.join_ts[reported], mem.end_ts[reported]),
           users.uid[mem.user[reported]], "community", mem.comm[reported])


def _befriend(
    cfg: SimConfig, rng: np.random.Generator, state: _State, users: _Cohort, mem: _Memberships, ev: _Events
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Requests to co-members (homophily), then to friends of friends (triadic closure); accept/ignore/block."""
    hi = int(users.uid[-1]) + 1
    all_loc, all_age, all_created = (np.concatenate(x) for x in (state.locale, state.age, state.created))
    state.mem_user.append(users.uid[mem.user].astype(np.int32))
    state.mem_comm.append(mem.comm.astype(np.int32))
    mem_off, members = _csr(np.concatenate(state.mem_comm), np.concatenate(state.mem_user), cfg.n_communities)
    u_off, u_comms = _csr(mem.user, mem.comm, len(users.uid))

    r_user = np.repeat(np.arange(len(users.uid)), rng.poisson(cfg.mean_requests * np.sqrt(users.activity)))
    r_comm, ok = _sample_from_csr(rng, u_off, u_comms, r_user)
    r_other, ok2 = _sample_from_csr(rng, mem_off, members, r_comm)
    a, b = users.uid[r_user], r_other.astype(np.int64)
    same = np.where(all_loc[b] == users.loc[r_user], 1.0, 0.3) * _age_ok(users.age[r_user], all_age[b])
    ok &= ok2 & (a != b) & (rng.random(len(a)) < same)
    a, b = a[ok], b[ok]

    # triadic closure over the friendships so far, including the ones just made
    all_a, all_b = np.concatenate([*state.edge_a, a]), np.concatenate([*state.edge_b, b])
    f_off, f_nbr = _csr(np.concatenate([all_a, all_b]), np.concatenate([all_b, all_a]), hi)
    c_user = np.repeat(users.uid, rng.poisson(cfg.mean_closure * np.sqrt(users.activity)))
    friend, ok = _sample_from_csr(rng, f_off, f_nbr, c_user)
    fof, ok2 = _sample_from_csr(rng, f_off, f_nbr, friend)
    ok &= ok2 & (fof != c_user) & (rng.random(len(c_user)) < _age_ok(all_age[c_user], all_age[fof]))
    a, b = np.concatenate([a, c_user[ok]]), np.concatenate([b, fof[ok]])
    first = np.sort(np.unique(np.minimum(a, b) * hi + np.maximum(a, b), return_index=True)[1])
    a, b = a[first], b[first]  # one request per pair; pairs with an older user only arise in this chunk

    end = cfg.end_us
    req_ts = _uniform_ts(rng, np.maximum(np.maximum(all_created[a], all_created[b]), cfg.start_us), end)
    ev.add("friend_request", req_ts, a, "user", b)
    acc_ts = req_ts + (rng.exponential(1.0, len(a)) * DAY_US).astype(np.int64) + 1
    accepted = (rng.random(len(a)) < 0.85) & (acc_ts < end)
    ev.add("friend_accept", acc_ts[accepted], b[accepted], "user", a[accepted])
    blocked = ~accepted & (rng.random(len(a)) < 0.10)
    reported = ~accepted & ~blocked & (rng.random(len(a)) < 0.05)
    for etype, sel in (("block", blocked), ("report", reported)):
        ts = np.minimum(req_ts[sel] + (rng.exponential(0.5, sel.sum()) * DAY_US).astype(np.int64) + 1, end - 1)
        ev.add(etype, ts, b[sel], "user", a[sel])
    state.edge_a.append(a[accepted].astype(np.int32))
    state.edge_b.append(b[accepted].astype(np.int32))
    state.requests = (a, b, accepted, acc_ts)
    return a[accepted], b[accepted], acc_ts[accepted]


# acceptance fit: logit a(pair) = ACCEPT_LOGIT[0] + w . (mutual friends (<= 4), shared communities (<= 3), same
# locale, teen-adult pair, log receiver activity)
ACCEPT_LOGIT = (-2.0, 0.8, 0.8, 2.0, -2.5, 1.0)
DECLINED_REQUESTS = (3.0, 1.5)  # second-round requests per user (x sqrt(activity)): to co-members, friends of friends
REMOVE_SHARE = 0.3  # an accepted friendship ends with a friend_remove with chance REMOVE_SHARE * (1 - a(pair))
REMOVE_AFTER_DAYS = 45.0  # mean delay from acceptance to the remove


def accept_chance(mutual: np.ndarray, shared: np.ndarray, same_locale: np.ndarray, teen_adult: np.ndarray,
                  receiver_activity: np.ndarray) -> np.ndarray:
    """a(pair): how well a receiver finds a request fits (the logistic :data:`ACCEPT_LOGIT`)."""
    b0, w_mut, w_sh, w_loc, w_age, w_act = ACCEPT_LOGIT
    z = (b0 + w_mut * np.minimum(mutual, 4) + w_sh * np.minimum(shared, 3) + w_loc * same_locale
         + w_age * teen_adult + w_act * np.log(np.maximum(receiver_activity, 1e-6)))
    return 1.0 / (1.0 + np.exp(-z))


def _decline_and_remove(cfg: SimConfig, frng: np.random.Generator, state: _State, users: _Cohort,
                        mem: _Memberships, ev: _Events) -> None:
    """The friend stream (its own rng, its own event ids: every other event of a seeded world is unchanged).

    Acceptance is pair-dependent: each user also sends a second round of requests (to co-members and friends of
    friends, chosen as in the first round) that the receiver *declines* with chance ``1 - a(pair)``
    (:func:`accept_chance`); only those declined requests are emitted, so the friendship graph of the first round
    stays as it was and ``p(accept | request, pair)`` rises with ``a(pair)``. Accepted friendships end with a
    ``friend_remove`` (either side) with chance ``REMOVE_SHARE * (1 - a(pair))``, about
    ``REMOVE_AFTER_DAYS`` after the accept (inside the window only)."""
    import scipy.sparse as sp

    hi = int(users.uid[-1]) + 1
    all_loc, all_age, all_created, all_act = (np.concatenate(x) for x in (state.locale, state.age, state.created,
                                                                          state.activity))
    ea, eb = np.concatenate(state.edge_a).astype(np.int64), np.concatenate(state.edge_b).astype(np.int64)
    A = sp.csr_matrix((np.ones(2 * ea.size), (np.r_[ea, eb], np.r_[eb, ea])), shape=(hi, hi))
    A.data[:] = 1.0
    mu, mc = np.concatenate(state.mem_user).astype(np.int64), np.concatenate(state.mem_comm).astype(np.int64)
    M = sp.csr_matrix((np.ones(mu.size), (mu, mc)), shape=(hi, cfg.n_communities))
    M.data[:] = 1.0

    def fit(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        mutual = np.asarray(A[a].multiply(A[b]).sum(axis=1)).ravel()
        shared = np.asarray(M[a].multiply(M[b]).sum(axis=1)).ravel()
        mixed = ((all_age[a] == _TEEN) & (all_age[b] == _ADULT)) | ((all_age[a] == _ADULT) & (all_age[b] == _TEEN))
        return accept_chance(mutual, shared, (all_loc[a] == all_loc[b]).astype(np.float64),
                             mixed.astype(np.float64), all_act[b])

    # second round of requests, declined with chance 1 - a(pair)
    mem_off, members = _csr(mc, mu, cfg.n_communities)
    u_off, u_comms = _csr(mem.user, mem.comm, len(users.uid))
    n_co, n_fof = DECLINED_REQUESTS
    r_user = np.repeat(np.arange(len(users.uid)), frng.poisson(n_co * np.sqrt(users.activity)))
    r_comm, ok = _sample_from_csr(frng, u_off, u_comms, r_user)
    r_other, ok2 = _sample_from_csr(frng, mem_off, members, r_comm)
    a, b = users.uid[r_user], r_other.astype(np.int64)
    same = np.where(all_loc[b] == users.loc[r_user], 1.0, 0.3) * _age_ok(users.age[r_user], all_age[b])
    ok &= ok2 & (a != b) & (frng.random(len(a)) < same)
    a, b = a[ok], b[ok]
    f_off, f_nbr = _csr(np.r_[ea, eb], np.r_[eb, ea], hi)
    c_user = np.repeat(users.uid, frng.poisson(n_fof * np.sqrt(users.activity)))
    friend, ok = _sample_from_csr(frng, f_off, f_nbr, c_user)
    fof, ok2 = _sample_from_csr(frng, f_off, f_nbr, friend)
    ok &= ok2 & (fof != c_user) & (frng.random(len(c_user)) < _age_ok(all_age[c_user], all_age[fof]))
    a, b = np.r_[a, c_user[ok]].astype(np.int64), np.r_[b, fof[ok]].astype(np.int64)
    ra, rb, accepted, acc_ts = state.requests
    key = np.minimum(a, b) * hi + np.maximum(a, b)
    ok = ~np.isin(key, np.minimum(ra, rb) * hi + np.maximum(ra, rb)) & (np.asarray(A[a, b]).ravel() == 0)
    first = np.sort(np.unique(key[ok], return_index=True)[1])
    a, b = a[ok][first], b[ok][first]
    declined = frng.random(len(a)) >= fit(a, b) if len(a) else np.zeros(0, bool)
    a, b = a[declined], b[declined]
    ev.add("friend_request", _uniform_ts(frng, np.maximum(np.maximum(all_created[a], all_created[b]), cfg.start_us),
                                         cfg.end_us), a, "user", b)

    # some accepted friendships end, poorer fits more often
    fa, fb, f_ts = ra[accepted], rb[accepted], acc_ts[accepted]
    if len(fa):
        end_ts = f_ts + (frng.exponential(REMOVE_AFTER_DAYS, len(fa)) * DAY_US).astype(np.int64) + 1
        ends = (frng.random(len(fa)) < REMOVE_SHARE * (1.0 - fit(fa, fb))) & (end_ts < cfg.end_us)
        side = frng.random(len(fa)) < 0.5
        ev.add("friend_remove", end_ts[ends], np.where(side, fa, fb)[ends], "user", np.where(side, fb, fa)[ends])


def _invite(
    cfg: SimConfig, cat: Catalog, rng: np.random.Generator, state: _State, users: _Cohort, mem: _Memberships,
    friendships: tuple[np.ndarray, np.ndarray, np.ndarray], ev: _Events,
) -> _Memberships:
    """A new friend who is a member of invite-only communities invites the chunk's user to one of them (30%)."""
    invitee, inviter, since = friendships
    lo, m = int(users.uid[0]), cfg.n_communities
    sel = rng.random(len(invitee)) < 0.3
    invitee, inviter, since = invitee[sel], inviter[sel], since[sel]
    all_user, all_comm = np.concatenate(state.mem_user), np.concatenate(state.mem_comm)
    closed = cat.invite_only[all_comm]
    off, closed_comms = _csr(all_user[closed], all_comm[closed], int(users.uid[-1]) + 1)
    comm, ok = _sample_from_csr(rng, off, closed_comms, inviter)
    comm = comm.astype(np.int64)
    ok &= ~((users.age[invitee - lo] == _TEEN) & cat.restricted[comm])
    key = (invitee - lo) * m + comm
    ok &= ~np.isin(key, mem.user * m + mem.comm)
    first = np.sort(np.unique(key[ok], return_index=True)[1])
    invitee, comm, since = invitee[ok][first], comm[ok][first], since[ok][first]
    join_ts = _uniform_ts(rng, np.maximum(since, cat.comm_created[comm]), cfg.end_us)
    keep = join_ts < cfg.end_us
    invitee, comm, join_ts = invitee[keep], comm[keep], join_ts[keep]
    ev.add("join", join_ts, invitee, "community", comm)
    state.mem_user.append(invitee.astype(np.int32))
    state.mem_comm.append(comm.astype(np.int32))
    return _Memberships(
        user=np.concatenate([mem.user, invitee - lo]),
        comm=np.concatenate([mem.comm, comm]),
        join_ts=np.concatenate([mem.join_ts, join_ts]),
        end_ts=np.concatenate([mem.end_ts, np.full(len(comm), cfg.end_us)]),
    )


def _chunk(cfg: SimConfig, cat: Catalog, state: _State, chunk: int, lo: int, hi: int) -> World:
    rng = np.random.default_rng([cfg.seed, chunk + 1])
    cohort, users = _new_users(cfg, rng, lo, hi)
    state.locale.append(cohort.loc)
    state.age.append(cohort.age)
    state.created.append(cohort.created)
    state.activity.append(cohort.activity)
    ev = _Events()
    mem = _join(cfg, cat, rng, cohort, ev)
    friendships = _befriend(cfg, rng, state, cohort, mem, ev)
    mem = _invite(cfg, cat, rng, state, cohort, mem, friendships, ev)
    _engage(cat, rng, cohort, mem, ev)
    fev = _Events()
    _decline_and_remove(cfg, np.random.default_rng([cfg.seed, chunk + 1, 1]), state, cohort, mem, fev)
    events = ev.table(cfg, chunk)
    if fev.parts:
        events = pa.concat_tables([events, fev.table(cfg, chunk, "f")])
        events = events.take(pc.sort_indices(events, [("ts_us", "ascending")]))
    counts = {"users": hi - lo, **dict.fromkeys(EVENT_TYPES, 0)}
    for t, c in zip(*np.unique(np.asarray(events.column("type")), return_counts=True), strict=True):
        counts[str(t)] = int(c)
    return World(users=users, events=events, meta={"chunk": chunk, "counts": counts})


def simulate(
    n_users: int, n_communities: int, seed: int = 0, **params: object
) -> Iterator[World]:
    """Generate a world as a stream of :class:`World` chunks: first the communities and content, then users and
    their events ``chunk_users`` at a time. ``params`` are further :class:`SimConfig` fields."""
    cfg = SimConfig(n_users=n_users, n_communities=n_communities, seed=seed, **params)  # type: ignore[arg-type]
    cat = build_catalog(cfg)
    yield World(communities=cat.communities, content=cat.content,
                meta={"chunk": -1, "counts": {"communities": cat.communities.num_rows,
                                              "content": cat.content.num_rows}})
    state = _State()
    for chunk, lo in enumerate(range(0, cfg.n_users, cfg.chunk_users)):
        yield _chunk(cfg, cat, state, chunk, lo, min(lo + cfg.chunk_users, cfg.n_users))


def simulate_world(n_users: int, n_communities: int, seed: int = 0, **params: object) -> World:
    """The whole simulated world in memory (for small worlds: tests, demos)."""
    parts = list(simulate(n_users, n_communities, seed, **params))
    world = World(
        users=pa.concat_tables([p.users for p in parts]),
        communities=parts[0].communities,
        content=parts[0].content,
        events=pa.concat_tables([p.events for p in parts]),
    )
    world.meta = {"name": SimConfig(n_users, n_communities, seed).tag, "counts": world_counts(world)}
    return world


def world_counts(world: World) -> dict[str, int]:
    """Rows per entity kind and events per type."""
    types, counts = np.unique(np.asarray(world.events.column("type")), return_counts=True)
    return {
        "users": world.users.num_rows, "communities": world.communities.num_rows,
        "content": world.content.num_rows, "events": world.events.num_rows,
        **{str(t): int(c) for t, c in zip(types, counts, strict=True)},
    }
