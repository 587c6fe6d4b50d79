from __future__ import annotations

import numpy as np
import pytest

from belong.errors import ValidationError
from belong.evaluation.modelspec import build_model
from belong.evaluation.pipeline_model import PipelineEvaluable
from belong.interactions import Interactions


def _data() -> Interactions:
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(60):
        group = u % 3
        for i in rng.choice(10, 4, replace=False):
            users.append(f"u{u}")
            items.append(f"i{group * 10 + int(i)}")
    return Interactions.from_ids(users, items)


def test_adapter_ranks_unseen_items_in_train_indices():
    data = _data()
    model = build_model("pipeline:communities/co_membership+friends_joined", {}).fit(data)
    users = np.arange(10)
    idx, scores = model.recommend_idx(users, 5)
    assert idx.shape == (10, 5) and scores.shape == (10, 5)
    X = data.csr()
    for row, u in enumerate(users):
        got = idx[row][idx[row] >= 0]
        assert got.size and not set(got.tolist()) & set(X[u].indices.tolist())
        assert np.all(np.diff(scores[row][idx[row] >= 0]) <= 0)
        # co-membership stays inside the user's cluster of items
        assert all(int(data.item_ids[i][1:]) // 10 == int(data.user_ids[u][1:]) % 3 for i in got)
    assert [s["type"] for s in model.get_config()["sources"]] == ["co_membership", "friends_joined"]


def test_people_surface_on_a_square_graph_and_errors():
    ids = np.array([str(i) for i in range(6)])
    g = Interactions.from_ids(["0", "1", "2", "3", "4"], ["1", "2", "3", "4", "0"], user_ids=ids, item_ids=ids)
    model = PipelineEvaluable("people/friends_of_friends").fit(g)
    idx, _ = model.recommend_idx(np.array([0]), 3)
    assert set(idx[0][idx[0] >= 0].tolist()) == {2, 3}  # friends of friends of 0 (1 and 4 are friends)
    with pytest.raises(ValidationError, match="people surface"):
        PipelineEvaluable("communities").fit(g)
    with pytest.raises(ValidationError, match="unknown source"):
        PipelineEvaluable("people/nope")
    with pytest.raises(ValidationError, match="param"):
        PipelineEvaluable("people", {"x": 1})
    with pytest.raises(ValidationError, match="sampled"):
        model.score_items(np.array([0]), np.array([[1, 2]]))


def test_registered_with_the_evaluation_harness():
    assert isinstance(build_model("pipeline:people", {}), PipelineEvaluable)


def test_a_time_split_of_a_store_gives_the_pipeline_the_whole_world_before_the_cut(tmp_path):
    from belong.datasets import write_world
    from belong.evaluation.data import interactions_from_world, load_interactions
    from belong.evaluation.splitters import make_split
    from belong.eventlog import open_store
    from belong.simulate import simulate_world

    world = simulate_world(400, 40, seed=5)
    store = tmp_path / "sim"
    with open_store(store) as st:
        write_world(st, world, progress=False)
    data = load_interactions(str(store))
    assert "world" in data.meta  # the log has friendships, activity, leaves beyond the joins
    split = make_split("temporal", data)
    cut = split.train.meta["as_of_us"]
    model = PipelineEvaluable("communities").fit(split.train)
    state = model.state
    assert state.friend_csr().nnz > 0  # friendships reached the state (interactions alone carry none)
    assert state.now_us == cut and state.join_events.ts.max() < cut  # nothing from the test period
    assert state.n_communities >= split.train.n_items
    assert list(state.users.ids[: split.train.n_users]) == list(split.train.user_ids)  # the harness's indices
    idx, _ = model.recommend_idx(np.arange(min(50, split.train.n_users)), 10)
    assert idx.max() < split.train.n_items
    # a world loaded by name (made-up times for some events) and a random split keep the interactions-only state
    assert "world" not in interactions_from_world(world).meta
    random = make_split("random-holdout", data)
    assert "as_of_us" not in random.train.meta
    assert PipelineEvaluable("communities").fit(random.train).state.friend_csr().nnz == 0


def test_a_surface_by_catalogue_name_or_by_file_path_with_slashes(tmp_path):
    """``pipeline:communities_ranked`` by name, and a TOML file in a sub-folder — a path with slashes is a path,
    not SURFACE/SOURCE — alone or restricted to some of its sources."""
    from belong import surfaces
    from belong.toml_writer import dumps

    assert PipelineEvaluable("communities_ranked").pipeline.name == "communities_ranked"
    decl = surfaces.load("communities").to_dict()
    decl["sources"] = [s for s in decl["sources"] if s["type"] in ("co_membership", "trending")]
    path = tmp_path / "my" / "surfaces" / "small.toml"
    path.parent.mkdir(parents=True)
    path.write_text(dumps(decl), "utf-8")
    data = _data()
    whole = build_model(f"pipeline:{path}", {}).fit(data)
    assert [s["type"] for s in whole.get_config()["sources"]] == ["co_membership", "trending"]
    assert whole.recommend_idx(np.arange(5), 3)[0].shape == (5, 3)
    alone = build_model(f"pipeline:{path}/co_membership", {})
    assert [s["type"] for s in alone.get_config()["sources"]] == ["co_membership"]
    with pytest.raises(ValidationError, match="no surface file"):
        build_model(f"pipeline:{tmp_path}/missing.toml", {})
    with pytest.raises(ValidationError, match="unknown surface"):
        build_model("pipeline:nonesuch", {})


def test_the_content_protocol_ranks_content_items_of_a_store_as_of_the_cut(tmp_path):
    """``--events view,reaction --protocol temporal --model pipeline:content``: items are content ids, the state is
    the world before the cut, and the pipeline's content indices come back as the data's item indices."""
    from belong.datasets import write_world
    from belong.evaluation.data import load_interactions
    from belong.evaluation.harness import evaluate_model
    from belong.evaluation.splitters import make_split
    from belong.eventlog import open_store
    from belong.simulate import simulate_world

    world = simulate_world(500, 40, seed=5)
    store = tmp_path / "sim"
    with open_store(store) as st:
        write_world(st, world, progress=False)
    data = load_interactions(str(store), ["view", "reaction"])
    content_ids = set(world.content.column("id").to_pylist())
    assert set(data.item_ids.tolist()) <= content_ids and "world" in data.meta
    split = make_split("temporal", data)
    cut = split.train.meta["as_of_us"]
    model = PipelineEvaluable("content_blend").fit(split.train)
    assert model.state.now_us == cut and model.state.n_content > 0
    assert [model.state.content.ids[i] for i in np.flatnonzero(model.item_of >= 0)] \
        == [split.train.item_ids[j] for j in model.item_of[model.item_of >= 0]]  # the same item, by id
    users = split.test_users[:80]
    idx, _ = model.recommend_idx(users, 20)
    X = split.train.csr()
    assert idx.max() < split.train.n_items and (idx >= 0).sum() > 0
    for row, u in enumerate(users.tolist()):
        got = idx[row][idx[row] >= 0]
        assert not set(got.tolist()) & set(X[u].indices.tolist())  # never an item engaged with before the cut
    result = evaluate_model(PipelineEvaluable("content_blend"), split, [20], name="pipeline:content_blend")
    assert result.metrics["recall@20"] > 0.1  # the next engagements are mostly in the user's communities
    # a content surface on community items, or on interactions without their world: a clear error naming it
    joins = make_split("temporal", load_interactions(str(store)))
    with pytest.raises(ValidationError, match="content events"):
        PipelineEvaluable("content").fit(joins.train)
    with pytest.raises(ValidationError, match="view,reaction"):
        PipelineEvaluable("content").fit(_data())


@pytest.fixture(scope="module")
def friend_store(tmp_path_factory):
    """A simulated world with friend requests, acceptances and removals, in a store."""
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate_world

    store = tmp_path_factory.mktemp("friends") / "sim"
    with open_store(store) as st:
        write_world(st, simulate_world(1_000, 40, seed=3), progress=False)
    return str(store)


def test_the_friendship_graph_of_a_store_keeps_the_world_for_the_people_surface(friend_store):
    """``belong evaluate --dataset STORE --events friend_accept --protocol temporal --model pipeline:people_two_sided``:
    the people pipeline is fitted on the world as of the cut (friend requests, communities, ages), so the two-sided
    scorer learns from requests instead of falling back to the one-sided ranker (issue 17's open defect)."""
    from belong.evaluation.data import load_interactions
    from belong.evaluation.splitters import make_split
    from belong.ranking.people_two_sided import friend_events

    data = load_interactions(friend_store, ["friend_accept"])
    assert data.meta["square"] and "world" in data.meta
    split = make_split("temporal", data)
    model = PipelineEvaluable("people_two_sided")
    for k, v in {"users": 300, "rounds": 40, "min_data_in_leaf": 20}.items():
        setattr(model.pipeline.scorer.config, k, v)
    model.fit(split.train)
    state = model.state
    assert friend_events(state)["friend_request"][0].size > 0  # the requests reached the scorer
    two_sided = model.fitted()["two_sided"]
    assert two_sided["on"], two_sided
    assert state.n_communities > 0 and state.membership_csr().nnz > 0  # co-membership sources see communities
    assert list(state.users.ids[: data.n_users]) == list(data.user_ids)  # the harness's indices, people as items
    idx, _ = model.recommend_idx(split.test_users[:50], 20)
    assert (idx < data.n_items).all() and (idx >= 0).any()
    with pytest.raises(ValidationError, match="people surface"):
        PipelineEvaluable("communities").fit(split.train)


def test_the_world_of_a_friendship_graph_leaks_no_held_out_edge(friend_store):
    """Temporal: nothing at or after the cut reaches the pipeline (no friend_accept / friend_request of a held-out
    pair, not even one at the cut itself, which the cut's quantile always hits); hide-edges: the world is not read,
    the hidden edges are not in the state."""
    from belong.evaluation.data import load_interactions
    from belong.evaluation.splitters import make_split
    from belong.ranking.people_lists import friendship_times
    from belong.ranking.people_two_sided import friend_events

    data = load_interactions(friend_store, ["friend_accept"])
    split = make_split("temporal", data)
    cut = split.train.meta["as_of_us"]
    assert (split.test.ts_us == cut).any()  # the boundary case is there to leak
    state = PipelineEvaluable("people").fit(split.train).state
    n = data.n_users
    held = set((split.test.users.astype(np.int64) * n + split.test.items).tolist())
    F = state.friend_csr().tocoo()
    assert not held & set((F.row.astype(np.int64) * n + F.col).tolist())  # no held-out friendship
    for a, b, ts in friend_events(state).values():
        assert ts.size == 0 or ts.max() < cut
        after = ts >= cut
        assert not held & set((a[after] * n + b[after]).tolist())
    assert friendship_times(state).max() < cut
    assert int(state.source.events.column("ts_us").to_numpy().max()) < cut  # the state's source: its past only
    pending = {(a, b) for a, bs in state.pending_requests.items() for b in bs}
    world_ev = data.meta["world"].events
    req = world_ev.filter(world_ev.column("type").to_numpy(zero_copy_only=False) == "friend_request")
    late = {(state.users.index[x], state.users.index[y])
            for x, y, t in zip(req.column("actor").to_pylist(), req.column("target").to_pylist(),
                               req.column("ts_us").to_pylist(), strict=True) if t >= cut and x in state.users.index
            and y in state.users.index}
    assert late and not pending & late  # requests sent since the cut are not pending in the cut's state

    hide = make_split("hide-edges", data)
    hstate = PipelineEvaluable("people").fit(hide.train).state
    hidden = set((hide.test.users.astype(np.int64) * n + hide.test.items).tolist())
    H = hstate.friend_csr().tocoo()
    assert not hidden & set((H.row.astype(np.int64) * n + H.col).tolist())
    assert friend_events(hstate)["friend_request"][0].size == 0  # the world (and its requests) is not read there
