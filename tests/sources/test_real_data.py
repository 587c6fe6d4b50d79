"""Sources on the public datasets (skipped when BELONG_DATA_DIR is absent)."""

from __future__ import annotations

import numpy as np
import pytest

from belong import surfaces
from belong.domain import Surface
from belong.pipeline import NewUser, Pipeline, Request
from belong.state import WorldState, from_world

pytestmark = pytest.mark.data


def test_friends_of_friends_on_lastfm_asia_hide_edges(data_dir, monkeypatch):
    """Adamic-Adar friends-of-friends under the hide-edges protocol (seed 0, 20%): about 0.38 Recall@20."""
    monkeypatch.setenv("BELONG_DATA_DIR", str(data_dir))
    from belong.evaluation import splitters
    from belong.evaluation.data import load_interactions
    from belong.evaluation.pipeline_model import PipelineEvaluable

    data = load_interactions("edges:lastfm-asia/lastfm_asia_edges.csv")
    split = splitters.make_split("hide-edges", data, fraction=0.2, seed=0)
    T = split.test.csr()
    users = np.flatnonzero(np.diff(T.indptr) > 0)
    users = np.sort(np.random.default_rng(0).choice(users, 800, replace=False))
    model = PipelineEvaluable("people/friends_of_friends").fit(split.train)
    idx, _ = model.recommend_idx(users, 20)
    recall = np.mean([len(set(idx[i].tolist()) & set(T[u].indices.tolist())) / T[u].nnz for i, u in enumerate(users)])
    assert 0.33 <= recall <= 0.45


@pytest.fixture(scope="module")
def hetrec(data_dir) -> WorldState:
    from belong.datasets import load_world

    return from_world(load_world("hetrec-lastfm", data_dir))


def test_hetrec_people_and_tag_cold_start(hetrec):
    people = surfaces.load("people").fit(hetrec)
    resp = people.run(Request("2", Surface.PEOPLE, k=5))
    assert len(resp.items) == 5 and all(it.explanation for it in resp.items)
    assert any("mutual friend" in r for it in resp.items for r in it.reasons.values())
    comms = Pipeline.from_dict({"surface": "communities",
                                "sources": [{"type": "text_match"}, {"type": "new_communities", "weight": 0.1}],
                                "filters": [{"type": "already_connected"}]})
    comms.fit(hetrec)
    new = comms.run(Request("nobody-yet", k=10, new_user=NewUser(interests=("synthpop", "80s"))))
    assert len(new.items) == 10 and all(it.explanation for it in new.items)
    assert sum("#80s" in it.explanation or "#synthpop" in it.explanation for it in new.items) >= 8
