"""The user explorer's why-not reads the page's own run of the surface (its candidates and finished answer)
instead of running the pipeline again, and answers exactly what ``Pipeline.why_not`` answers on its own — for a
shown, a removed, a below-the-cut and an absent community; after the state moved on it runs afresh."""

from __future__ import annotations

from types import SimpleNamespace

from belong import surfaces
from belong.domain import Surface, parse_event
from belong.pipeline import Request
from belong.serve.dashboard import views
from belong.state import from_world
from belong.testing.toy_world import NOW, toy_world


def test_the_why_not_of_the_page_run_is_the_pipelines_own_answer() -> None:
    state = from_world(toy_world())
    pipe = surfaces.load("communities").fit(state)
    model = SimpleNamespace(state=state, pipelines={Surface.COMMUNITIES: pipe})
    k = 2
    runs = views.explore(model, "alice", k, (Surface.COMMUNITIES,))  # type: ignore[arg-type]
    full = pipe.candidates(Request("alice", Surface.COMMUNITIES, k))
    made = {pipe.item_id(m.item) for m, _ in full.ranked} | {pipe.item_id(r.item) for r in full.removed}
    items = [runs[0].items[0]["id"], "speedrun", *[pipe.item_id(m.item) for m, _ in full.ranked[k:k + 2]],
             next(c for c in state.communities.ids if c not in made)]
    verdicts = set()
    for item in items:
        fresh = pipe.why_not(Request("alice", Surface.COMMUNITIES, k), item)
        got = views.why_not(model, Surface.COMMUNITIES, "alice", item, k, runs)  # type: ignore[arg-type]
        assert got["reused"] is True
        assert (got["verdict"], got["text"], got["position"], got["rank"], got["score"], got["filter"]) == \
            (fresh.verdict, fresh.text, fresh.position, fresh.rank, fresh.score, fresh.filter), item
        verdicts.add(got["verdict"])
    assert {"shown", "removed", "not_a_candidate"} <= verdicts
    # another k, or a state that moved on since the page's run: the pipeline runs again
    assert views.why_not(model, Surface.COMMUNITIES, "alice", "speedrun", 3, runs)["reused"] is False  # type: ignore[arg-type]
    state.apply(parse_event({"event_id": "w1", "ts": NOW / 1e6 + 1, "type": "join", "actor": "alice",
                             "target": items[0], "target_kind": "community"}))
    again = views.why_not(model, Surface.COMMUNITIES, "alice", items[0], k, runs)  # type: ignore[arg-type]
    assert again["reused"] is False and again["verdict"] == pipe.why_not(
        Request("alice", Surface.COMMUNITIES, k), items[0]).verdict
