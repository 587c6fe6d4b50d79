"""MovieLens 100K (``ml-100k``): users with age groups, movies as communities, ratings as joins.

* ``u.user`` (``id|age|gender|occupation|zip``) → users; age < 18 → ``teen``, else ``adult``; locale ``en-US``;
  created_at = the user's first rating.
* ``u.item`` (latin-1; ``id|title|release|video release|url|19 genre flags``) → communities: name = title,
  tags = the genres (names from ``u.genre``, "unknown" left out), created_at = release date (1995-01-01 when
  missing; dates before 1970 are clamped to 1970-01-01, the data model's earliest timestamp).
* ``u.data`` (``user \\t item \\t rating \\t unix_ts``) → one ``join`` per rating: value = rating, ts = its time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from belong.datasets.source import check_file, dataset_dir, expect_count, read_delimited, read_source
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

NAME = "ml-100k"
FOLDER = "ml-100k"
MISSING_RELEASE_US = ts_us(1995, 1, 1)
TEEN_MAX_AGE = 17
N_GENRES = 19


def load_ml_100k(data_dir: Path | None = None) -> World:
    folder = dataset_dir(FOLDER, data_dir)
    source = read_source(folder)
    files = {n: folder / n for n in ("u.user", "u.item", "u.data", "u.genre")}
    for path in files.values():
        check_file(path, source, NAME)

    uu = read_delimited(files["u.user"], NAME, sep="|", names=["id", "age", "gender", "occupation", "zip"],
                        header=False, encoding="latin-1", int_columns=("id", "age"))
    genre_cols = [f"g{i}" for i in range(N_GENRES)]
    ui = read_delimited(files["u.item"], NAME, sep="|",
                        names=["id", "title", "release", "video", "url", *genre_cols],
                        header=False, encoding="latin-1", int_columns=("id", *genre_cols))
    ud = read_delimited(files["u.data"], NAME, sep="\t", names=["user", "item", "rating", "ts"], header=False,
                        int_columns=("user", "item", "rating", "ts"))
    genres = read_delimited(files["u.genre"], NAME, sep="|", names=["name", "index"], header=False,
                            encoding="latin-1")
    genres = genres[genres["name"].str.strip() != ""]
    if len(genres) != N_GENRES:
        raise DatasetError(f"{NAME}: u.genre lists {len(genres)} genres, u.item has {N_GENRES} genre columns")

    for col, ids, what in (("user", uu["id"], "u.user"), ("item", ui["id"], "u.item")):
        unknown = ~ud[col].isin(ids)
        if unknown.any():
            i = int(unknown.to_numpy().argmax())
            raise DatasetError(f"{NAME}: u.data line {i + 1}: {col} {ud[col].iloc[i]} is not in {what}")

    # -- users -------------------------------------------------------------------------------------------------
    first = ud.groupby("user")["ts"].min()
    created = (uu["id"].map(first).fillna(ud["ts"].min()).to_numpy(dtype=np.int64)) * 1_000_000
    age_group = np.where(uu["age"].to_numpy() <= TEEN_MAX_AGE, "teen", "adult")
    users = user_table(NAME, id=str_ids(uu["id"].to_numpy()), created_at_us=created, age_group=age_group,
                       locale="en-US")

    # -- communities (movies) ----------------------------------------------------------------------------------
    release = pd.to_datetime(ui["release"].str.strip(), format="%d-%b-%Y", errors="coerce")
    rel_us = release.to_numpy(dtype="datetime64[us]").astype(np.int64)
    rel_us = np.where(release.isna().to_numpy(), MISSING_RELEASE_US, np.maximum(rel_us, 0))
    flags = ui[genre_cols].to_numpy(dtype=bool)
    names = genres["name"].str.strip().str.lower().to_numpy(dtype=object)
    flags[:, names == "unknown"] = False
    _, cols = np.nonzero(flags)  # row-major: genres of item 0, then item 1, ...
    offsets = np.concatenate([[0], np.cumsum(flags.sum(axis=1))])
    titles = ui["title"].str.strip()
    titles = titles.where(titles != "", "movie " + ui["id"].astype(str))
    communities = community_table(
        NAME, id=str_ids(ui["id"].to_numpy()), name=titles.to_numpy(dtype=object), created_at_us=rel_us,
        tags=list_column(offsets, names[cols]), locale="en",
    )

    # -- events ------------------------------------------------------------------------------------------------
    events = event_table(
        NAME, event_id=seq_ids(f"{NAME}:join:", len(ud)), ts_us=ud["ts"].to_numpy(dtype=np.int64) * 1_000_000,
        type="join", actor=str_ids(ud["user"].to_numpy()), target=str_ids(ud["item"].to_numpy()),
        target_kind="community", value=ud["rating"].to_numpy(dtype=np.float64),
    )
    counts = {"users": users.num_rows, "communities": communities.num_rows, "events": events.num_rows}
    if source is not None:
        expect_count(NAME, "users", counts["users"], source.stated("users"))
        expect_count(NAME, "items", counts["communities"], source.stated("items"))
        expect_count(NAME, "ratings", counts["events"], source.stated("ratings"))
    return World(users=users, communities=communities, events=events,
                 meta={"name": NAME, "source": str(folder), "counts": counts})
