"""The simulated community world: determinism, the invariants it promises, its graph and size statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

from belong.errors import ValidationError
from belong.eventlog import open_store
from belong.schema import validate_entity_table, validate_event_table
from belong.simulate import SimConfig, simulate, simulate_world
from cli_runner import run_cli

N_USERS, N_COMMUNITIES = 6_000, 300


@pytest.fixture(scope="module")
def world():
    return simulate_world(N_USERS, N_COMMUNITIES, seed=0, chunk_users=2_000)  # three chunks


@pytest.fixture(scope="module")
def events(world) -> pd.DataFrame:
    return world.events.to_pandas()


def _tables(w) -> tuple:
    return (w.users, w.communities, w.content, w.events)


def test_same_seed_identical_other_seed_different() -> None:
    a = simulate_world(1_500, 80, seed=3, chunk_users=500)
    b = simulate_world(1_500, 80, seed=3, chunk_users=500)
    c = simulate_world(1_500, 80, seed=4, chunk_users=500)
    assert all(x.equals(y) for x, y in zip(_tables(a), _tables(b), strict=True))
    assert not a.events.equals(c.events) and not a.communities.equals(c.communities)
    assert a.events.num_rows != c.events.num_rows or a.events.column("target") != c.events.column("target")


def test_tables_are_valid_and_ids_unique(world, events) -> None:
    validate_event_table(world.events)
    for kind, table in (("users", world.users), ("communities", world.communities), ("content", world.content)):
        validate_entity_table(kind, table)
        assert len(set(table.column("id").to_pylist())) == table.num_rows
    assert world.users.num_rows == N_USERS and world.communities.num_rows == N_COMMUNITIES
    assert events["event_id"].is_unique
    per_user = len(events) / N_USERS
    assert 10 <= per_user <= 30  # moderate activity per user
    for t in ("join", "leave", "message", "voice_minutes", "view", "reaction", "friend_request", "friend_accept",
              "block", "report"):
        assert (events["type"] == t).any(), t
    ids = {"user": set(world.users.column("id").to_pylist()),
           "community": set(world.communities.column("id").to_pylist()),
           "content": set(world.content.column("id").to_pylist())}
    assert set(events["actor"]) <= ids["user"]
    for kind, group in events.groupby("target_kind"):
        assert set(group["target"]) <= ids[kind]


def test_population_mix(world) -> None:
    users = world.users.to_pandas()
    share = users["age_group"].value_counts(normalize=True)
    assert share["adult"] == pytest.approx(0.70, abs=0.03)
    assert share["teen"] == pytest.approx(0.15, abs=0.03) and share["unknown"] == pytest.approx(0.15, abs=0.03)
    assert users["locale"].nunique() == 8
    comms = world.communities.to_pandas()
    assert 0.01 < comms["is_age_restricted"].mean() < 0.12
    assert 0.04 < comms["invite_only"].mean() < 0.2
    assert (~comms["discoverable"]).any()
    assert comms["name"].str.len().gt(0).all() and comms["tags"].map(len).ge(3).all()
    assert set(world.content.column("kind").to_pylist()) == {"channel", "post", "event"}


def test_teens_never_join_age_restricted(world, events) -> None:
    teens = set(world.users.filter(world.users.column("age_group").to_numpy(False) == "teen")
                .column("id").to_pylist())
    comms = world.communities.to_pandas()
    restricted = set(comms.loc[comms["is_age_restricted"], "id"])
    joins = events[events["type"] == "join"]
    assert restricted and teens
    assert not (joins["actor"].isin(teens) & joins["target"].isin(restricted)).any()


def test_time_order_of_memberships(world, events) -> None:
    cfg = SimConfig(N_USERS, N_COMMUNITIES)
    assert ((events["ts_us"] >= cfg.start_us) & (events["ts_us"] < cfg.end_us)).all()  # inside the window
    joins = events[events["type"] == "join"].set_index(["actor", "target"])["ts_us"]
    assert joins.index.is_unique  # one join per (user, community)
    leaves = events[events["type"] == "leave"].set_index(["actor", "target"])["ts_us"]
    assert (leaves > joins.reindex(leaves.index)).all()
    msgs = events[events["type"] == "message"]
    assert (msgs["ts_us"].to_numpy() >= joins.reindex(pd.MultiIndex.from_frame(msgs[["actor", "target"]]))
            .to_numpy()).all()  # messages only in joined communities, after joining
    users = world.users.to_pandas().set_index("id")["created_at_us"]
    assert (events["ts_us"].to_numpy() >= users.reindex(events["actor"]).to_numpy()).all()


def test_friend_accept_follows_request(events) -> None:
    req = events[events["type"] == "friend_request"]
    acc = events[events["type"] == "friend_accept"]
    req_ts = pd.Series(req["ts_us"].to_numpy(), index=pd.MultiIndex.from_arrays([req["target"], req["actor"]]))
    assert req_ts.index.is_unique
    acc_key = pd.MultiIndex.from_arrays([acc["actor"], acc["target"]])  # the recipient accepts
    assert acc_key.isin(req_ts.index).all()
    assert (acc["ts_us"].to_numpy() > req_ts.reindex(acc_key).to_numpy()).all()
    assert 0.5 < len(acc) / len(req) < 0.95  # some requests stay unanswered
    pairs = set(zip(np.minimum(req["actor"], req["target"]), np.maximum(req["actor"], req["target"]), strict=True))
    assert len(pairs) == len(req)  # one request per pair
    social = events[events["target_kind"] == "user"]
    assert (social["actor"] != social["target"]).all()  # no self-friendship


def _friend_matrix(events: pd.DataFrame) -> sp.csr_matrix:
    acc = events[events["type"] == "friend_accept"]
    a = acc["actor"].str[1:].astype(int).to_numpy()
    b = acc["target"].str[1:].astype(int).to_numpy()
    m = sp.csr_matrix((np.ones(len(a)), (a, b)), shape=(N_USERS, N_USERS))
    return ((m + m.T) > 0).astype(np.float64).tocsr()


def test_triadic_closure_and_homophily(world, events) -> None:
    adj = _friend_matrix(events)
    closing = adj.multiply(adj @ adj).nnz / adj.nnz  # share of friendships that close a triangle
    density = adj.nnz / (N_USERS * (N_USERS - 1))  # chance that a random pair is friends
    assert closing > 0.3 and closing > 100 * density
    users = world.users.to_pandas().set_index("id")
    acc = events[events["type"] == "friend_accept"]
    same_locale = (users.loc[acc["actor"], "locale"].to_numpy() == users.loc[acc["target"], "locale"].to_numpy())
    random_same = (users["locale"].value_counts(normalize=True) ** 2).sum()
    assert same_locale.mean() > 1.5 * random_same


def test_invite_only_communities_grow_through_friends(world, events) -> None:
    joins = events.loc[events["type"] == "join", ["actor", "target", "ts_us"]]
    acc = events.loc[events["type"] == "friend_accept", ["actor", "target"]]
    friends = pd.concat([acc, acc.set_axis(["target", "actor"], axis=1)]).set_axis(["user", "friend"], axis=1)
    member = joins.set_axis(["user", "community", "ts"], axis=1)
    via_friend = (friends.merge(member, on="user")
                  .merge(member.rename(columns={"user": "friend", "ts": "friend_ts"}), on=["friend", "community"]))
    via_friend = set(zip(via_friend["user"], via_friend["community"], strict=True))
    has_friend = pd.Series([k in via_friend for k in zip(joins["actor"], joins["target"], strict=True)])
    comms = world.communities.to_pandas()
    closed = joins["target"].isin(set(comms.loc[comms["invite_only"], "id"])).to_numpy()
    # joiners of invite-only communities have a friend inside far more often than joiners of open ones
    assert has_friend[closed].mean() > has_friend[~closed].mean() + 0.1


def test_power_law_community_sizes(events) -> None:
    sizes = np.sort(events.loc[events["type"] == "join", "target"].value_counts().to_numpy())[::-1]
    top = max(1, N_COMMUNITIES // 100)
    assert sizes[:top].sum() / sizes.sum() > 0.1  # top 1% of communities hold > 10x their share of joins
    assert sizes[0] > 20 * np.median(sizes)


def test_chunks_stream_catalogue_first() -> None:
    chunks = list(simulate(1_000, 50, seed=1, chunk_users=400))
    assert [c.users.num_rows for c in chunks] == [0, 400, 400, 200]
    assert chunks[0].communities.num_rows == 50 and chunks[0].content.num_rows > 50
    assert all(c.communities.num_rows == 0 for c in chunks[1:])


def test_bad_sizes() -> None:
    with pytest.raises(ValidationError, match="users: must be >= 1"):
        SimConfig(n_users=0, n_communities=10)
    with pytest.raises(ValidationError, match="communities: must be at most"):
        SimConfig(n_users=10, n_communities=10**8)



def _run(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    return run_cli(monkeypatch, capsys, *argv)


def test_cli_round_trip(tmp_path: Path, monkeypatch, capsys) -> None:
    store = tmp_path / "store"
    argv = ["simulate", "--users", "1200", "--communities", "60", "--seed", "5", "--store", str(store), "--json",
            "--chunk-users", "500"]
    code, out, _ = _run(argv, monkeypatch, capsys)
    assert code == 0
    result = json.loads(out)
    assert result["users"] == 1_200 and result["communities"] == 60
    assert sum(result["events_by_type"].values()) == result["events"] == result["store"]["accepted"]
    assert set(result["seconds"]) == {"generate", "write", "total"}
    with open_store(store) as st:
        assert st.count() == result["events"]
        assert st.counts_by_type() == {k: v for k, v in result["events_by_type"].items() if v}
        assert st.entity_counts() == {"users": 1_200, "communities": 60, "content": result["content"]}
    code, out, _ = _run(argv, monkeypatch, capsys)  # same world again: nothing new
    assert json.loads(out)["store"] == {"accepted": 0, "duplicates": result["events"]}


def test_cli_bad_input_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = _run(["simulate", "--users", "0", "--store", str(tmp_path / "s"), "--json"], monkeypatch, capsys)
    assert code == 2 and "users: must be >= 1" in err and out == ""


@pytest.mark.postgres
def test_cli_into_postgres(postgres_schema_url: str, monkeypatch, capsys) -> None:
    argv = ["simulate", "--users", "800", "--communities", "40", "--seed", "2", "--store", postgres_schema_url,
            "--json"]
    code, out, _ = _run(argv, monkeypatch, capsys)
    assert code == 0
    result = json.loads(out)
    with open_store(postgres_schema_url) as st:
        assert st.count() == result["events"] == result["store"]["accepted"]
        assert st.entity_counts()["users"] == 800


def test_the_friend_stream_leaves_every_other_event_unchanged(monkeypatch) -> None:
    """Declined requests and removes come from their own rng stream with their own ids: without them, the world's
    other events (ids included) are exactly what they are with them."""
    import belong.simulate as sim

    with_stream = simulate_world(1_500, 80, seed=3, chunk_users=500).events
    monkeypatch.setattr(sim, "_decline_and_remove", lambda *a, **k: None)
    without = simulate_world(1_500, 80, seed=3, chunk_users=500).events
    own = np.array([":f" in e for e in with_stream.column("event_id").to_pylist()])
    assert own.any() and with_stream.filter(pa.array(~own)).equals(without)
    types = set(with_stream.filter(pa.array(own)).column("type").to_pylist())
    assert types == {"friend_request", "friend_remove"}


def test_acceptance_depends_on_the_pair(world, events) -> None:
    """Same-locale requests, and requests between people who share communities, are accepted more often (a
    two-proportion chi-squared test, scipy); the rates match the logistic a(pair) in direction."""
    from scipy.stats import chi2_contingency

    req = events[events["type"] == "friend_request"]
    acc = events[events["type"] == "friend_accept"]
    accepted = pd.MultiIndex.from_arrays([req["target"], req["actor"]]).isin(
        pd.MultiIndex.from_arrays([acc["actor"], acc["target"]]))
    users = world.users.to_pandas().set_index("id")
    same = users.loc[req["actor"], "locale"].to_numpy() == users.loc[req["target"], "locale"].to_numpy()
    table = [[(accepted & same).sum(), (~accepted & same).sum()], [(accepted & ~same).sum(), (~accepted & ~same).sum()]]
    assert accepted[same].mean() > accepted[~same].mean() + 0.1
    assert chi2_contingency(table)[1] < 1e-6
    joins = events[events["type"] == "join"]
    comms = joins.groupby("actor")["target"].agg(set)
    empty: set = set()
    shared = np.array([len(comms.get(a, empty) & comms.get(b, empty)) > 1
                       for a, b in zip(req["actor"], req["target"], strict=True)])
    assert accepted[shared].mean() > accepted[~shared].mean()


def test_some_friendships_end_with_a_remove_and_the_state_drops_them(world, events) -> None:
    from belong.state import from_world

    rem = events[events["type"] == "friend_remove"]
    acc = events[events["type"] == "friend_accept"]
    assert 0.01 < len(rem) / len(acc) < 0.2
    key = lambda a, b: pd.MultiIndex.from_arrays([np.minimum(a, b), np.maximum(a, b)])  # noqa: E731
    acc_ts = pd.Series(acc["ts_us"].to_numpy(), index=key(acc["actor"], acc["target"]))
    rem_key = key(rem["actor"], rem["target"])
    assert rem_key.isin(acc_ts.index).all() and rem_key.is_unique
    assert (rem["ts_us"].to_numpy() > acc_ts.reindex(rem_key).to_numpy()).all()  # removed after the accept
    state = from_world(world)
    F = state.friend_csr()
    idx = state.users.index
    for a, b in list(zip(rem["actor"], rem["target"], strict=True))[:200]:
        assert F[idx[a], idx[b]] == 0 and F[idx[b], idx[a]] == 0
    assert F.nnz // 2 == len(acc) - len(rem)
