"""The shipped scorers honour the scorer contract (belong.testing.components): the rank blend, and the LightGBM
ranker trained cheaply on the simulated world."""

from __future__ import annotations

import pytest

from belong import surfaces
from belong.pipeline.components import REGISTRY, Scorer
from belong.testing import ScorerContract

assert surfaces  # imported first: every shipped component type is registered
#: per shipped scorer, a config that keeps its fit cheap
SCORERS: dict[str, dict] = {
    "weighted_rrf": {},
    "tuned_rrf": {"users": 50},
    "lgbm_ranker": {"users": 100, "rounds": 20, "min_data_in_leaf": 5, "threads": 1},
}


#: scorers of the people surface, checked in a people pipeline
PEOPLE_SCORERS: dict[str, dict] = {
    "people_ranker": {"users": 100, "rounds": 20, "min_data_in_leaf": 5, "threads": 1},
    "people_two_sided": {"users": 100, "rounds": 20, "min_data_in_leaf": 5, "threads": 1},
    "gated_rrf": {"users": 100, "c": 10.0, "gated": ["friend_embedding"]},
}


#: scorers of the content surface, checked in a content pipeline
CONTENT_SCORERS: dict[str, dict] = {
    "content_ranker": {"users": 100, "rounds": 20, "min_data_in_leaf": 5, "threads": 1},
}


def test_every_shipped_scorer_is_checked() -> None:
    assert sorted(REGISTRY["scorer"]) == sorted({**SCORERS, **PEOPLE_SCORERS, **CONTENT_SCORERS})


class TestScorers(ScorerContract):
    @pytest.fixture(scope="class", params=list(SCORERS))
    @classmethod
    def scorer(cls, request: pytest.FixtureRequest) -> Scorer:
        cls = REGISTRY["scorer"].get(request.param)
        return cls(cls.Config(**SCORERS[request.param]))  # type: ignore[return-value]


class TestPeopleScorers(ScorerContract):
    surface_name = "people"

    @pytest.fixture(scope="class", params=list(PEOPLE_SCORERS))
    @classmethod
    def scorer(cls, request: pytest.FixtureRequest) -> Scorer:
        cls = REGISTRY["scorer"].get(request.param)
        return cls(cls.Config(**PEOPLE_SCORERS[request.param]))  # type: ignore[return-value]


class TestContentScorers(ScorerContract):
    surface_name = "content"

    @pytest.fixture(scope="class", params=list(CONTENT_SCORERS))
    @classmethod
    def scorer(cls, request: pytest.FixtureRequest) -> Scorer:
        cls = REGISTRY["scorer"].get(request.param)
        return cls(cls.Config(**CONTENT_SCORERS[request.param]))  # type: ignore[return-value]
