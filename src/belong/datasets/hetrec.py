"""HetRec 2011 Last.fm 2K (``hetrec-lastfm``): users, artists as communities, listening weights, friendships.

Mapping into the data model:

* each ``user_artists.dat`` row → one ``join`` event (actor user, target artist-community); **join value =
  engagement weight** (the listening count). Timestamp: the earliest date this user tagged this artist
  (``user_taggedartists.dat`` day/month/year), else the user's earliest tag date, else 2011-05-01 (release).
* ``artists.dat`` → communities (name = artist name); tags = the 10 most used tag values (``tags.dat``, latin-1)
  for that artist; created_at = the artist's earliest tag date, else 2005-01-01.
* ``user_friends.dat`` lists each friendship in both directions → one ``friend_accept`` per undirected pair
  (actor = smaller id, target = larger), at the later of the two users' created_at.
* users: every id in the files; age_group unknown, locale "und", created_at = earliest activity.

Tag dates before 2002 (Last.fm's launch; the file has a handful from 1956–1979) are treated as missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from belong.datasets.source import (
    check_file,
    dataset_dir,
    expect_count,
    read_delimited,
    read_source,
)
from belong.datasets.tables import (
    community_table,
    event_table,
    list_column,
    seq_ids,
    str_ids,
    ts_us,
    user_table,
)
from belong.datasets.world import World
from belong.errors import DatasetError

NAME = "hetrec-lastfm"
FOLDER = "hetrec2011-lastfm-2k"
RELEASE_US = ts_us(2011, 5, 1)
DEFAULT_ARTIST_CREATED_US = ts_us(2005, 1, 1)
MIN_TAG_YEAR = 2002
MAX_TAGS = 10


def _tag_dates_us(uta: pd.DataFrame) -> np.ndarray:
    """int64 µs per tag assignment; -1 where the date is invalid or before Last.fm existed."""
    dates = pd.to_datetime(
        pd.DataFrame({"year": uta["year"], "month": uta["month"], "day": uta["day"]}), errors="coerce"
    )
    us = dates.to_numpy(dtype="datetime64[us]").astype(np.int64)
    bad = dates.isna().to_numpy() | (uta["year"].to_numpy() < MIN_TAG_YEAR)
    us[bad] = -1
    return us


def _min_by(keys: pd.DataFrame, values: np.ndarray) -> pd.Series:
    """Minimum of the valid (>= 0) ``values`` grouped by the ``keys`` columns."""
    frame = keys.assign(v=values)
    return frame[frame["v"] >= 0].groupby(list(keys.columns))["v"].min()


def load_hetrec_lastfm(data_dir: Path | None = None) -> World:
    folder = dataset_dir(FOLDER, data_dir)
    source = read_source(folder)
    files = {n: folder / n for n in ("artists.dat", "tags.dat", "user_artists.dat", "user_friends.dat",
                                      "user_taggedartists.dat")}
    for path in files.values():
        check_file(path, source, NAME)

    artists = read_delimited(files["artists.dat"], NAME, sep="\t", names=["id", "name", "url", "picture"],
                             header=True, int_columns=("id",))
    tags = read_delimited(files["tags.dat"], NAME, sep="\t", names=["tag_id", "value"], header=True,
                          encoding="latin-1", int_columns=("tag_id",))
    ua = read_delimited(files["user_artists.dat"], NAME, sep="\t", names=["user", "artist", "weight"],
                        header=True, int_columns=("user", "artist", "weight"))
    uf = read_delimited(files["user_friends.dat"], NAME, sep="\t", names=["user", "friend"], header=True,
                        int_columns=("user", "friend"))
    uta = read_delimited(files["user_taggedartists.dat"], NAME, sep="\t",
                         names=["user", "artist", "tag_id", "day", "month", "year"], header=True,
                         int_columns=("user", "artist", "tag_id", "day", "month", "year"))

    unknown = ~ua["artist"].isin(artists["id"])
    if unknown.any():
        i = int(unknown.to_numpy().argmax())
        raise DatasetError(f"{NAME}: user_artists.dat line {i + 2}: artist {ua['artist'].iloc[i]} "
                           f"is not in artists.dat")

    # -- timestamps from tag dates ---------------------------------------------------------------------------
    tag_us = _tag_dates_us(uta)
    pair_first = _min_by(uta[["user", "artist"]], tag_us)
    user_first = _min_by(uta[["user"]], tag_us)
    artist_first = _min_by(uta[["artist"]], tag_us)

    join_ts = ua[["user", "artist"]].merge(
        pair_first.rename("ts").reset_index(), on=["user", "artist"], how="left"
    )["ts"].to_numpy(dtype="float64")
    fallback = ua["user"].map(user_first).to_numpy(dtype="float64")
    join_ts = np.where(np.isnan(join_ts), fallback, join_ts)
    join_ts = np.where(np.isnan(join_ts), RELEASE_US, join_ts).astype(np.int64)

    # -- users -----------------------------------------------------------------------------------------------
    user_ids = np.unique(np.concatenate([ua["user"], uf["user"], uf["friend"], uta["user"]]))
    first_join = pd.Series(join_ts).groupby(ua["user"].to_numpy()).min()
    created = first_join.reindex(user_ids).fillna(RELEASE_US).to_numpy(dtype=np.int64)
    users = user_table(NAME, id=str_ids(user_ids), created_at_us=created)

    # -- communities (artists) with their most used tags -------------------------------------------------------
    tag_counts = (
        uta.groupby(["artist", "tag_id"]).size().rename("n").reset_index()
        .merge(tags, on="tag_id", how="inner")
        .sort_values(["artist", "n", "tag_id"], ascending=[True, False, True], kind="stable")
    )
    tag_counts["value"] = tag_counts["value"].str.strip().str.lower().str.slice(0, 64)
    tag_counts = tag_counts[tag_counts["value"] != ""].drop_duplicates(["artist", "value"])
    top = tag_counts.groupby("artist", sort=True).head(MAX_TAGS)
    artists = artists.sort_values("id", kind="stable").reset_index(drop=True)
    per_artist = top.groupby("artist").size().reindex(artists["id"]).fillna(0).to_numpy(dtype=np.int64)
    top = top[top["artist"].isin(artists["id"])]
    offsets = np.concatenate([[0], np.cumsum(per_artist)])
    art_created = artists["id"].map(artist_first).fillna(DEFAULT_ARTIST_CREATED_US).to_numpy(dtype=np.int64)
    names = artists["name"].str.strip().where(artists["name"].str.strip() != "", artists["id"].astype(str))
    communities = community_table(
        NAME, id=str_ids(artists["id"].to_numpy()), name=names.to_numpy(dtype=object),
        created_at_us=art_created, tags=list_column(offsets, top["value"].to_numpy(dtype=object)),
    )

    # -- events ------------------------------------------------------------------------------------------------
    joins = event_table(
        NAME, event_id=seq_ids(f"{NAME}:join:", len(ua)), ts_us=join_ts, type="join",
        actor=str_ids(ua["user"].to_numpy()), target=str_ids(ua["artist"].to_numpy()), target_kind="community",
        value=ua["weight"].to_numpy(dtype=np.float64),
    )
    a = np.minimum(uf["user"].to_numpy(), uf["friend"].to_numpy())
    b = np.maximum(uf["user"].to_numpy(), uf["friend"].to_numpy())
    pairs = np.unique(np.stack([a, b], axis=1)[a != b], axis=0)
    created_of = pd.Series(created, index=user_ids)
    friend_ts = np.maximum(created_of.reindex(pairs[:, 0]).to_numpy(), created_of.reindex(pairs[:, 1]).to_numpy())
    friends = event_table(
        NAME, event_id=seq_ids(f"{NAME}:friend_accept:", len(pairs)), ts_us=friend_ts, type="friend_accept",
        actor=str_ids(pairs[:, 0]), target=str_ids(pairs[:, 1]), target_kind="user",
    )

    # -- counts SOURCE.md states (official column of its "Verified statistics" table) ----------------------------
    counts = {
        "users": users.num_rows,
        "communities": communities.num_rows,
        "engagement_events": joins.num_rows,
        "friendships": friends.num_rows,
        "events": joins.num_rows + friends.num_rows,
        "tag_assignments": len(uta),
    }
    if source is not None:
        expect_count(NAME, "users", counts["users"], source.stated("users"))
        expect_count(NAME, "artists", counts["communities"], source.stated("artists"))
        expect_count(NAME, "user-artist rows", counts["engagement_events"], source.stated("user–artist relations"))
        expect_count(NAME, "undirected friendships", counts["friendships"], source.stated("friend relations"))
        expect_count(NAME, "tag assignments", counts["tag_assignments"], source.stated("tag assignments"))
        expect_count(NAME, "tags", len(tags), source.stated("tags"))
    return World(
        users=users, communities=communities, events=pa.concat_tables([joins, friends]),
        meta={"name": NAME, "source": str(folder), "counts": counts},
    )
